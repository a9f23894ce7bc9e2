// Package storagetest runs storage-backed tests on every engine: SQLite in a temporary
// directory always, and PostgreSQL when LETHE_TEST_POSTGRES_URL names a server (each test
// gets its own schema, dropped afterwards).
package storagetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"lethe.dev/platform/storage"
)

// PostgresURLEnv names the variable that points tests at a PostgreSQL server.
const PostgresURLEnv = "LETHE_TEST_POSTGRES_URL"

// Engines runs fn once per available engine as subtests named "sqlite" and "postgres".
func Engines(t *testing.T, migrations fs.FS, fn func(t *testing.T, db *storage.DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, MustOpenSQLite(t, migrations)) })
	t.Run("postgres", func(t *testing.T) { fn(t, MustOpenPostgres(t, migrations)) })
}

// URLs returns a fresh database URL per available engine (for tests that start whole
// servers), keyed "sqlite" and "postgres"; PostgreSQL is absent when not configured.
func URLs(t testing.TB) map[string]string {
	t.Helper()
	out := map[string]string{"sqlite": SQLiteURL(t)}
	if u := os.Getenv(PostgresURLEnv); u != "" {
		out["postgres"] = PostgresSchemaURL(t, u)
	}
	return out
}

// SQLiteURL returns a sqlite: URL in a test's temporary directory.
func SQLiteURL(t testing.TB) string {
	t.Helper()
	return "sqlite:" + filepath.Join(t.TempDir(), "test.db")
}

// MustOpenSQLite opens a migrated SQLite database in a temporary directory.
func MustOpenSQLite(t testing.TB, migrations fs.FS) *storage.DB {
	t.Helper()
	db, err := storage.Open(context.Background(), SQLiteURL(t), migrations)
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// MustOpenPostgres opens a migrated PostgreSQL database in a fresh schema, or skips the
// test with the reason when no server is configured.
func MustOpenPostgres(t testing.TB, migrations fs.FS) *storage.DB {
	t.Helper()
	base := os.Getenv(PostgresURLEnv)
	if base == "" {
		t.Skipf("PostgreSQL tests skipped: set %s (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)", PostgresURLEnv)
	}
	db, err := storage.Open(context.Background(), PostgresSchemaURL(t, base), migrations)
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// PostgresSchemaURL creates a uniquely named schema and returns base with its
// search_path set to it; the schema is dropped when the test ends.
func PostgresSchemaURL(t testing.TB, base string) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		admin.Close()
		t.Fatalf("postgres at %s: create schema: %v", PostgresURLEnv, err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec("DROP SCHEMA " + schema + " CASCADE")
		admin.Close()
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("postgres URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
