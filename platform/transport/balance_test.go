package transport_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	identityv1 "lethe.dev/gen/lethe/identity/v1"
	"lethe.dev/platform/grpcserver"
	"lethe.dev/platform/transport"
)

type counting struct {
	identityv1.UnimplementedIdentityServiceServer
	n *atomic.Int64
}

func (c counting) GetJwks(context.Context, *identityv1.GetJwksRequest) (*identityv1.Jwks, error) {
	c.n.Add(1)
	return &identityv1.Jwks{}, nil
}

// replica serves a counting backend and returns its address and a function that kills
// it (listener and connections closed at once, as a crashed process would).
func replica(t *testing.T, n *atomic.Int64) (string, func()) {
	t.Helper()
	srv := grpcserver.New(grpcserver.Options{})
	identityv1.RegisterIdentityServiceServer(srv, counting{n: n})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx, lis); close(done) }()
	kill := func() { srv.Server.Stop(); cancel(); <-done }
	t.Cleanup(func() { cancel(); <-done })
	return lis.Addr().String(), kill
}

// TestDialBalancesOverReplicasAndSurvivesOneDying dials a comma list of two replicas:
// calls spread over both, and when one dies every later call still succeeds on the other.
func TestDialBalancesOverReplicasAndSurvivesOneDying(t *testing.T) {
	var a, b atomic.Int64
	addrA, killA := replica(t, &a)
	addrB, _ := replica(t, &b)
	conn, err := transport.Security{}.Dial(addrA + "," + addrB)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := identityv1.NewIdentityServiceClient(conn)
	callN := func(n int) {
		t.Helper()
		for range n {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := c.GetJwks(ctx, &identityv1.GetJwksRequest{}, grpc.WaitForReady(false))
			cancel()
			if err != nil {
				t.Fatalf("call failed: %v", err)
			}
		}
	}
	// Round robin sends only to connected replicas: warm up until both have answered
	// (a replica may take a moment longer to connect), then count.
	for deadline := time.Now().Add(5 * time.Second); a.Load() == 0 || b.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("both replicas never answered: %d on A, %d on B", a.Load(), b.Load())
		}
		callN(1)
		time.Sleep(time.Millisecond)
	}
	a.Store(0)
	b.Store(0)
	callN(40)
	if a.Load() < 10 || b.Load() < 10 {
		t.Fatalf("calls were not balanced: %d on A, %d on B", a.Load(), b.Load())
	}
	killA()
	before := b.Load()
	callN(40)
	if b.Load()-before != 40 {
		t.Fatalf("after A died, B served %d of 40 calls", b.Load()-before)
	}
}
