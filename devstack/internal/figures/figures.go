// Package figures lets the long end-to-end tests (crash, topology) print their measured
// figures where CI shows them: `go test` without -v hides a passing test's log, so each
// figure is also appended to the file named by LETHE_TEST_FIGURES, which `make test`
// prints after the run.
package figures

import (
	"fmt"
	"os"
	"testing"
)

// Report logs a test's figures and appends them, under the test's name, to the file
// LETHE_TEST_FIGURES names (nothing more when it is unset).
func Report(t testing.TB, format string, args ...any) {
	t.Helper()
	text := fmt.Sprintf(format, args...)
	t.Log(text)
	path := os.Getenv("LETHE_TEST_FIGURES")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Logf("figures: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s: %s\n", t.Name(), text)
}
