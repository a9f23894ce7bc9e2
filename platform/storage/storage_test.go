package storage_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"lethe.dev/platform/storage"
	"lethe.dev/platform/storage/storagetest"
)

var migrations = os.DirFS("testdata/migrations")

func TestMigrationsAndQueriesOnEveryEngine(t *testing.T) {
	storagetest.Engines(t, migrations, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		v, err := db.Version(ctx, migrations)
		if err != nil || v != 2 {
			t.Fatalf("version = %d, %v; want 2", v, err)
		}
		// Migrating again is a no-op, not an error.
		if err := db.Migrate(ctx, migrations); err != nil {
			t.Fatalf("second migrate: %v", err)
		}
		err = db.InTx(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO widgets (id, owner, payload, created_at) VALUES ($1, $2, $3, $4)`, "w1", "o1", []byte{0, 1, 2}, 42)
			return err
		})
		if err != nil {
			t.Fatalf("insert: %v", err)
		}
		_, err = db.ExecContext(ctx, `INSERT INTO widgets (id, owner, created_at) VALUES ($1, $2, $3)`, "w2", "o1", 1)
		if !storage.IsUniqueViolation(err) {
			t.Fatalf("duplicate owner: err = %v, want a unique violation", err)
		}
		var payload []byte
		var archived bool
		if err := db.QueryRowContext(ctx, `SELECT payload, archived FROM widgets WHERE id = $1`, "w1").Scan(&payload, &archived); err != nil {
			t.Fatalf("select: %v", err)
		}
		if string(payload) != "\x00\x01\x02" || archived {
			t.Fatalf("got payload %x archived %v", payload, archived)
		}
		// A failing transaction leaves nothing behind.
		boom := errors.New("boom")
		err = db.InTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO widgets (id, owner, created_at) VALUES ($1, $2, $3)`, "w3", "o3", 1); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("InTx err = %v", err)
		}
		var n int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM widgets`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("count = %d, %v; want 1 after rollback", n, err)
		}
		// Several counts in one statement, sharing their arguments.
		got, err := db.Counts(ctx, []string{`SELECT COUNT(*) FROM widgets WHERE owner = $1`, `SELECT COUNT(*) FROM widgets WHERE owner <> $1`, `SELECT COUNT(*) FROM widgets WHERE id = $2`}, "o1", "nope")
		if err != nil || len(got) != 3 || got[0] != 1 || got[1] != 0 || got[2] != 0 {
			t.Fatalf("Counts = %v, %v; want [1 0 0]", got, err)
		}
	})
}

func TestOpenRejectsUnknownURL(t *testing.T) {
	if _, err := storage.Open(context.Background(), "mysql://x", nil); err == nil {
		t.Fatal("want an error for an unsupported URL")
	}
}

// TestConcurrentOpensMigrateOnce starts several replicas on one fresh PostgreSQL schema at
// once, as a rolling deployment does: each must come up on the migrated schema, none may
// fail on a half-created table.
func TestConcurrentOpensMigrateOnce(t *testing.T) {
	base := os.Getenv(storagetest.PostgresURLEnv)
	if base == "" {
		t.Skipf("PostgreSQL tests skipped: set %s", storagetest.PostgresURLEnv)
	}
	for round := 0; round < 3; round++ {
		url := storagetest.PostgresSchemaURL(t, base)
		const replicas = 6
		errc := make(chan error, replicas)
		for i := 0; i < replicas; i++ {
			go func() {
				db, err := storage.Open(context.Background(), url, migrations)
				if err == nil {
					db.Close()
				}
				errc <- err
			}()
		}
		for i := 0; i < replicas; i++ {
			if err := <-errc; err != nil {
				t.Fatalf("round %d: a replica failed to start: %v", round, err)
			}
		}
	}
}

// A migration numbered below the newest applied one (a feature that landed after a
// later-numbered one) is still applied when it arrives.
func TestMigrationsArrivingOutOfOrderAreApplied(t *testing.T) {
	base := fstest.MapFS{
		"00001_a.sql": {Data: []byte("-- +goose Up\nCREATE TABLE a (id TEXT PRIMARY KEY);\n")},
		"00030_c.sql": {Data: []byte("-- +goose Up\nCREATE TABLE c (id TEXT PRIMARY KEY);\n")},
	}
	storagetest.Engines(t, base, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		later := fstest.MapFS{"00020_b.sql": {Data: []byte("-- +goose Up\nCREATE TABLE b (id TEXT PRIMARY KEY);\n")}}
		for k, v := range base {
			later[k] = v
		}
		if err := db.Migrate(ctx, later); err != nil {
			t.Fatalf("migrate with an earlier-numbered migration added: %v", err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO b (id) VALUES ('x')`); err != nil {
			t.Fatalf("table of the out-of-order migration is missing: %v", err)
		}
	})
}

