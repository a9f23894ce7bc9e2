package request

import (
	"context"
	"time"

	"go.temporal.io/sdk/workflow"

	"lethe.dev/services/fulfillment/internal/holds"
)

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
	now := time.Now()
	if a.Now != nil {
		now = a.Now()
	}
	if !h.Active(now) {
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
