package transfer

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// BusinessTransfer gives every member notice, a page at a time, then waits for the
// effective date, telling members who signed up meanwhile once a day, and records the
// transfer effective. Data flows to the acquirer only
// through AuthorizeDisclosure, which reads the date and each member's objection, so the
// timer here marks the state for operators; it never opens the flow by itself.
func BusinessTransfer(ctx workflow.Context, in Input) (Result, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 5 * time.Minute,
			NonRetryableErrorTypes: []string{ErrTransferGone},
		},
	})
	state := "notifying"
	if err := workflow.SetQueryHandler(ctx, StateQuery, func() (string, error) { return state, nil }); err != nil {
		return Result{}, err
	}
	var a *Activities
	if in.FanOutStart.IsZero() {
		in.FanOutStart = workflow.Now(ctx)
	}
	notified := 0
	for pages := 0; ; pages++ {
		if pages == PagesPerRun {
			return Result{}, workflow.NewContinueAsNewError(ctx, BusinessTransfer, in)
		}
		var page PageResult
		if err := workflow.ExecuteActivity(ctx, a.NotifyPage, in.TransferID).Get(ctx, &page); err != nil {
			return Result{}, err
		}
		notified += page.Notified
		if page.Done {
			break
		}
	}
	state = "waiting"
	if workflow.GetVersion(ctx, NewcomerSweepsChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		if d := in.EffectiveTime.Sub(workflow.Now(ctx)); d > 0 {
			if err := workflow.Sleep(ctx, d); err != nil {
				return Result{}, err
			}
		}
	} else {
		// Members who sign up after the fan-out began are told too: once a day until
		// the date, and at the date. (Those who sign up later still are told at their
		// first disclosure to the acquirer, which waits for their notice.)
		since := in.FanOutStart.Add(-SweepMargin)
		for {
			d := in.EffectiveTime.Sub(workflow.Now(ctx))
			if d > 0 {
				if err := workflow.Sleep(ctx, min(d, SweepEvery)); err != nil {
					return Result{}, err
				}
			}
			began := workflow.Now(ctx)
			var swept PageResult
			if err := workflow.ExecuteActivity(ctx, a.NotifyNewcomers, SweepInput{TransferID: in.TransferID, Since: since}).Get(ctx, &swept); err != nil {
				return Result{}, err
			}
			notified += swept.Notified
			since = began.Add(-SweepMargin)
			if !began.Before(in.EffectiveTime) {
				break
			}
		}
	}
	if err := workflow.ExecuteActivity(ctx, a.MakeEffective, in.TransferID).Get(ctx, nil); err != nil {
		return Result{}, err
	}
	state = "effective"
	return Result{Notified: notified}, nil
}
