package request_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"

	"lethe.dev/services/fulfillment/internal/request"
)

// kindsEnv is env plus the activities of the request kinds beyond access and erasure.
func kindsEnv(t *testing.T) (*testsuite.TestWorkflowEnvironment, *rec) {
	t.Helper()
	e, r := env(t, nil, true)
	for _, name := range []string{"NotifyDenied", "NotifyCompleted", "Acknowledge"} {
		n := name
		e.OnActivity(n, mock.Anything, mock.Anything).Return(func(context.Context, request.RequestRef) error { r.add(n); return nil })
	}
	for _, name := range []string{"ApplyRectification", "ApplyRestriction", "ApplyObjection", "ApplySaleOptOut"} {
		n := name
		e.OnActivity(n, mock.Anything, mock.Anything).Return(func(context.Context, request.RequestRef) (int64, error) { r.add(n); return 1, nil })
	}
	return e, r
}

// update sends an update and records whether the workflow accepted it.
func update(e *testsuite.TestWorkflowEnvironment, r *rec, name string) {
	e.UpdateWorkflow(name, name+"-1", &testsuite.TestUpdateCallback{
		OnAccept:   func() { r.add(name + ":accepted") },
		OnReject:   func(error) { r.add(name + ":rejected") },
		OnComplete: func(any, error) {},
	})
}

// work is the activity that does each kind's work.
var work = map[string]string{
	request.KindRestriction:   "ApplyRestriction",
	request.KindObjection:     "ApplyObjection",
	request.KindSaleOptOut:    "ApplySaleOptOut",
	request.KindPortability:   "archive",
	request.KindRectification: "ApplyRectification",
}

// TestEachKindKeepsItsDeadlineAndCanBeDenied: every new kind runs like access and
// erasure — a legal hold from day 1 to day 25 of 30 lets the 50% and 80% escalations be
// recorded, then the work is done and the member told; a denial during the hold instead
// tells the member why, ends the request denied and does none of the work.
func TestEachKindKeepsItsDeadlineAndCanBeDenied(t *testing.T) {
	for kind, act := range work {
		t.Run(kind+"/fulfilled", func(t *testing.T) {
			e, r := kindsEnv(t)
			start := e.Now()
			e.RegisterDelayedCallback(func() { e.SignalWorkflow(request.HoldSignal, nil) }, 10*time.Minute)
			e.RegisterDelayedCallback(func() { e.SignalWorkflow(request.ReleaseSignal, nil) }, 25*24*time.Hour)
			if kind == request.KindRectification {
				e.RegisterDelayedCallback(func() { update(e, r, request.ApproveUpdate) }, 26*24*time.Hour)
			}
			in := input(kind, false)
			in.DueTime = start.Add(30 * 24 * time.Hour)
			e.RegisterDelayedCallback(func() { e.SignalWorkflow(request.VerifySignal, nil) }, 30*time.Minute)
			e.ExecuteWorkflow(request.PrivacyRequest, in)
			if res := result(t, e); res.State != "completed" {
				t.Fatalf("state %q, calls %v", res.State, r.calls)
			}
			for _, want := range []string{"send-code", "state:on_hold", "escalation:50%", "escalation:80%", act} {
				if !r.has(want) {
					t.Fatalf("no %s in %v", want, r.calls)
				}
			}
			if r.index("escalation:80%") > r.index(act) || r.at[act].Sub(start) < 25*24*time.Hour {
				t.Fatalf("the work ran during the hold: %v", r.calls)
			}
			if r.has("NotifyDenied") || r.has("escalation:breach") {
				t.Fatalf("calls %v", r.calls)
			}
			if kind == request.KindPortability {
				if !r.has("NotifyExportReady") {
					t.Fatalf("portability: member not told: %v", r.calls)
				}
			} else if !r.has("NotifyCompleted") {
				t.Fatalf("member not told: %v", r.calls)
			}
		})
		t.Run(kind+"/denied", func(t *testing.T) {
			e, r := kindsEnv(t)
			e.RegisterDelayedCallback(func() { e.SignalWorkflow(request.HoldSignal, nil) }, 10*time.Minute)
			e.RegisterDelayedCallback(func() { e.SignalWorkflow(request.VerifySignal, nil) }, 30*time.Minute)
			e.RegisterDelayedCallback(func() { update(e, r, request.DenyUpdate) }, 20*24*time.Hour)
			e.ExecuteWorkflow(request.PrivacyRequest, input(kind, false))
			if res := result(t, e); res.State != "denied" {
				t.Fatalf("state %q, calls %v", res.State, r.calls)
			}
			for _, want := range []string{"deny:accepted", "NotifyDenied", "state:denied", "escalation:50%"} {
				if !r.has(want) {
					t.Fatalf("no %s in %v", want, r.calls)
				}
			}
			if r.has(act) || r.has("NotifyCompleted") || r.index("NotifyDenied") > r.index("state:denied") {
				t.Fatalf("denied request did work or ended before the member was told: %v", r.calls)
			}
		})
	}
}

