// Package complaint tracks members' complaints about their data (Trakt §8) as Temporal
// workflows: one per complaint, with an acknowledgement and a resolution deadline,
// escalated when one passes (like requests), and the member told by email when an
// operator acknowledges or resolves it. Its store is the one owner of the complaints
// tables.
package complaint

import "time"

// TaskQueue is fulfillment's task queue (request.TaskQueue), where these workflows run
// beside the requests'.
const TaskQueue = "lethe-fulfillment"

// Signals an operator's action sends; they carry no payload (the RPC recorded it).
const (
	AcknowledgedSignal = "complaint-acknowledged"
	ResolvedSignal     = "complaint-resolved"
	// StateQuery returns "received", "acknowledged" or "resolved".
	StateQuery = "state"
)

// Escalation levels.
const (
	LevelAckOverdue     = "acknowledgement-overdue"
	LevelResolveAtRisk  = "resolution-at-risk"
	LevelResolveOverdue = "resolution-overdue"
)

// Default deadlines: acknowledged within 10 days (CCPA's receipt), resolved within 45
// (the Privacy Shield answer Trakt's policy commits to).
const (
	DefaultAckWindow     = 10 * 24 * time.Hour
	DefaultResolveWindow = 45 * 24 * time.Hour
)

// WorkflowID is the id of complaint complaintID's workflow.
func WorkflowID(complaintID string) string { return "complaint/" + complaintID }

// Input starts a complaint's workflow. Only opaque ids and times cross into Temporal.
type Input struct {
	ComplaintID string
	MemberID    string
	AckDue      time.Time
	ResolveDue  time.Time
}

// Result is how it ended.
type Result struct {
	State       string
	Escalations []string
}

// EscalationInput records one escalation.
type EscalationInput struct {
	ComplaintID string
	Level       string
}

// NotifyInput tells the member about their complaint.
type NotifyInput struct {
	ComplaintID string
	MemberID    string
	Event       string // "acknowledged" or "resolved"
}
