// Package temporaldevtest has test helpers for Temporal on PostgreSQL.
package temporaldevtest

import (
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"testing"

	"lethe.dev/devstack/temporaldev"
)

// DatabaseURL returns base (a PostgreSQL URL) pointing at a uniquely named Temporal
// database; it and its visibility twin are dropped when the test ends.
func DatabaseURL(t testing.TB, base string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("postgres URL: %v", err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	u.Path = "/temporal_" + hex.EncodeToString(b[:])
	out := u.String()
	t.Cleanup(func() {
		if err := temporaldev.DropPostgres(out); err != nil {
			t.Logf("drop Temporal test databases: %v", err)
		}
	})
	return out
}
