package policychange

import (
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
)

// NewWorker returns a worker of preferences' task queue running the notice workflow and
// its activities.
func NewWorker(c client.Client, a *Activities) worker.Worker {
	w := worker.New(c, TaskQueue, worker.Options{})
	w.RegisterWorkflow(PolicyChangeNotice)
	w.RegisterActivity(a)
	return w
}
