package drp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"
	"google.golang.org/protobuf/types/known/timestamppb"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	"lethe.dev/platform/storage/storagetest"
	"lethe.dev/services/fulfillment/internal/drp"
	"lethe.dev/services/fulfillment/internal/store"
)

// agentServer records the statuses posted to it; it fails the first failures posts.
type agentServer struct {
	mu       sync.Mutex
	got      []string
	attempts int
	failures int
}

func (a *agentServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.attempts++
	if a.failures > 0 {
		a.failures--
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var st map[string]any
	_ = json.NewDecoder(r.Body).Decode(&st)
	s, _ := st["status"].(string)
	if reason, _ := st["reason"].(string); reason != "" {
		s += "/" + reason
	}
	a.got = append(a.got, s)
}

func setup(t *testing.T, failures int) (*testsuite.TestWorkflowEnvironment, *drp.Store, *agentServer) {
	t.Helper()
	db := storagetest.MustOpenSQLite(t, store.Migrations)
	st := &drp.Store{DB: db}
	srv := &agentServer{failures: failures}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	if err := st.CreateRecord(t.Context(), &drp.Record{ID: "r1", AgentID: "AA", Exercise: "deletion", Callback: hs.URL, Status: "open", Received: time.Now()}); err != nil {
		t.Fatal(err)
	}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(&drp.CallbackActivities{Store: st, Status: func(ctx context.Context, id string) (*fulfillmentv1.DataRightsStatus, error) {
		e, err := st.Entries(ctx, id, 0)
		if err != nil || len(e) == 0 {
			return nil, err
		}
		last := e[len(e)-1]
		return &fulfillmentv1.DataRightsStatus{RequestId: id, Status: last.Status, Reason: last.Reason, ReceivedAt: timestamppb.Now()}, nil
	}})
	return env, st, srv
}

// TestCallbacksDeliverEveryStatusInOrder: statuses logged before the start and ones
// signalled later all reach the agent, in order, and the workflow ends at the final one.
func TestCallbacksDeliverEveryStatusInOrder(t *testing.T) {
	env, st, srv := setup(t, 0)
	ctx := context.Background()
	now := time.Now()
	_, _ = st.Log(ctx, "r1", "in_progress", "need_user_verification", now)
	_, _ = st.Log(ctx, "r1", "in_progress", "", now)
	env.RegisterDelayedCallback(func() {
		_, _ = st.Log(ctx, "r1", "fulfilled", "", now)
		env.SignalWorkflow(drp.LoggedSignal, nil)
	}, 10*time.Second)
	env.ExecuteWorkflow(drp.StatusCallbacks, drp.CallbacksInput{RequestID: "r1", PollInterval: time.Hour})
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("completed %v, error %v", env.IsWorkflowCompleted(), env.GetWorkflowError())
	}
	want := []string{"in_progress/need_user_verification", "in_progress", "fulfilled"}
	if len(srv.got) != len(want) || srv.got[0] != want[0] || srv.got[1] != want[1] || srv.got[2] != want[2] {
		t.Fatalf("posted %v, want %v", srv.got, want)
	}
}

// TestCallbacksPollWithoutSignal: a lost signal only delays delivery until the next poll.
func TestCallbacksPollWithoutSignal(t *testing.T) {
	env, st, srv := setup(t, 0)
	ctx := context.Background()
	_, _ = st.Log(ctx, "r1", "in_progress", "", time.Now())
	env.RegisterDelayedCallback(func() { _, _ = st.Log(ctx, "r1", "revoked", "", time.Now()) }, 90*time.Second)
	env.ExecuteWorkflow(drp.StatusCallbacks, drp.CallbacksInput{RequestID: "r1", PollInterval: time.Minute})
	if env.GetWorkflowError() != nil || len(srv.got) != 2 || srv.got[1] != "revoked" {
		t.Fatalf("error %v, posted %v", env.GetWorkflowError(), srv.got)
	}
}

// TestCallbacksRetriesAreBounded: an agent that keeps failing gets a bounded number of
// attempts per status, then the next status is tried; the workflow still ends.
func TestCallbacksRetriesAreBounded(t *testing.T) {
	env, st, srv := setup(t, 1000)
	ctx := context.Background()
	_, _ = st.Log(ctx, "r1", "in_progress", "", time.Now())
	_, _ = st.Log(ctx, "r1", "denied", "no_match", time.Now())
	env.ExecuteWorkflow(drp.StatusCallbacks, drp.CallbacksInput{RequestID: "r1", PollInterval: time.Hour})
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("completed %v, error %v", env.IsWorkflowCompleted(), env.GetWorkflowError())
	}
	if srv.attempts != 12 || len(srv.got) != 0 {
		t.Fatalf("attempts = %d (want 6 per status), delivered %v", srv.attempts, srv.got)
	}
}
