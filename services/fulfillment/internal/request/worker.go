package request

import (
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
)

// NewWorker returns a worker for the request workflows and their activities.
func NewWorker(c client.Client, a *Activities) worker.Worker {
	w := worker.New(c, TaskQueue, WorkerOptions())
	w.RegisterWorkflow(PrivacyRequest)
	w.RegisterWorkflow(OnwardErasure)
	w.RegisterWorkflow(ArchiveExpiry)
	w.RegisterWorkflow(Retention)
	w.RegisterWorkflow(DisabledAccount)
	w.RegisterActivity(a)
	return w
}

// WorkerOptions are the request worker's options. A loaded worker is slow to poll, and
// the SDK's default of 5 s for a workflow task to wait on this worker's sticky queue sends
// the task elsewhere, to be replayed from its whole history, and evicts the cached
// workflow; a worker that has stopped polling loses its sticky tasks within seconds
// anyway (the server checks for recent pollers), so the wait is longer here.
func WorkerOptions() worker.Options {
	return worker.Options{
		StickyScheduleToStartTimeout:     time.Minute,
		MaxConcurrentWorkflowTaskPollers: 4,
	}
}
