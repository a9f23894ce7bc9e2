package notice

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Notice notifies the member (marks the notice sent and emails them a one-click
// objection link), then waits for the notice period or an objection signal,
// whichever comes first, and records the outcome.
func Notice(ctx workflow.Context, in Input) (Result, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 5 * time.Minute,
			NonRetryableErrorTypes: []string{ErrNoticeGone},
		},
	})
	state := "pending"
	if err := workflow.SetQueryHandler(ctx, StateQuery, func() (string, error) { return state, nil }); err != nil {
		return Result{}, err
	}
	var a *Activities
	if err := workflow.ExecuteActivity(ctx, a.MarkNotified, in).Get(ctx, nil); err != nil {
		return Result{}, err
	}
	// Versioned: notices started before the email existed replay without it.
	if v := workflow.GetVersion(ctx, MailVersion, workflow.DefaultVersion, 1); v >= 1 {
		if err := workflow.ExecuteActivity(ctx, a.MailNotice, in).Get(ctx, nil); err != nil {
			return Result{}, err
		}
	}

	timerCtx, cancelTimer := workflow.WithCancel(ctx)
	objected := false
	sel := workflow.NewSelector(ctx)
	sel.AddFuture(workflow.NewTimer(timerCtx, in.NoticePeriod), func(workflow.Future) {})
	sel.AddReceive(workflow.GetSignalChannel(ctx, ObjectionSignal), func(c workflow.ReceiveChannel, _ bool) {
		c.Receive(ctx, nil)
		objected = true
		cancelTimer() // no longer needed
	})
	sel.Select(ctx)

	var res Result
	if err := workflow.ExecuteActivity(ctx, a.Resolve, ResolveInput{NoticeID: in.NoticeID, Objected: objected}).Get(ctx, &res); err != nil {
		return Result{}, err
	}
	state = "blocked"
	if res.Allowed {
		state = "allowed"
	}
	return res, nil
}
