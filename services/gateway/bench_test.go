package gateway_test

import (
	"context"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	identityv1 "lethe.dev/gen/lethe/identity/v1"
	"lethe.dev/platform/grpcserver/grpctest"
)

// latencies collects per-call durations across goroutines and reports p50/p99.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) { l.mu.Lock(); l.d = append(l.d, d); l.mu.Unlock() }

func (l *latencies) report(b *testing.B) {
	slices.Sort(l.d)
	if len(l.d) == 0 {
		return
	}
	b.ReportMetric(float64(l.d[len(l.d)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(l.d[len(l.d)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkGetMember compares the same call, GetMember against the real identity service
// (SQLite), through the gateway as JSON over HTTP and directly over gRPC, under
// concurrent load (b.RunParallel, 8 goroutines per core) on loopback.
func BenchmarkGetMember(b *testing.B) {
	s := start(b, 1_000_000)
	a, tok := s.signUp(b, "bench@example.com")
	b.Run("gateway-json", func(b *testing.B) {
		var l latencies
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest("GET", s.url+"/v1/members/"+a, nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				l.add(time.Since(t0))
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
		l.report(b)
	})
	b.Run("grpc-direct", func(b *testing.B) {
		addr := grpctest.Serve(b, s.identity.Register)
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		c := identityv1.NewIdentityServiceClient(conn)
		var l latencies
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				t0 := time.Now()
				if _, err := c.GetMember(context.Background(), &identityv1.GetMemberRequest{Name: "members/" + a}); err != nil {
					b.Fatal(err)
				}
				l.add(time.Since(t0))
			}
		})
		l.report(b)
	})
}
