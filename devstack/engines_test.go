package devstack_test

import (
	"os"
	"testing"

	"lethe.dev/platform/storage/storagetest"
)

// eachEngine runs fn as the subtests "sqlite" and "postgres". On SQLite every service
// keeps its database under the stack's data directory; on PostgreSQL every service gets
// a fresh schema of the server at LETHE_TEST_POSTGRES_URL (the subtest is skipped with a
// reason when it is unset). env is a fresh map of the stack's environment that fn may add to.
func eachEngine(t *testing.T, fn func(t *testing.T, env map[string]string)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, map[string]string{}) })
	t.Run("postgres", func(t *testing.T) {
		base := os.Getenv(storagetest.PostgresURLEnv)
		if base == "" {
			t.Skipf("PostgreSQL run skipped: set %s", storagetest.PostgresURLEnv)
		}
		env := map[string]string{}
		for _, svc := range []string{"IDENTITY", "PREFERENCES", "SHARING", "FULFILLMENT"} {
			env[svc+"_DATABASE_URL"] = storagetest.PostgresSchemaURL(t, base)
		}
		fn(t, env)
	})
}
