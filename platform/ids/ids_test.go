package ids_test

import (
	"testing"

	"lethe.dev/platform/ids"
)

func TestNewIDsAreValidAndDistinct(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := ids.New()
		if !ids.Valid(id) || len(id) != 26 || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
	for _, bad := range []string{"", "short", "UPPERCASE1", "has-dash1", "../../etc", "a_b_c_d_e"} {
		if ids.Valid(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}
