package notice_test

import (
	"context"
	"strings"
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
	for _, q := range []string{
		`INSERT INTO partners (id, display_name, kind, purposes, data_categories, agreement_ref, webhook_url, ack_deadline_s, created_at, version) VALUES ('promo-co', 'Promo Co', 2, '["joint_promotion"]', '["user.contact.email"]', 'MKT-9', '', 0, 0, 1)`,
		`INSERT INTO purposes (partner_id, purpose_id, description, data_categories, legal_basis, notice_period_s, created_at) VALUES ('promo-co', 'joint_promotion', 'A joint promotion', '["user.contact.email"]', 'consent', 2592000, 0)`,
		`INSERT INTO notices (id, member_id, partner_id, purpose_id, state, created_at) VALUES ('n1', 'member000001', 'promo-co', 'joint_promotion', 0, 0)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	mail := &mailbox{}
	env.RegisterActivity(&notice.Activities{DB: db, Now: time.Now, Mailer: mail, ObjectionURL: func(id string) string { return "https://privacy.example/v1/notices:object?token=" + id + ".mac" }})
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
	// The member was told, once, by mail: partner, purpose, data and the objection link.
	if len(mail.sent) != 1 || mail.sent[0].member != "member000001" || mail.sent[0].requestID != "sharing-notice/n1" {
		t.Fatalf("notice emails = %+v, want one to the member keyed by the notice", mail.sent)
	}
	for _, want := range []string{"Promo Co", "A joint promotion", "user.contact.email", "https://privacy.example/v1/notices:object?token=n1.mac"} {
		if !strings.Contains(mail.sent[0].detail, want) {
			t.Errorf("the notice email lacks %q:\n%s", want, mail.sent[0].detail)
		}
	}
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

type sentMail struct{ member, reference, detail, requestID string }

// mailbox records what identity was asked to send.
type mailbox struct{ sent []sentMail }

func (m *mailbox) MailNotice(_ context.Context, member, reference, detail, requestID string) error {
	m.sent = append(m.sent, sentMail{member, reference, detail, requestID})
	return nil
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
