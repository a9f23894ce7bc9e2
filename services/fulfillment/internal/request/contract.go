// Package request runs members' privacy requests as Temporal workflows: verification,
// legal deadlines with escalations, cooling-off and legal holds, export fan-out to every
// data-holding service into one archive, and erasure across services with onward erasure
// to processors, a verification sweep and a signed receipt.
package request

import (
	"context"
	"time"

	enums "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
)

// TaskQueue is where fulfillment's workers poll.
const TaskQueue = "lethe-fulfillment"

// Signal and query names. Signals carry no payload — the RPC that sends them has already
// validated and recorded what changed — except extend, which carries the new due time.
const (
	VerifySignal    = "verify"
	CancelSignal    = "cancel"
	HoldSignal      = "legal-hold"
	ReleaseSignal   = "release-hold"
	ExtendSignal    = "extend"
	OnwardAckSignal = "onward-ack"
	// ChildErasureSignal upgrades an open ordinary erasure to a child's: verified, no
	// cooling-off (a child report met the member's open erasure).
	ChildErasureSignal = "child-erasure"
	ProgressQuery      = "progress"
)

// Updates (with validators, so the caller learns whether the workflow took them).
const (
	// DenyUpdate refuses the request: accepted until its work starts (a rectification
	// until it is reviewed); the RPC has recorded the coded reason first.
	DenyUpdate = "deny"
	// ApproveUpdate approves a rectification waiting for review; the correction is then
	// applied.
	ApproveUpdate = "approve"
)

// Search attributes the workflows set, registered in the namespace by the dev server and
// by deploy/temporal/setup.sh.
const (
	SAKind         = "LetheRequestKind"
	SAStatus       = "LetheRequestStatus"
	SADueTime      = "LetheDueTime"
	SAJurisdiction = "LetheJurisdiction"
)

// SearchAttributes lists the custom search attributes with their types.
var SearchAttributes = map[string]enums.IndexedValueType{
	SAKind:         enums.INDEXED_VALUE_TYPE_KEYWORD,
	SAStatus:       enums.INDEXED_VALUE_TYPE_KEYWORD,
	SADueTime:      enums.INDEXED_VALUE_TYPE_DATETIME,
	SAJurisdiction: enums.INDEXED_VALUE_TYPE_KEYWORD,
}

// Kinds as workflow-facing names.
const (
	KindAccess        = "access"
	KindErasure       = "erasure"
	KindChildErasure  = "child_erasure"
	KindRectification = "rectification"
	KindRestriction   = "restriction"
	KindObjection     = "objection"
	KindSaleOptOut    = "sale_opt_out"
	KindPortability   = "portability"
)

// WorkflowID is the id of a member's open request of a kind. Erasure and child erasure
// share one id so two erasures of one member can never run at once.
func WorkflowID(kind, memberID string) string {
	if kind == KindChildErasure {
		kind = KindErasure
	}
	return "privacy-request/" + kind + "/" + memberID
}

// OnwardWorkflowID is the id of the child workflow erasing at one processor.
func OnwardWorkflowID(requestID, partner string) string {
	return "onward-erasure/" + requestID + "/" + partner
}

// ArchiveExpiryWorkflowID is the id of the workflow that deletes an export's archive
// when its link expires.
func ArchiveExpiryWorkflowID(requestID string) string { return "archive-expiry/" + requestID }

// ArchiveExpiryInput starts an archive's expiry.
type ArchiveExpiryInput struct {
	RequestID string
	TTL       time.Duration
	// UntilRecorded: started beside the export (export-all runs), before the archive's
	// expiry is known; after TTL it sleeps on until the expiry the archive step recorded.
	UntilRecorded bool
}

// Input starts a request workflow. Only opaque ids and timings cross into Temporal.
type Input struct {
	RequestID          string
	MemberID           string
	Kind               string
	Jurisdiction       string
	Verified           bool
	DueTime            time.Time
	CoolingOff         time.Duration
	VerificationWindow time.Duration
	ArchiveTTL         time.Duration
	// OnwardPollInterval is how often processors that have not acknowledged are checked
	// again; zero means OnwardPollInterval.
	OnwardPollInterval time.Duration
	// AcknowledgeBy is when receipt must be confirmed to the member (CCPA: 10 business
	// days); zero when the jurisdiction has no such rule.
	AcknowledgeBy time.Time
	// Revision is the workflow revision the run was started for (intake sets
	// CurrentRevision). Zero: runs started before revisions, which take the version gates
	// they recorded. See CurrentRevision.
	Revision int
}

// CurrentRevision is the revision intake starts runs with. Revision 1 runs every change
// up to export-all without recording a version marker (GetVersion), and starts with the
// status search attribute its first workflow task would set (InitialStatus). Each marker
// is a history event plus, through the SDK's TemporalChangeVersion upsert, a visibility
// write on the Temporal server, and so is each status upsert: two events and two
// visibility writes fewer per request. The revision is in the run's input, so a run
// replays with the code paths it started with.
const CurrentRevision = 1

// InitialStatus is the status search attribute a run of revision 1 or later is started
// with: the status its first workflow task sets unless a hold stops it first.
func InitialStatus(in Input) string {
	switch {
	case !in.Verified:
		return "awaiting_verification"
	case (in.Kind == KindErasure || in.Kind == KindChildErasure) && in.CoolingOff > 0:
		return "cooling_off"
	}
	return "in_progress"
}

// Result is how a request ended.
type Result struct {
	State string // completed, cancelled, expired, denied, failed
}

// Step is one line of a request's progress.
type Step struct {
	Step  string    `json:"step"`
	State string    `json:"state"`
	Count int64     `json:"count"`
	Time  time.Time `json:"time"`
}

// OnwardInput starts the erasure at one processor.
type OnwardInput struct {
	RequestID string
	MemberID  string
	Partner   string
	Deadline  time.Time
	// PollInterval is how often the processor's state is checked (zero: OnwardPollInterval).
	PollInterval time.Duration
}

// OnwardResult is how one processor's erasure ended.
type OnwardResult struct {
	Partner      string
	Acknowledged bool
	Attempts     int
}

// progressAnswer is what ProgressQuery answers.
type progressAnswer struct {
	Request string `json:"request"`
	Status  string `json:"status"`
	Held    bool   `json:"held"`
	Steps   []Step `json:"steps"`
}

// QueryProgress asks the running workflow of a request for its steps: runs since lean
// bookkeeping keep them there and store them only with state changes. ok is false when
// the workflow does not answer for this request (closed, another run under the same id,
// Temporal unreachable within a second): the caller then reads the stored steps.
func QueryProgress(ctx context.Context, c client.Client, kind, memberID, requestID string) (steps []Step, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	v, err := c.QueryWorkflow(ctx, WorkflowID(kind, memberID), "", ProgressQuery)
	if err != nil {
		return nil, false
	}
	var ans progressAnswer
	if err := v.Get(&ans); err != nil || ans.Request != requestID {
		return nil, false
	}
	return ans.Steps, true
}
