package request_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"

	"lethe.dev/services/fulfillment/internal/request"
)

// TestDisabledAccount: a disabled account's erasure is filed when the grace period ends
// (14 days skipped), and never when the member re-enables it within the grace period.
func TestDisabledAccount(t *testing.T) {
	for _, tc := range []struct {
		name      string
		reenable  time.Duration // 0: never
		wantFiled bool
	}{
		{"grace ends: erasure filed", 0, true},
		{"re-enabled on day 3: no erasure", 3 * 24 * time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s testsuite.WorkflowTestSuite
			e := s.NewTestWorkflowEnvironment()
			a := &request.Activities{}
			e.RegisterActivity(a)
			start := e.Now()
			var filedAt time.Time
			e.OnActivity(a.FileDisabledErasure, mock.Anything, mock.Anything).Return(func(_ context.Context, in request.FileDisabledErasureInput) (request.DisabledAccountResult, error) {
				filedAt = e.Now()
				if in.MemberID != "m0000001" || in.EventID != "ev1" {
					t.Errorf("filed for %+v", in)
				}
				return request.DisabledAccountResult{Outcome: "erasure_filed", RequestID: "members/m0000001/privacyRequests/r1"}, nil
			})
			if tc.reenable > 0 {
				e.RegisterDelayedCallback(func() { e.SignalWorkflow(request.ReenabledSignal, nil) }, tc.reenable)
			}
			e.ExecuteWorkflow(request.DisabledAccount, request.DisabledAccountInput{MemberID: "m0000001", EventID: "ev1", Grace: request.DefaultDisableGrace})
			if err := e.GetWorkflowError(); err != nil {
				t.Fatal(err)
			}
			var res request.DisabledAccountResult
			if err := e.GetWorkflowResult(&res); err != nil {
				t.Fatal(err)
			}
			if tc.wantFiled {
				if res.Outcome != "erasure_filed" || filedAt.Sub(start) < request.DefaultDisableGrace {
					t.Fatalf("outcome %q, filed %v after the disable (want >= %v)", res.Outcome, filedAt.Sub(start), request.DefaultDisableGrace)
				}
			} else if res.Outcome != "reenabled" || !filedAt.IsZero() {
				t.Fatalf("outcome %q, filed at %v", res.Outcome, filedAt)
			}
		})
	}
}
