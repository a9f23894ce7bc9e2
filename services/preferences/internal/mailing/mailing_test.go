package mailing_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"

	"lethe.dev/services/preferences/internal/mailing"
)

// TestMarketingMailingSendsPageByPage: the workflow sends page after page until the
// store says every member was considered, sums the counts, and retries a page that
// failed (identity unavailable) instead of skipping it.
func TestMarketingMailingSendsPageByPage(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	e := s.NewTestWorkflowEnvironment()
	a := &mailing.Activities{}
	e.RegisterActivity(a)
	calls := 0
	e.OnActivity(a.SendPage, mock.Anything, "campaign-0001").Return(func(context.Context, string) (mailing.PageResult, error) {
		calls++
		switch calls {
		case 1:
			return mailing.PageResult{Sent: 2, Refused: 1}, nil
		case 2:
			return mailing.PageResult{}, errors.New("identity unavailable")
		default:
			return mailing.PageResult{Sent: 1, Refused: 3, Done: true}, nil
		}
	})
	e.ExecuteWorkflow(mailing.MarketingMailing, mailing.Input{MailingID: "campaign-0001"})
	if !e.IsWorkflowCompleted() || e.GetWorkflowError() != nil {
		t.Fatalf("workflow: %v", e.GetWorkflowError())
	}
	var res mailing.Result
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Sent != 3 || res.Refused != 4 || calls != 3 {
		t.Fatalf("result %+v after %d calls", res, calls)
	}
}
