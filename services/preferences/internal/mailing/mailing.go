// Package mailing is the marketing mailing workflow: an operator's mailing (an opaque
// campaign id, a channel and a topic) goes to every member whom preferences'
// AuthorizeMarketing allows, a page of identity's members at a time. Only the mailing id
// and counts cross into Temporal; which member got it is in identity's outbox.
package mailing

import (
	"context"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// ErrMailingGone is the error type of a mailing whose row no longer exists: retrying
// its page cannot help.
const ErrMailingGone = "MARKETING_MAILING_GONE"

// PagesPerRun bounds one run's history; the page cursor lives in preferences' database,
// so a continued run resumes where the last page ended.
const PagesPerRun = 500

// pageTimeout bounds one page: 100 members asked and mailed.
const pageTimeout = 2 * time.Minute

// WorkflowID is the id of a mailing's workflow: creating the mailing again finds it.
func WorkflowID(mailingID string) string { return "marketing-mailing/" + mailingID }

// Input starts a mailing; Sent and Refused carry counts over continue-as-new.
type Input struct {
	MailingID     string
	Sent, Refused int
}

// Result is how many members were mailed and refused by this workflow's runs.
type Result struct {
	Sent, Refused int
}

// PageResult is one page: counts, never members.
type PageResult struct {
	Sent, Refused int
	Done          bool
}

// Pages is preferences' store of mailings (internal/prefs owns the table).
type Pages interface {
	SendMailingPage(ctx context.Context, mailingID string) (sent, refused int, done bool, err error)
}

// Activities run a mailing's steps.
type Activities struct {
	Pages Pages
}

// SendPage sends the mailing to one page of members.
func (a *Activities) SendPage(ctx context.Context, mailingID string) (PageResult, error) {
	sent, refused, done, err := a.Pages.SendMailingPage(ctx, mailingID)
	return PageResult{Sent: sent, Refused: refused, Done: done}, err
}

// MarketingMailing sends a mailing page by page until every member was considered. A
// page that fails (identity unavailable) is retried with backoff for as long as it takes.
func MarketingMailing(ctx workflow.Context, in Input) (Result, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: pageTimeout,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 5 * time.Minute,
			NonRetryableErrorTypes: []string{ErrMailingGone}},
	})
	var a *Activities
	res := Result{Sent: in.Sent, Refused: in.Refused}
	for pages := 0; ; pages++ {
		if pages == PagesPerRun {
			return Result{}, workflow.NewContinueAsNewError(ctx, MarketingMailing, Input{MailingID: in.MailingID, Sent: res.Sent, Refused: res.Refused})
		}
		var page PageResult
		if err := workflow.ExecuteActivity(ctx, a.SendPage, in.MailingID).Get(ctx, &page); err != nil {
			return Result{}, err
		}
		res.Sent += page.Sent
		res.Refused += page.Refused
		if page.Done {
			return res, nil
		}
	}
}

// Register adds the mailing workflow and its activities to preferences' worker.
func Register(w worker.Registry, a *Activities) {
	w.RegisterWorkflow(MarketingMailing)
	w.RegisterActivity(a)
}
