package notice_test

import (
	"context"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"lethe.dev/platform/storage/storagetest"
	"lethe.dev/services/sharing/internal/notice"
	"lethe.dev/services/sharing/internal/store"
)

// run executes a 30-day notice in Temporal's test environment with time skipping, with
// activities against a real SQLite store; objectOnDay > 0 sends an objection that day.
func run(t *testing.T, objectOnDay int) (notice.Result, int, *testsuite.TestWorkflowEnvironment) {
	t.Helper()
	db := storagetest.MustOpenSQLite(t, store.Migrations)
	if _, err := db.Exec(`INSERT INTO notices (id, member_id, partner_id, purpose_id, state, created_at) VALUES ('n1', 'member000001', 'promo-co', 'joint_promotion', 0, 0)`); err != nil {
		t.Fatal(err)
	}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(&notice.Activities{DB: db, Now: time.Now})
	if objectOnDay > 0 {
		env.RegisterDelayedCallback(func() {
			var state string
			v, err := env.QueryWorkflow(notice.StateQuery)
			if err != nil || v.Get(&state) != nil || state != "pending" {
				t.Errorf("state before the objection = %q, %v", state, err)
			}
			if _, err := db.Exec(`INSERT INTO objections (id, member_id, partner_id, purpose_id, created_at) VALUES ('o1', 'member000001', 'promo-co', '', 0)`); err != nil {
				t.Error(err)
			}
			env.SignalWorkflow(notice.ObjectionSignal, nil)
		}, time.Duration(objectOnDay)*24*time.Hour)
	}
	env.ExecuteWorkflow(notice.Notice, notice.Input{NoticeID: "n1", NoticePeriod: 30 * 24 * time.Hour})
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("workflow: completed=%v err=%v", env.IsWorkflowCompleted(), env.GetWorkflowError())
	}
	var res notice.Result
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	var state int
	if err := db.QueryRowContext(context.Background(), `SELECT state FROM notices WHERE id = 'n1'`).Scan(&state); err != nil {
		t.Fatal(err)
	}
	return res, state, env
}

func TestNoticeAllowsAfterThePeriodWithoutObjection(t *testing.T) {
	res, state, _ := run(t, 0)
	if !res.Allowed || state != notice.StateAllowed {
		t.Fatalf("allowed=%v state=%d", res.Allowed, state)
	}
}

func TestObjectionOnDayTenBlocks(t *testing.T) {
	res, state, _ := run(t, 10)
	if res.Allowed || state != notice.StateBlocked {
		t.Fatalf("allowed=%v state=%d", res.Allowed, state)
	}
}
