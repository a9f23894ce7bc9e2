package complaint

import "go.temporal.io/sdk/worker"

// Register adds the complaint workflow and its activities to fulfillment's worker.
func Register(w worker.Worker, a *Activities) {
	w.RegisterWorkflow(Complaint)
	w.RegisterActivity(a)
}
