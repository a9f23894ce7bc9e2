// Package notice is the advance-notice workflow: a member is told before their data is
// shared for a new purpose, and data may flow only when the notice period ends without
// an objection. One workflow per notice, observable in the Temporal UI.
package notice

import "time"

// TaskQueue is where sharing's workers poll.
const TaskQueue = "lethe-sharing"

// ObjectionSignal tells a running notice that the member objected. It carries no payload.
const ObjectionSignal = "objection"

// StateQuery returns the notice's state ("pending", "allowed", "blocked").
const StateQuery = "state"

// MailVersion is the workflow.GetVersion change id of the notice email step.
const MailVersion = "notice-email"

// WorkflowID is the id of the workflow of notice noticeID.
func WorkflowID(noticeID string) string { return "sharing-notice/" + noticeID }

// Input starts a notice. Only opaque ids cross into Temporal.
type Input struct {
	NoticeID     string
	NoticePeriod time.Duration
}

// Result is how the notice ended.
type Result struct {
	Allowed bool
}
