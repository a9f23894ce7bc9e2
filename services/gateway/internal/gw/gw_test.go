package gw

import (
	"context"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	identityv1 "lethe.dev/gen/lethe/identity/v1"
)

func TestClientIPTrustsOnlyConfiguredProxies(t *testing.T) {
	proxies, err := ParseProxies("10.0.0.0/8, 192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ remote, xff, want string }{
		{"198.51.100.9:1234", "203.0.113.5", "198.51.100.9"},               // untrusted peer: header ignored
		{"10.1.2.3:1234", "203.0.113.5", "203.0.113.5"},                    // trusted proxy
		{"10.1.2.3:1234", "6.6.6.6, 203.0.113.5, 10.9.9.9", "203.0.113.5"}, // rightmost untrusted hop
		{"192.0.2.1:1234", "", "192.0.2.1"},                                // no header
		{"10.1.2.3:1234", "garbage", "10.1.2.3"},                           // unparsable hop
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := proxies.ClientIP(r); got != c.want {
			t.Errorf("%s via %q: got %s, want %s", c.remote, c.xff, got, c.want)
		}
	}
	if _, err := ParseProxies("not-an-ip"); err == nil {
		t.Fatal("a bad proxy entry was accepted")
	}
}

// slowIdentity answers GetJwks only when its context ends.
type slowIdentity struct {
	identityv1.IdentityServiceClient
	calls atomic.Int32
}

func (s *slowIdentity) GetJwks(ctx context.Context, _ *identityv1.GetJwksRequest, _ ...grpc.CallOption) (*identityv1.Jwks, error) {
	s.calls.Add(1)
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestJWKSFetchHasItsOwnDeadlineAndHoldsNoLock(t *testing.T) {
	id := &slowIdentity{}
	v := &Verifier{Identity: id, RefetchEvery: time.Hour, FetchTimeout: 200 * time.Millisecond}
	// A caller without any deadline is not stuck behind a hung identity.
	start := time.Now()
	if _, err := v.Verify(context.Background(), "a.b.c"); err == nil {
		t.Fatal("verified without keys")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Verify waited %v on a hung JWKS fetch", d)
	}
	// A caller that gives up does not cancel the fetch for others, and the lock is free
	// while a fetch runs: a second caller with a short deadline returns on time.
	v2 := &Verifier{Identity: id, RefetchEvery: time.Hour, FetchTimeout: 2 * time.Second}
	go v2.Verify(context.Background(), "a.b.c")
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	v2.Verify(ctx, "a.b.c")
	if d := time.Since(start); d > time.Second {
		t.Fatalf("a second caller waited %v for the lock", d)
	}
	if n := id.calls.Load(); n != 2 {
		t.Fatalf("%d JWKS fetches, want one per verifier", n)
	}
}
