package request

import (
	"context"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "lethe.dev/gen/lethe/identity/v1"
)

// Disabling an account (Trakt's policy, §5: "Disabling your account removes any Personal
// Information attached with your account and anonymizes your statistical data"): identity
// records a "disabled" event; fulfillment starts DisabledAccount for the member, which
// waits out the grace period and then files an ordinary erasure of the account, unless
// the member re-enabled it first (sign-in with reactivate: an "enabled" event, delivered
// as ReenabledSignal). The erasure is then like any other: deadlines, legal holds
// (including the member's own), onward erasure, receipt.

// DefaultDisableGrace is how long a disabled account waits before its erasure starts.
const DefaultDisableGrace = 14 * 24 * time.Hour

// ReenabledSignal tells DisabledAccount the member re-enabled their account.
const ReenabledSignal = "reenabled"

// DisabledAccountWorkflowID is the id of a member's disabled-account workflow.
func DisabledAccountWorkflowID(memberID string) string { return "disabled-account/" + memberID }

// DisabledAccountInput starts the grace period of a disabled account. EventID is
// identity's event (opaque), from which the erasure's idempotency key is derived.
type DisabledAccountInput struct {
	MemberID string
	EventID  string
	Grace    time.Duration
}

// DisabledAccountResult says how the grace period ended: "reenabled", "erasure_filed"
// (RequestID names the erasure) or "not_disabled" (the account was no longer disabled,
// e.g. reported as a child's or already erased).
type DisabledAccountResult struct {
	Outcome   string
	RequestID string
}

// FileDisabledErasureInput names the member and the event.
type FileDisabledErasureInput struct {
	MemberID string
	EventID  string
}

// DisabledAccount waits out a disabled account's grace period, then files its erasure
// unless it was re-enabled.
func DisabledAccount(ctx workflow.Context, in DisabledAccountInput) (DisabledAccountResult, error) {
	reenabled := false
	sig := workflow.GetSignalChannel(ctx, ReenabledSignal)
	timerCtx, cancelTimer := workflow.WithCancel(ctx)
	timer := workflow.NewTimer(timerCtx, in.Grace)
	sel := workflow.NewSelector(ctx)
	sel.AddReceive(sig, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); reenabled = true })
	sel.AddFuture(timer, func(workflow.Future) {})
	sel.Select(ctx)
	if reenabled {
		cancelTimer()
		return DisabledAccountResult{Outcome: "reenabled"}, nil
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: 7 * 24 * time.Hour, // identity or intake down for days: keep trying
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Minute,
			NonRetryableErrorTypes: []string{ErrPermanent}},
	})
	var a *Activities
	var res DisabledAccountResult
	err := workflow.ExecuteActivity(actx, a.FileDisabledErasure, FileDisabledErasureInput{MemberID: in.MemberID, EventID: in.EventID}).Get(ctx, &res)
	return res, err
}

// FileDisabledErasure files the erasure of a disabled account whose grace period ended,
// if it is still disabled. Idempotent: the erasure's request id derives from the event.
func (a *Activities) FileDisabledErasure(ctx context.Context, in FileDisabledErasureInput) (DisabledAccountResult, error) {
	m, err := a.Identity.GetMember(ctx, &identityv1.GetMemberRequest{Name: "members/" + in.MemberID})
	if err != nil {
		if status.Code(err) == codes.NotFound {
			return DisabledAccountResult{Outcome: "not_disabled"}, nil
		}
		return DisabledAccountResult{}, err
	}
	if m.GetState() != identityv1.MemberState_MEMBER_STATE_DISABLED {
		return DisabledAccountResult{Outcome: "not_disabled"}, nil
	}
	if a.FileErasure == nil {
		return DisabledAccountResult{}, temporal.NewNonRetryableApplicationError("fulfillment: no erasure intake wired", ErrPermanent, nil)
	}
	id, err := a.FileErasure(ctx, in.MemberID, "account-disabled-"+in.EventID)
	if err != nil {
		return DisabledAccountResult{}, err
	}
	return DisabledAccountResult{Outcome: "erasure_filed", RequestID: id}, nil
}