// TestDenialDuringVerification: a request still waiting for its code can be denied
// (e.g. unverifiable); the verification window does not have to run out first.
func TestDenialDuringVerification(t *testing.T) {
	e, r := kindsEnv(t)
	e.RegisterDelayedCallback(func() { update(e, r, request.DenyUpdate) }, 2*time.Hour)
	e.ExecuteWorkflow(request.PrivacyRequest, input(request.KindAccess, false))
	if res := result(t, e); res.State != "denied" {
		t.Fatalf("state %q, calls %v", res.State, r.calls)
	}
	if !r.has("send-code") || !r.has("NotifyDenied") || r.has("export:identity") || r.at["state:denied"].Sub(r.at["send-code"]) > 3*time.Hour {
		t.Fatalf("calls %v", r.calls)
	}
}

// TestNoDenialOnceTheWorkBegan: an erasure whose work has begun (identity down, the
// round resumes an hour later) refuses a denial — half an erasure is never "denied" —
// and finishes.
func TestNoDenialOnceTheWorkBegan(t *testing.T) {
	e, r := kindsEnv(t)
	start := e.Now()
	r.erase = func(in request.EraseInput) (request.ServiceErasure, error) {
		if in.Service == "identity" && e.Now().Sub(start) < 3*24*time.Hour {
			return request.ServiceErasure{}, errors.New("identity unavailable")
		}
		return request.ServiceErasure{}, nil
	}
	in := input(request.KindErasure, true)
	in.CoolingOff = 0
	e.RegisterDelayedCallback(func() { update(e, r, request.DenyUpdate) }, 36*time.Hour)
	e.ExecuteWorkflow(request.PrivacyRequest, in)
	if res := result(t, e); res.State != "completed" {
		t.Fatalf("state %q, calls %v", res.State, r.calls)
	}
	if !r.has("deny:rejected") || r.has("NotifyDenied") || !r.has("receipt") {
		t.Fatalf("calls %v", r.calls)
	}
}

