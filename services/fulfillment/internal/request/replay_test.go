package request_test

import (
	"os"
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"

	"lethe.dev/services/fulfillment/internal/request"
)

// TestReplayRecordedHistories replays histories recorded from the real dev stack
// (devstack's journey test with LETHE_RECORD_HISTORIES=1) against the current workflow
// code: a change that breaks determinism for requests already running fails here.
func TestReplayRecordedHistories(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	if len(files) == 0 {
		t.Fatal("no recorded histories in testdata/")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflow(request.PrivacyRequest)
			r.RegisterWorkflow(request.OnwardErasure)
			r.RegisterWorkflow(request.ArchiveExpiry)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatalf("replay: %v", err)
			}
		})
	}
}

// TestReplayCatchesANonDeterministicChange shows the replay test can fail: a history
// whose first activity was something else no longer matches the workflow.
func TestReplayCatchesANonDeterministicChange(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "erasure-before-notify-member.json"))
	if err != nil {
		t.Fatal(err)
	}
	tampered := filepath.Join(t.TempDir(), "tampered.json")
	if err := os.WriteFile(tampered, []byte(replaceFirst(string(raw), `"name":  "SetState"`, `"name":  "SomethingElse"`)), 0o600); err != nil {
		t.Fatal(err)
	}
	r := worker.NewWorkflowReplayer()
	r.RegisterWorkflow(request.PrivacyRequest)
	r.RegisterWorkflow(request.OnwardErasure)
	if err := r.ReplayWorkflowHistoryFromJSONFile(nil, tampered); err == nil {
		t.Fatal("a history that does not match the code replayed without error")
	}
}

func replaceFirst(s, old, new string) string {
	for i := 0; i+len(old) <= len(s); i++ {
		if s[i:i+len(old)] == old {
			return s[:i] + new + s[i+len(old):]
		}
	}
	return s
}
