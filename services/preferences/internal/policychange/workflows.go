package policychange

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// pageTimeout bounds one page: 100 emails queued through identity.
const pageTimeout = 2 * time.Minute

// PolicyChangeNotice emails every member about a published policy version, a page at a
// time and at once (in advance of the effective date, as both policies promise), then
// waits for the effective date. A page that fails (identity unavailable) is retried with
// backoff for as long as it takes; the page cursor lives in the database, so a retried
// page, a restarted worker or a continued run resumes where the last page ended.
func PolicyChangeNotice(ctx workflow.Context, in Input) (Result, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: pageTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 5 * time.Minute,
			NonRetryableErrorTypes: []string{ErrVersionGone},
		},
	})
	state := StateNotifying
	if err := workflow.SetQueryHandler(ctx, StateQuery, func() (string, error) { return state, nil }); err != nil {
		return Result{}, err
	}
	var a *Activities
	notified := in.NotifiedBefore
	for pages := 0; ; pages++ {
		if pages == PagesPerRun {
			next := in
			next.NotifiedBefore = notified
			return Result{}, workflow.NewContinueAsNewError(ctx, PolicyChangeNotice, next)
		}
		var page PageResult
		if err := workflow.ExecuteActivity(ctx, a.NotifyPage, PageInput{Policy: in.Policy, Version: in.Version}).Get(ctx, &page); err != nil {
			return Result{}, err
		}
		notified += page.Notified
		if page.Done {
			break
		}
	}
	state = StateAnnounced
	if d := in.EffectiveTime.Sub(workflow.Now(ctx)); d > 0 {
		if err := workflow.Sleep(ctx, d); err != nil {
			return Result{}, err
		}
	}
	state = StateInEffect
	return Result{Notified: notified}, nil
}
