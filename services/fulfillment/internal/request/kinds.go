package request

import (
	"errors"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// The request kinds beyond access and erasure — rectification, restriction of
// processing, objection, opt-out of sale/sharing and portability — run in the same
// workflow as access and erasure: the same verification, deadline, escalations, holds
// and progress. Only the work differs (fulfil). Denial and the CCPA acknowledgement apply
// to every kind.

// hasArchive reports whether the request produces a downloadable archive.
func (r *run) hasArchive() bool { return r.in.Kind == KindAccess || r.in.Kind == KindPortability }

// errTooLate refuses a denial once the request's work has begun.
var errTooLate = errors.New("the request's work has begun: it can no longer be denied")

// handleDecisions registers the operators' decisions: deny (any kind, until its work
// begins) and approve (a rectification waiting for review).
func (r *run) handleDecisions(ctx workflow.Context) error {
	if err := workflow.SetUpdateHandlerWithOptions(ctx, DenyUpdate, func(ctx workflow.Context) error {
		r.denied = true
		return nil
	}, workflow.UpdateHandlerOptions{Validator: func() error {
		if r.committed || r.finished() {
			return errTooLate
		}
		return nil
	}}); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, ApproveUpdate, func(ctx workflow.Context) error {
		r.approved = true
		return nil
	}, workflow.UpdateHandlerOptions{Validator: func() error {
		switch {
		case r.in.Kind != KindRectification:
			return errors.New("only a rectification is reviewed")
		case r.status != "in_progress" || r.committed || r.denied:
			return errors.New("the rectification is not waiting for review")
		}
		return nil
	}})
}

func (r *run) finished() bool {
	switch r.status {
	case "completed", "cancelled", "expired", "denied", "failed":
		return true
	}
	return false
}

// deny tells the member why their request was refused and how to complain, then ends
// it as denied (counted in the yearly figures).
func (r *run) deny(ctx workflow.Context) (Result, error) {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	var a *Activities
	if err := workflow.ExecuteActivity(r.shortCtx(dctx), a.NotifyDenied, RequestRef{RequestID: r.in.RequestID, MemberID: r.in.MemberID}).Get(dctx, nil); err != nil {
		return r.fail(ctx, err)
	}
	r.step(dctx, "denied", "done", 0)
	return r.end(ctx, "denied")
}

// acknowledgeRetry is how often a receipt confirmation that could not be sent is
// tried again.
const acknowledgeRetry = time.Hour

// acknowledge confirms receipt to the member where the jurisdiction requires it (CCPA:
// within 10 business days), at once, trying again every hour while identity cannot take
// the message; the deadline passed without it is recorded as an escalation, never
// silent, and it is still sent late.
func (r *run) acknowledge(ctx workflow.Context) {
	if r.in.AcknowledgeBy.IsZero() {
		return
	}
	workflow.Go(ctx, func(ctx workflow.Context) {
		actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			StartToCloseTimeout:    30 * time.Second,
			ScheduleToCloseTimeout: 10 * time.Minute,
			RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
				NonRetryableErrorTypes: []string{ErrPermanent}},
		})
		var a *Activities
		ref := RequestRef{RequestID: r.in.RequestID, MemberID: r.in.MemberID}
		late := false
		for {
			err := workflow.ExecuteActivity(actx, a.Acknowledge, ref).Get(ctx, nil)
			if err == nil {
				r.step(ctx, "acknowledged", "done", 0)
				return
			}
			if !late && !workflow.Now(ctx).Before(r.in.AcknowledgeBy) {
				late = true
				_ = workflow.ExecuteActivity(r.shortCtx(ctx), a.RecordEscalation, EscalationInput{RequestID: r.in.RequestID, Level: "acknowledge-breach"}).Get(ctx, nil)
			}
			if permanentFailure(err) || r.finished() {
				return
			}
			wait := acknowledgeRetry
			if d := r.in.AcknowledgeBy.Sub(workflow.Now(ctx)); !late && d < wait {
				wait = d
			}
			if workflow.Sleep(ctx, wait) != nil {
				return
			}
		}
	})
}

// fulfil does the work of the kinds that change what is done with the member's data.
// A rectification first waits for an operator's review (approve, or deny); the
// escalations keep running meanwhile.
func (r *run) fulfil(ctx workflow.Context) error {
	var a *Activities
	ref := RequestRef{RequestID: r.in.RequestID, MemberID: r.in.MemberID}
	var step string
	var act any
	switch r.in.Kind {
	case KindRectification:
		r.step(ctx, "review", "waiting", 0)
		if err := workflow.Await(ctx, func() bool { return r.approved || r.denied }); err != nil {
			return err
		}
		if r.denied {
			r.step(ctx, "review", "rejected", 0)
			return nil
		}
		r.committed = true
		r.step(ctx, "review", "approved", 0)
		step, act = "rectify", a.ApplyRectification
	case KindRestriction:
		step, act = "restrict", a.ApplyRestriction
	case KindObjection:
		step, act = "object", a.ApplyObjection
	case KindSaleOptOut:
		step, act = "opt_out", a.ApplySaleOptOut
	default:
		return temporal.NewNonRetryableApplicationError("unknown request kind "+r.in.Kind, ErrPermanent, nil)
	}
	if err := r.waitWhileHeld(ctx); err != nil {
		return err
	}
	var n int64
	if err := workflow.ExecuteActivity(r.shortCtx(ctx), act, ref).Get(ctx, &n); err != nil {
		r.step(ctx, step, "failed", 0)
		return err
	}
	r.step(ctx, step, "done", n)
	return workflow.ExecuteActivity(r.shortCtx(ctx), a.NotifyCompleted, ref).Get(ctx, nil)
}
