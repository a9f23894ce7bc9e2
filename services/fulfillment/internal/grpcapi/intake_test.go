package grpcapi

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"google.golang.org/grpc/codes"

	"lethe.dev/platform/errs"
	"lethe.dev/platform/grpcserver"
)

// A start that failed for reasons a retry can fix reaches the caller as UNAVAILABLE
// (503 through the gateway) with a reason, never as INTERNAL; Lethe's own errors pass.
func TestFailedStartsAreUnavailable(t *testing.T) {
	for name, err := range map[string]error{
		"temporal deadline":    serviceerror.NewDeadlineExceeded("context deadline exceeded"),
		"temporal unavailable": serviceerror.NewUnavailable("connection refused"),
		"temporal busy":        &serviceerror.ResourceExhausted{Message: "namespace rps limit"},
		"caller's deadline":    context.DeadlineExceeded,
		"database":             errors.New("conn closed"),
	} {
		st := grpcserver.Status(startFailed(err))
		if st.Code() != codes.Unavailable || grpcserver.ReasonOf(st.Err()) != "WORKFLOW_START_FAILED" {
			t.Errorf("%s: got %s %q, want UNAVAILABLE WORKFLOW_START_FAILED", name, st.Code(), grpcserver.ReasonOf(st.Err()))
		}
		if st.Message() != "the request was recorded but its workflow could not be started yet; retry with the same request_id" {
			t.Errorf("%s: the cause reached the caller: %q", name, st.Message())
		}
	}
	own := errs.New(errs.FailedPrecondition, "REQUEST_IN_PROGRESS", "another request of this kind is running for the member")
	if got := grpcserver.Status(startFailed(own)); got.Code() != codes.FailedPrecondition {
		t.Errorf("a Lethe error became %s", got.Code())
	}
}

// No more than StartConcurrency starts run at once; the rest wait for a slot under
// their own deadline and give up with it.
func TestStartsWaitForASlot(t *testing.T) {
	s := &Server{StartConcurrency: 3}
	var running, peak atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.start(context.Background(), func(context.Context) error {
				n := running.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				<-release
				running.Add(-1)
				return nil
			})
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for running.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	// Every slot is taken: a start waits half its caller's deadline, then gives up
	// without running while the caller still listens, answered UNAVAILABLE.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	ran := false
	began := time.Now()
	err := s.start(ctx, func(context.Context) error { ran = true; return nil })
	if !errors.Is(err, errStartsBusy) || ran || ctx.Err() != nil {
		t.Fatalf("a start with every slot taken: err %v after %s, ran %v, caller's context %v", err, time.Since(began), ran, ctx.Err())
	}
	if st := grpcserver.Status(startFailed(err)); st.Code() != codes.Unavailable {
		t.Fatalf("a start that found no slot answered %s, want UNAVAILABLE", st.Code())
	}
	close(release)
	wg.Wait()
	if p := peak.Load(); p != 3 {
		t.Fatalf("%d starts ran at once, want 3", p)
	}
}
