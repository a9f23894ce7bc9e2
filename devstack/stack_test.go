package devstack_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"lethe.dev/devstack"
	"lethe.dev/devstack/temporaldev/temporaldevtest"
	"lethe.dev/platform/storage/storagetest"
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

// TestDevStackOnPostgres runs the dev stack as `lethe-dev -temporal-postgres URL` does
// with every *_DATABASE_URL set: each service's tables are created in its PostgreSQL
// schema (none in SQLite under the data directory) and Temporal runs on PostgreSQL.
func TestDevStackOnPostgres(t *testing.T) {
	base := os.Getenv(storagetest.PostgresURLEnv)
	if base == "" {
		t.Skipf("PostgreSQL test skipped: set %s", storagetest.PostgresURLEnv)
	}
	schemas := map[string]string{}
	for _, svc := range []string{"IDENTITY", "PREFERENCES", "SHARING", "FULFILLMENT"} {
		u := storagetest.PostgresSchemaURL(t, base)
		t.Setenv(svc+"_DATABASE_URL", u)
		pu, _ := url.Parse(u)
		schemas[svc] = pu.Query().Get("search_path")
	}
	dir := t.TempDir()
	o := devstack.Options{DataDir: dir, UIPort: -1, TemporalPostgres: temporaldevtest.DatabaseURL(t, base), Env: devstack.DatabaseURLsFromEnv()}
	s, err := devstack.Start(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for svc, schema := range schemas {
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = $1`, schema).Scan(&n); err != nil || n < 2 {
			t.Errorf("%s: %d tables in its PostgreSQL schema (%v)", svc, n, err)
		}
	}
	if dbs, _ := filepath.Glob(filepath.Join(dir, "*.db")); len(dbs) > 0 {
		t.Errorf("SQLite files were created although every service has a PostgreSQL URL: %v", dbs)
	}
	// The stack works end to end: a member signs up through the gateway.
	c := client{t, "http://" + s.Addresses["gateway"]}
	c.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": "Pat Postgres", "email": "pat@example.com", "birthDate": "1990-01-01"}, "password": "a long enough password"})
}
