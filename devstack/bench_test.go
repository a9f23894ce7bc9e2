package devstack_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lethe.dev/devstack"
	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
)

func benchStack(b *testing.B) *devstack.Stack {
	b.Helper()
	s, err := devstack.Start(context.Background(), devstack.Options{DataDir: b.TempDir(), UIPort: -1, Env: map[string]string{"FULFILLMENT_COOLING_OFF": "0s"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Stop() })
	return s
}

func file(b *testing.B, s *devstack.Stack, member string, kind fulfillmentv1.RequestKind) string {
	b.Helper()
	r, err := s.Fulfillment.API.CreatePrivacyRequest(fresh(), &fulfillmentv1.CreatePrivacyRequestRequest{Parent: "members/" + member, RequestId: "bench-" + member,
		PrivacyRequest: &fulfillmentv1.PrivacyRequest{Kind: kind}})
	if err != nil {
		b.Fatal(err)
	}
	return r.GetName()
}

func await(b *testing.B, s *devstack.Stack, name string, limit time.Duration) {
	b.Helper()
	deadline := time.Now().Add(limit)
	for {
		r, err := s.Fulfillment.API.GetPrivacyRequest(context.Background(), &fulfillmentv1.GetPrivacyRequestRequest{Name: name})
		if err == nil && r.GetState() == fulfillmentv1.RequestState_REQUEST_STATE_COMPLETED {
			return
		}
		if err == nil && r.GetState() == fulfillmentv1.RequestState_REQUEST_STATE_FAILED || time.Now().After(deadline) {
			b.Fatalf("%s: %v %v", name, r.GetState(), err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkErasureEndToEnd is one erasure on the dev stack (embedded Temporal, SQLite,
// no cooling-off, no processors): filed, erased in every service, verified, receipt
// signed. Member creation is outside the timer.
func BenchmarkErasureEndToEnd(b *testing.B) {
	s := benchStack(b)
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		m := newMember(b, s, fmt.Sprintf("erase%d@example.com", i))
		b.StartTimer()
		await(b, s, file(b, s, m, fulfillmentv1.RequestKind_REQUEST_KIND_ERASURE), time.Minute)
	}
}

// BenchmarkExport100k exports a member with 100,000 viewing-history items end to end
// (three services in parallel, archive built) and reports the process's peak heap.
func BenchmarkExport100k(b *testing.B) {
	s := benchStack(b)
	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	defer close(stop)
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		m := newMember(b, s, fmt.Sprintf("export%d@example.com", i))
		seedHistory(b, s, m, 100_000)
		runtime.GC()
		peak.Store(0)
		b.StartTimer()
		await(b, s, file(b, s, m, fulfillmentv1.RequestKind_REQUEST_KIND_ACCESS), 5*time.Minute)
	}
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
}

// BenchmarkConcurrentErasures files 500 erasures at once and waits until every one has
// completed (run with -benchtime=1x).
func BenchmarkConcurrentErasures(b *testing.B) {
	const n = 500
	s := benchStack(b)
	for b.Loop() {
		b.StopTimer()
		members := make([]string, n)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 4)
		for i := range members {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				members[i] = newMember(b, s, fmt.Sprintf("c%d-%d@example.com", time.Now().UnixNano(), i))
				<-sem
			}()
		}
		wg.Wait()
		b.StartTimer()
		start := time.Now()
		names := make([]string, n)
		for i, m := range members {
			wg.Add(1)
			go func() { defer wg.Done(); names[i] = file(b, s, m, fulfillmentv1.RequestKind_REQUEST_KIND_ERASURE) }()
		}
		wg.Wait()
		for _, name := range names {
			await(b, s, name, 20*time.Minute)
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "erasures/s")
	}
}
