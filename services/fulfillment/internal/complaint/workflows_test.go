package complaint_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"
	"google.golang.org/grpc"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	identityv1 "lethe.dev/gen/lethe/identity/v1"
	"lethe.dev/platform/storage/storagetest"
	"lethe.dev/services/fulfillment/internal/complaint"
	"lethe.dev/services/fulfillment/internal/store"
)

// mailbox is identity as the workflow sees it: it records what it was asked to send.
type mailbox struct {
	identityv1.IdentityServiceClient
	mu   sync.Mutex
	sent []*identityv1.NotifyMemberRequest
}

func (m *mailbox) NotifyMember(_ context.Context, in *identityv1.NotifyMemberRequest, _ ...grpc.CallOption) (*identityv1.NotifyMemberResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent = append(m.sent, in)
	return &identityv1.NotifyMemberResponse{MessageId: "m"}, nil
}

// run files a complaint and runs its workflow with time skipping; ackDay and
// resolveDay (days after filing) are when an operator acts (0: never for ack).
func run(t *testing.T, ackDay, resolveDay int) (complaint.Result, *fulfillmentv1.Complaint, *mailbox) {
	t.Helper()
	db := storagetest.MustOpenSQLite(t, store.Migrations)
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	st := &complaint.Store{DB: db, Now: env.Now}
	ackDue, resolveDue := complaint.Deadlines(env.Now(), 0, 0)
	c, err := st.Create(context.Background(), complaint.New{MemberID: "member000001", RequestID: "c1", Category: fulfillmentv1.ComplaintCategory_COMPLAINT_CATEGORY_SHARING,
		Description: "You shared my data", AckDue: ackDue, ResolveDue: resolveDue})
	if err != nil {
		t.Fatal(err)
	}
	id := c.GetName()[len("members/member000001/complaints/"):]
	mail := &mailbox{}
	env.RegisterActivity(&complaint.Activities{Store: st, Identity: mail})
	day := 24 * time.Hour
	if ackDay > 0 {
		env.RegisterDelayedCallback(func() {
			if _, err := st.Acknowledge(context.Background(), "member000001", id); err != nil {
				t.Error(err)
			}
			env.SignalWorkflow(complaint.AcknowledgedSignal, nil)
		}, time.Duration(ackDay)*day)
	}
	env.RegisterDelayedCallback(func() {
		var state string
		if v, err := env.QueryWorkflow(complaint.StateQuery); err != nil || v.Get(&state) != nil {
			t.Errorf("state query: %v", err)
		} else if want := map[bool]string{true: "acknowledged", false: "received"}[ackDay > 0 && ackDay < resolveDay]; state != want {
			t.Errorf("state before the resolution = %q, want %q", state, want)
		}
		if _, err := st.Resolve(context.Background(), "member000001", id, "We stopped sharing it."); err != nil {
			t.Error(err)
		}
		env.SignalWorkflow(complaint.ResolvedSignal, nil)
	}, time.Duration(resolveDay)*day)
	begin := time.Now()
	env.ExecuteWorkflow(complaint.Complaint, complaint.Input{ComplaintID: id, MemberID: "member000001", AckDue: ackDue, ResolveDue: resolveDue})
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("workflow: completed=%v err=%v", env.IsWorkflowCompleted(), env.GetWorkflowError())
	}
	t.Logf("%d days skipped in %v of wall time", resolveDay, time.Since(begin))
	var res complaint.Result
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	got, err := st.Get(context.Background(), "member000001", id)
	if err != nil {
		t.Fatal(err)
	}
	return res, got, mail
}

func events(m *mailbox) []string {
	var out []string
	for _, s := range m.sent {
		if s.GetTemplate() != identityv1.MessageTemplate_MESSAGE_TEMPLATE_COMPLAINT_UPDATE || s.GetName() != "members/member000001" {
			return []string{"wrong message"}
		}
		out = append(out, s.GetRequestId()[strings.LastIndex(s.GetRequestId(), "/")+1:])
	}
	return out
}

// TestComplaintOnTimeIsNotEscalated: acknowledged on day 3 and resolved on day 20 (of 10
// and 45): no escalation; the member is told twice.
func TestComplaintOnTimeIsNotEscalated(t *testing.T) {
	res, c, mail := run(t, 3, 20)
	if res.State != "resolved" || len(res.Escalations) != 0 || len(c.GetEscalations()) != 0 {
		t.Fatalf("result %+v, escalations %v; want resolved without escalation", res, c.GetEscalations())
	}
	if got := events(mail); !slices.Equal(got, []string{"acknowledged", "resolved"}) {
		t.Fatalf("emails %v, want acknowledged then resolved", got)
	}
	if c.GetState() != fulfillmentv1.ComplaintState_COMPLAINT_STATE_RESOLVED || c.GetResolution() == "" {
		t.Fatalf("complaint %v", c)
	}
}

// TestComplaintEscalatesWhenDeadlinesPass: nobody acknowledges until day 15 (due day 10)
// and the resolution comes on day 50 (due day 45): acknowledgement overdue, resolution
// at risk (80%), resolution overdue, each recorded once, in order.
func TestComplaintEscalatesWhenDeadlinesPass(t *testing.T) {
	res, c, mail := run(t, 15, 50)
	want := []string{complaint.LevelAckOverdue, complaint.LevelResolveAtRisk, complaint.LevelResolveOverdue}
	if !slices.Equal(res.Escalations, want) || !slices.Equal(c.GetEscalations(), want) {
		t.Fatalf("escalations %v (stored %v), want %v", res.Escalations, c.GetEscalations(), want)
	}
	if got := events(mail); !slices.Equal(got, []string{"acknowledged", "resolved"}) {
		t.Fatalf("emails %v", got)
	}
}

// TestComplaintResolvedWithoutAcknowledgement: resolved on day 2 straight away: one
// email (the answer), no escalation.
func TestComplaintResolvedWithoutAcknowledgement(t *testing.T) {
	res, c, mail := run(t, 0, 2)
	if len(res.Escalations) != 0 || c.GetAcknowledgeTime() == nil {
		t.Fatalf("result %+v, complaint %v", res, c)
	}
	if got := events(mail); !slices.Equal(got, []string{"resolved"}) {
		t.Fatalf("emails %v, want only the answer", got)
	}
}
