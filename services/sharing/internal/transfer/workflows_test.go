package transfer_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"lethe.dev/services/sharing/internal/transfer"
)

// fakeTransfers stands in for sharing's store: pages of members, and the time (workflow
// clock) at which the transfer was made effective.
type fakeTransfers struct {
	mu        sync.Mutex
	pages     []int
	served    int
	effective bool
	now       func() time.Time
	madeAt    time.Time
	// signUps are the sign-up times of members who joined after the fan-out; sweeps
	// records each sweep's since and when it ran; notified, who got notice in a sweep.
	signUps  []time.Time
	sweeps   [][2]time.Time
	notified map[time.Time]int
}

func (f *fakeTransfers) NotifyTransferNewcomers(_ context.Context, _ string, since time.Time) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	f.sweeps = append(f.sweeps, [2]time.Time{since, now})
	n := 0
	for _, at := range f.signUps {
		if at.After(since) && !at.After(now) {
			if f.notified == nil {
				f.notified = map[time.Time]int{}
			}
			if f.notified[at] == 0 {
				n++
			}
			f.notified[at]++
		}
	}
	return n, nil
}

func (f *fakeTransfers) NotifyTransferPage(context.Context, string) (int, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.pages[f.served]
	f.served++
	return n, f.served == len(f.pages), nil
}

func (f *fakeTransfers) MakeTransferEffective(context.Context, string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.effective, f.madeAt = true, f.now()
	return nil
}

// TestTransferNotifiesEveryPageThenTakesEffectAtTheDate: 250 members in three pages are
// given notice at once; the transfer waits 30 days (skipped) and only then is recorded
// effective; the state query shows where it is.
func TestTransferNotifiesEveryPageThenTakesEffectAtTheDate(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	start := env.Now()
	f := &fakeTransfers{pages: []int{100, 100, 50}, now: env.Now}
	env.RegisterActivity(&transfer.Activities{Transfers: f})
	effective := start.Add(30 * 24 * time.Hour)
	env.RegisterDelayedCallback(func() {
		var state string
		v, err := env.QueryWorkflow(transfer.StateQuery)
		if err != nil || v.Get(&state) != nil || state != "waiting" {
			t.Errorf("state on day 29 = %q, %v", state, err)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.served != 3 || f.effective {
			t.Errorf("on day 29: %d pages served, effective=%v; want all 3 pages, not effective", f.served, f.effective)
		}
	}, 29*24*time.Hour)
	begin := time.Now()
	env.ExecuteWorkflow(transfer.BusinessTransfer, transfer.Input{TransferID: "acme-merger", EffectiveTime: effective})
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("workflow: completed=%v err=%v", env.IsWorkflowCompleted(), env.GetWorkflowError())
	}
	var res transfer.Result
	if err := env.GetWorkflowResult(&res); err != nil || res.Notified != 250 {
		t.Fatalf("result %+v %v, want 250 notified", res, err)
	}
	if !f.effective || f.madeAt.Before(effective) {
		t.Fatalf("made effective at %v, want at or after %v", f.madeAt, effective)
	}
	t.Logf("30 days skipped in %v of wall time", time.Since(begin))
}

// TestTransferContinuesAsNewOnLongMemberLists: after PagesPerRun pages the run continues
// as new (history stays bounded; the cursor lives in the database).
func TestTransferContinuesAsNewOnLongMemberLists(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	pages := make([]int, transfer.PagesPerRun+1)
	f := &fakeTransfers{pages: pages, now: env.Now}
	env.RegisterActivity(&transfer.Activities{Transfers: f})
	env.ExecuteWorkflow(transfer.BusinessTransfer, transfer.Input{TransferID: "big", EffectiveTime: env.Now().Add(time.Hour)})
	if !workflow.IsContinueAsNewError(env.GetWorkflowError()) {
		t.Fatalf("after %d pages: %v, want continue-as-new", transfer.PagesPerRun, env.GetWorkflowError())
	}
	if f.effective {
		t.Fatal("made effective before every member was notified")
	}
}

// TestTransferTellsMembersWhoSignUpBeforeTheDate: members who sign up after the fan-out
// began are given notice by a sweep within a day (once a day until the date, and at the
// date), each exactly once; the result counts them.
func TestTransferTellsMembersWhoSignUpBeforeTheDate(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	start := env.Now()
	f := &fakeTransfers{pages: []int{100, 50}, now: env.Now,
		signUps: []time.Time{start.Add(time.Minute), start.Add(36 * time.Hour), start.Add(71 * time.Hour), start.Add(72*time.Hour - time.Second)}}
	env.RegisterActivity(&transfer.Activities{Transfers: f})
	effective := start.Add(72 * time.Hour)
	env.ExecuteWorkflow(transfer.BusinessTransfer, transfer.Input{TransferID: "acme-merger", EffectiveTime: effective})
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("workflow: %v", env.GetWorkflowError())
	}
	var res transfer.Result
	if err := env.GetWorkflowResult(&res); err != nil || res.Notified != 154 {
		t.Fatalf("result %+v %v, want the 150 of the fan-out and the 4 newcomers", res, err)
	}
	if len(f.sweeps) != 3 {
		t.Fatalf("sweeps %v, want days 1 and 2 and the date", f.sweeps)
	}
	if first := f.sweeps[0][0]; first.After(start) {
		t.Fatalf("the first sweep looks from %v, after the fan-out began (%v)", first, start)
	}
	for i := 1; i < len(f.sweeps); i++ {
		if f.sweeps[i][0].After(f.sweeps[i-1][1]) {
			t.Fatalf("sweep %d looks from %v, after sweep %d ran (%v): a gap", i, f.sweeps[i][0], i-1, f.sweeps[i-1][1])
		}
	}
	if last := f.sweeps[2][1]; last.Before(effective) || !f.madeAt.Equal(last) && f.madeAt.Before(last) {
		t.Fatalf("last sweep at %v, made effective at %v; want the sweep at the date, before it takes effect", last, f.madeAt)
	}
	for at, n := range f.notified {
		if at.Before(start.Add(72*time.Hour)) && n < 1 {
			t.Fatalf("member who signed up at %v not told", at)
		}
	}
	if len(f.notified) != 4 {
		t.Fatalf("newcomers told: %v", f.notified)
	}
}