// TestUnreviewedRectificationBreachesThenIsRejected: an operator who never reviews
// lets the escalations and the breach be recorded at 50%, 80% and 100% of the time; a
// late rejection still tells the member and nothing is corrected. Approving anything
// but a waiting rectification is refused.
func TestUnreviewedRectificationBreachesThenIsRejected(t *testing.T) {
	e, r := kindsEnv(t)
	start := e.Now()
	in := input(request.KindRectification, true)
	in.DueTime = start.Add(30 * 24 * time.Hour)
	e.RegisterDelayedCallback(func() { update(e, r, request.DenyUpdate) }, 31*24*time.Hour)
	e.ExecuteWorkflow(request.PrivacyRequest, in)
	if res := result(t, e); res.State != "denied" {
		t.Fatalf("state %q, calls %v", res.State, r.calls)
	}
	for _, lv := range []string{"50%", "80%", "breach"} {
		if !r.has("escalation:" + lv) {
			t.Fatalf("no %s escalation: %v", lv, r.calls)
		}
	}
	if d := r.at["escalation:breach"].Sub(start); d < 30*24*time.Hour || d > 30*24*time.Hour+time.Minute {
		t.Fatalf("breach after %v", d)
	}
	if r.has("ApplyRectification") || !r.has("NotifyDenied") {
		t.Fatalf("calls %v", r.calls)
	}

	e2, r2 := kindsEnv(t)
	e2.RegisterDelayedCallback(func() { update(e2, r2, request.ApproveUpdate) }, time.Hour)
	e2.ExecuteWorkflow(request.PrivacyRequest, input(request.KindRestriction, false))
	if !r2.has("approve:rejected") || r2.has("approve:accepted") {
		t.Fatalf("approving a restriction: %v", r2.calls)
	}
}

// TestCCPAReceiptIsConfirmed: a CCPA request's receipt is confirmed to the member at
// once, before verification; when identity cannot take the message until the 10
// business days have passed, the breach is recorded, and the request goes on.
func TestCCPAReceiptIsConfirmed(t *testing.T) {
	e, r := kindsEnv(t)
	in := input(request.KindAccess, false)
	in.AcknowledgeBy = e.Now().Add(14 * 24 * time.Hour)
	e.RegisterDelayedCallback(func() { e.SignalWorkflow(request.VerifySignal, nil) }, time.Hour)
	e.ExecuteWorkflow(request.PrivacyRequest, in)
	if res := result(t, e); res.State != "completed" {
		t.Fatalf("state %q, calls %v", res.State, r.calls)
	}
	if !r.has("Acknowledge") || r.index("Acknowledge") > r.index("send-code") && r.at["Acknowledge"].After(r.at["send-code"]) {
		t.Fatalf("receipt not confirmed at once: %v", r.calls)
	}

	e2, r2 := env(t, nil, true)
	start := e2.Now()
	e2.OnActivity("Acknowledge", mock.Anything, mock.Anything).Return(errors.New("identity unavailable"))
	in2 := input(request.KindSaleOptOut, false)
	in2.AcknowledgeBy = e2.Now().Add(14 * 24 * time.Hour)
	in2.DueTime = e2.Now().Add(45 * 24 * time.Hour)
	e2.OnActivity("ApplySaleOptOut", mock.Anything, mock.Anything).Return(func(context.Context, request.RequestRef) (int64, error) {
		r2.add("ApplySaleOptOut")
		return 1, nil
	})
	e2.OnActivity("NotifyCompleted", mock.Anything, mock.Anything).Return(nil)
	// Keep the run open past the acknowledgement deadline with a hold.
	e2.RegisterDelayedCallback(func() { e2.SignalWorkflow(request.HoldSignal, nil) }, time.Minute)
	e2.RegisterDelayedCallback(func() { e2.SignalWorkflow(request.VerifySignal, nil) }, 2*time.Minute)
	e2.RegisterDelayedCallback(func() { e2.SignalWorkflow(request.ReleaseSignal, nil) }, 20*24*time.Hour)
	e2.ExecuteWorkflow(request.PrivacyRequest, in2)
	if res := result(t, e2); res.State != "completed" {
		t.Fatalf("state %q, calls %v", res.State, r2.calls)
	}
	if !r2.has("escalation:acknowledge-breach") || !r2.has("ApplySaleOptOut") {
		t.Fatalf("calls %v", r2.calls)
	}
	if d := r2.at["escalation:acknowledge-breach"].Sub(start); d < 14*24*time.Hour || d > 14*24*time.Hour+15*time.Minute {
		t.Fatalf("acknowledgement breach recorded after %v", d)
	}
}
