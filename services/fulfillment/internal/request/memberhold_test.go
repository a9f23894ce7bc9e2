package request_test

import (
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"lethe.dev/services/fulfillment/internal/request"
)

// TestMemberLegalHold: an erasure whose member's data is on legal hold waits on hold —
// nothing is erased — until the hold expires (10 days skipped), or until an operator
// releases it (signalled on day 2).
func TestMemberLegalHold(t *testing.T) {
	for _, tc := range []struct {
		name      string
		releaseAt time.Duration // 0: the hold runs to its expiry
		wantAfter time.Duration
	}{
		{"expiry releases", 0, 10 * 24 * time.Hour},
		{"operator releases", 2 * 24 * time.Hour, 2 * 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, r := env(t, nil, true)
			start := e.Now()
			r.holdUntil = start.Add(10 * 24 * time.Hour)
			if tc.releaseAt > 0 {
				e.RegisterDelayedCallback(func() {
					r.mu.Lock()
					r.holdUntil = time.Time{}
					r.mu.Unlock()
					e.SignalWorkflow(request.MemberHoldSignal, nil)
				}, tc.releaseAt)
			}
			in := input(request.KindErasure, true)
			in.CoolingOff = 0
			in.DueTime = start.Add(30 * 24 * time.Hour)
			e.ExecuteWorkflow(request.PrivacyRequest, in)
			if res := result(t, e); res.State != "completed" {
				t.Fatalf("state %s", res.State)
			}
			if !r.has("member-held") || !r.has("state:on_hold") || r.index("state:on_hold") > r.index("erase:preferences") {
				t.Fatalf("the erasure did not wait on hold first: %v", r.calls)
			}
			if got := r.at["erase:preferences"].Sub(start); got < tc.wantAfter || got > tc.wantAfter+time.Hour {
				t.Fatalf("erased %v after filing, want just after %v", got, tc.wantAfter)
			}
		})
	}
}

// TestMemberLegalHoldPausesAnErasureUnderWay: a hold set while the erasure is in its
// erasing steps stops it at the next step that deletes (the service refuses with
// LEGAL_HOLD, here sharing or a processor's onward erasure): nothing more is erased
// until the operator releases the hold on day 3; then the erasure resumes and completes.
func TestMemberLegalHoldPausesAnErasureUnderWay(t *testing.T) {
	held := temporal.NewNonRetryableApplicationError("the member's data is on legal hold", request.ErrMemberHeld, nil)
	for _, step := range []string{"erase:sharing", "onward:partners/proc"} {
		t.Run(step, func(t *testing.T) {
			e, r := env(t, []request.Recipient{{Partner: "partners/proc"}}, true)
			start := e.Now()
			// The hold is set while the erasure runs: the first deleting step after it refuses.
			hold := func() error {
				r.mu.Lock()
				defer r.mu.Unlock()
				if r.holdUntil.IsZero() && !r.released {
					r.holdUntil = e.Now().Add(10 * 24 * time.Hour)
				}
				if e.Now().Before(r.holdUntil) {
					return held
				}
				return nil
			}
			if step == "erase:sharing" {
				r.erase = func(in request.EraseInput) (request.ServiceErasure, error) {
					if in.Service == "sharing" {
						return request.ServiceErasure{}, hold()
					}
					return request.ServiceErasure{}, nil
				}
			} else {
				r.onward = hold
			}
			e.RegisterDelayedCallback(func() {
				r.mu.Lock()
				r.holdUntil, r.released = time.Time{}, true
				r.mu.Unlock()
				e.SignalWorkflow(request.MemberHoldSignal, nil)
			}, 3*24*time.Hour)
			in := input(request.KindErasure, true)
			in.CoolingOff = 0
			in.DueTime = start.Add(30 * 24 * time.Hour)
			e.ExecuteWorkflow(request.PrivacyRequest, in)
			if res := result(t, e); res.State != "completed" {
				t.Fatalf("state %s", res.State)
			}
			if !r.has("member-held") || !r.has("state:on_hold") {
				t.Fatalf("the erasure did not go on hold: %v", r.calls)
			}
			for _, later := range []string{"erase:identity", "receipt", "QueueConfirmation"} {
				if got := r.at[later].Sub(start); got < 3*24*time.Hour {
					t.Fatalf("%s ran %v after filing, while the member's data was on hold (released on day 3): %v", later, got, r.calls)
				}
			}
			if r.index("state:on_hold") > r.index("erase:identity") {
				t.Fatalf("identity erased before the erasure went on hold: %v", r.calls)
			}
		})
	}
}
