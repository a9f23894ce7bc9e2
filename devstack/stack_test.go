package devstack_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"lethe.dev/devstack"
)

// startStack runs the whole dev stack on free ports in a temporary data directory.
func startStack(t *testing.T, env map[string]string) *devstack.Stack {
	t.Helper()
	o := devstack.Options{DataDir: t.TempDir(), Env: env}
	s, err := devstack.Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return s
}

func TestDevStackServesEveryServiceAndTheTemporalUI(t *testing.T) {
	s := startStack(t, nil)
	for _, name := range []string{"identity", "preferences", "sharing", "fulfillment"} {
		conn, err := grpc.NewClient(s.Addresses[name], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		conn.Close()
		if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("%s health: %v %v", name, res, err)
		}
	}
	resp, err := http.Get("http://" + s.Addresses["gateway"] + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var health map[string]string
	json.NewDecoder(resp.Body).Decode(&health)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(health) != 4 {
		t.Fatalf("gateway /healthz: %d %v", resp.StatusCode, health)
	}
	resp, err = http.Get(s.UIURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(strings.ToLower(string(body)), "<html") {
		t.Fatalf("Temporal UI: %d %.100q", resp.StatusCode, body)
	}
	if eps := s.Endpoints(); len(eps) < 7 {
		t.Fatalf("endpoints = %v", eps)
	}
}
