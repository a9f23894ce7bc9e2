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

// SweepEvery is how often, between the fan-out and the date, members who signed up
// since are given notice (and once more at the date).
const SweepEvery = 24 * time.Hour

// SweepMargin is how far a sweep looks back before the previous one began: identity's
// clock and the workflow's may differ a little, and a member notified twice gets one
// notice (notices are unique per member).
const SweepMargin = 5 * time.Minute

// NewcomerSweepsChange is the workflow.GetVersion change id of the newcomer sweeps.
const NewcomerSweepsChange = "newcomer-sweeps"

// Input starts a transfer. Only opaque ids and times cross into Temporal.
type Input struct {
	TransferID    string
	EffectiveTime time.Time
	// FanOutStart is when the first run began (set by it, carried over continue-as-new):
	// members who signed up after it may have been missed by the fan-out.
	FanOutStart time.Time
}

// SweepInput asks for notices to the members who signed up after Since.
type SweepInput struct {
	TransferID string
	Since      time.Time
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
