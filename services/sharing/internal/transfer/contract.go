// Package transfer is the business-transfer workflow: every member is given notice
// before their data passes to an acquirer (one advance notice each, with a one-click
// objection link, started a page of members at a time), then the transfer takes effect
// at its date. The per-member notices are the notice package's workflows; this one
// fans them out and keeps the transfer's state.
package transfer

import "time"

// TaskQueue is sharing's task queue (the notice workflows' too).
const TaskQueue = "lethe-sharing"

// StateQuery returns "notifying", "waiting" or "effective".
const StateQuery = "state"

// PagesPerRun bounds one run's history: after this many pages of members the workflow
// continues as new (the cursor is in the database, so nothing is repeated).
const PagesPerRun = 500

// WorkflowID is the id of transfer transferID's workflow.
func WorkflowID(transferID string) string { return "business-transfer/" + transferID }

// Input starts a transfer. Only opaque ids and times cross into Temporal.
type Input struct {
	TransferID    string
	EffectiveTime time.Time
}

// Result is how the transfer ended.
type Result struct {
	Notified int
}

// PageResult is one page of members given notice.
type PageResult struct {
	Notified int
	Done     bool // no more members to notify
}
