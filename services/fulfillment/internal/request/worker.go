package request

import (
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
)

// NewWorker returns a worker for the request workflows and their activities.
func NewWorker(c client.Client, a *Activities) worker.Worker {
	w := worker.New(c, TaskQueue, worker.Options{})
	w.RegisterWorkflow(PrivacyRequest)
	w.RegisterWorkflow(OnwardErasure)
	w.RegisterWorkflow(ArchiveExpiry)
	w.RegisterWorkflow(Retention)
	w.RegisterWorkflow(DisabledAccount)
	w.RegisterActivity(a)
	return w
}
