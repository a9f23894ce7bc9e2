package request

import (
	"context"
	"errors"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"lethe.dev/platform/legalhold"
	"lethe.dev/services/fulfillment/internal/holds"
)

// ErrMemberHeld is the error type of a deleting step refused because the member's data
// was put on legal hold while the erasure ran (by fulfillment itself, or by a service
// answering FAILED_PRECONDITION with reason LEGAL_HOLD). The erasure waits on hold and
// resumes when the hold ends; it is never a failure.
const ErrMemberHeld = "MEMBER_HELD"

func errMemberHeld() error {
	return temporal.NewNonRetryableApplicationError("the member's data is on legal hold", ErrMemberHeld, nil)
}

// memberHeldStatus reports whether a service refused because of a legal hold.
func memberHeldStatus(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == legalhold.Reason {
			return true
		}
	}
	return false
}

// memberHeld reports whether a step (or a child workflow) stopped on ErrMemberHeld.
func memberHeld(err error) bool {
	var app *temporal.ApplicationError
	return errors.As(err, &app) && app.Type() == ErrMemberHeld
}

// refuseHeld is fulfillment's own check before it deletes the member's data.
func (a *Activities) refuseHeld(ctx context.Context, memberID string) error {
	h, err := holds.Get(ctx, a.DB, memberID)
	if err != nil {
		return err // retried: nothing is deleted before the hold can be read
	}
	if h.Active(a.now()) {
		return errMemberHeld()
	}
	return nil
}

func (a *Activities) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// MemberHoldSignal tells an open erasure that its member's legal hold was set or
// released, so it looks again (an expiry needs no signal: the erasure's timer ends then).
const MemberHoldSignal = "member-hold-changed"

// MemberHoldResult says whether the member's data is on legal hold, and until when.
type MemberHoldResult struct {
	Held  bool
	Until time.Time
}

// MemberHold reads the member's legal hold (fulfillment's own table).
func (a *Activities) MemberHold(ctx context.Context, in RequestRef) (MemberHoldResult, error) {
	h, err := holds.Get(ctx, a.DB, in.MemberID)
	if err != nil {
		return MemberHoldResult{}, err
	}
	if !h.Active(a.now()) {
		return MemberHoldResult{}, nil
	}
	return MemberHoldResult{Held: true, Until: h.Expire}, nil
}

// waitWhileMemberHeld keeps an erasure on hold while its member's data is on legal hold:
// it looks when it gets here, again when told (MemberHoldSignal) and when the hold expires.
func (r *run) waitWhileMemberHeld(ctx workflow.Context) error {
	var a *Activities
	for {
		var h MemberHoldResult
		if err := workflow.ExecuteActivity(r.shortCtx(ctx), a.MemberHold, RequestRef{RequestID: r.in.RequestID, MemberID: r.in.MemberID}).Get(ctx, &h); err != nil {
			return err
		}
		if !h.Held {
			return nil
		}
		if r.status != "on_hold" {
			if err := r.setStatus(ctx, "on_hold"); err != nil {
				return err
			}
			r.step(ctx, "member.legal_hold", "waiting", 0)
		}
		r.memberHoldChanged = false
		d := h.Until.Sub(workflow.Now(ctx))
		if d < time.Second {
			d = time.Second
		}
		if _, err := workflow.AwaitWithTimeout(ctx, d, func() bool { return r.memberHoldChanged }); err != nil {
			return err
		}
	}
}