func TestPoolMaxConns(t *testing.T) {
	for _, c := range []struct {
		url, want string
		n         int
	}{
		{"postgres://u:p@h:5432/db?sslmode=disable", "postgres://u:p@h:5432/db?sslmode=disable", storage.DefaultPoolMaxConns},
		{"postgres://u:p@h:5432/db?pool_max_conns=7&sslmode=disable", "postgres://u:p@h:5432/db?sslmode=disable", 7},
		{"postgresql://h/db?pool_max_conns=1", "postgresql://h/db", 1},
	} {
		got, n, err := storage.PoolMaxConns(c.url, storage.DefaultPoolMaxConns)
		if err != nil || got != c.want || n != c.n {
			t.Errorf("PoolMaxConns(%q) = %q, %d, %v; want %q, %d", c.url, got, n, err, c.want, c.n)
		}
	}
	for _, bad := range []string{"0", "-3", "ten", "", "2.5"} {
		url := "postgres://u:secret@h/db?pool_max_conns=" + bad
		if _, _, err := storage.PoolMaxConns(url, 20); err == nil || !strings.Contains(err.Error(), "pool_max_conns") || strings.Contains(err.Error(), "secret") {
			t.Errorf("pool_max_conns=%q: err = %v; want an error naming the parameter, without the URL", bad, err)
		}
		if _, err := storage.Open(context.Background(), url, nil); err == nil || !strings.Contains(err.Error(), "pool_max_conns") {
			t.Errorf("Open with pool_max_conns=%q: err = %v; want the parameter's error", bad, err)
		}
	}
	if _, _, err := storage.PoolMaxConns("postgres://h/db?pool_max_conns=2&pool_max_conns=3", 20); err == nil {
		t.Error("pool_max_conns given twice: want an error")
	}
}

// TestPoolMaxConnsOnPostgres opens PostgreSQL with pool_max_conns: the server must not see
// the parameter (it rejects unknown run-time parameters) and the pool must be that size.
func TestPoolMaxConnsOnPostgres(t *testing.T) {
	base := os.Getenv(storagetest.PostgresURLEnv)
	if base == "" {
		t.Skipf("PostgreSQL tests skipped: set %s", storagetest.PostgresURLEnv)
	}
	url := storagetest.PostgresSchemaURL(t, base) + "&pool_max_conns=3"
	db, err := storage.Open(context.Background(), url, migrations)
	if err != nil {
		t.Fatalf("open with pool_max_conns: %v", err)
	}
	defer db.Close()
	if got := db.Stats().MaxOpenConnections; got != 3 {
		t.Fatalf("MaxOpenConnections = %d, want 3", got)
	}
	def, err := storage.Open(context.Background(), storagetest.PostgresSchemaURL(t, base), migrations)
	if err != nil {
		t.Fatal(err)
	}
	defer def.Close()
	if got := def.Stats().MaxOpenConnections; got != storage.DefaultPoolMaxConns {
		t.Fatalf("default MaxOpenConnections = %d, want %d", got, storage.DefaultPoolMaxConns)
	}
}
