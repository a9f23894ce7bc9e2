package request_test

import (
	"testing"
	"time"

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
