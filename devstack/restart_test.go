package devstack_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"lethe.dev/devstack"
	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	domain "lethe.dev/services/identity"
)

// seedHistory writes n viewing events for a member straight into preferences' database.
func seedHistory(t testing.TB, s *devstack.Stack, member string, n int) {
	t.Helper()
	tx, err := s.Preferences.Server.DB.Begin()
	if err != nil {
		t.Fatal(err)
	}
	stmt, err := tx.Prepare(`INSERT INTO viewing_events (id, owner, title_id, view_time, duration_seconds, device_type) VALUES ($1, $2, $3, $4, $5, 'tv')`)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	for i := range n {
		if _, err := stmt.Exec(fmt.Sprintf("%s-%07d", member, i), member, fmt.Sprintf("title-%d", i%500), base+int64(i)*1e6, 60); err != nil {
			t.Fatal(err)
		}
	}
	stmt.Close()
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func newMember(t testing.TB, s *devstack.Stack, email string) string {
	t.Helper()
	m, err := s.Identity.Domain.Create(context.Background(), domain.PII{FullName: "Test Member", Email: email, BirthDate: "1990-01-01"}, "a long enough password", "")
	if err != nil {
		t.Fatal(err)
	}
	return m.ID
}

// fresh is the context of a member who just signed in (verified at once).
func fresh() context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-lethe-recent-signin", "true"))
}

// TestExportSurvivesACrashMidRun stops the whole stack (Temporal, services and worker)
// while the export is streaming a 100,000-item history, starts it again on the same data
// directory, and requires the request to finish with every record exactly once.
func TestExportSurvivesACrashMidRun(t *testing.T) {
	dir := t.TempDir()
	opts := devstack.Options{DataDir: dir, UIPort: -1}
	s, err := devstack.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	member := newMember(t, s, "crash@example.com")
	seedHistory(t, s, member, 100_000)
	req, err := s.Fulfillment.API.CreatePrivacyRequest(fresh(), &fulfillmentv1.CreatePrivacyRequestRequest{Parent: "members/" + member, RequestId: "export-crash",
		PrivacyRequest: &fulfillmentv1.PrivacyRequest{Kind: fulfillmentv1.RequestKind_REQUEST_KIND_ACCESS}})
	if err != nil {
		t.Fatal(err)
	}
	reqID := filepath.Base(req.GetName())
	parts := filepath.Join(dir, "fulfillment", "archives", reqID, "parts", "preferences", "*viewing_history.jsonz")
	deadline := time.Now().Add(60 * time.Second)
	for {
		if written, _ := filepath.Glob(parts); len(written) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the export never started writing")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := s.Stop(); err != nil {
		t.Logf("stop: %v", err)
	}
	written, _ := filepath.Glob(parts)
	t.Logf("stopped with %d of 200 viewing-history parts written", len(written))

	s, err = devstack.Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("restart on the same data directory: %v", err)
	}
	t.Cleanup(func() { s.Stop() })
	deadline = time.Now().Add(120 * time.Second)
	for {
		got, err := s.Fulfillment.API.GetPrivacyRequest(context.Background(), &fulfillmentv1.GetPrivacyRequestRequest{Name: req.GetName()})
		if err == nil && got.GetState() == fulfillmentv1.RequestState_REQUEST_STATE_COMPLETED {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not completed after the restart: %v %v", got, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	// The archive is encrypted at rest under the export's key: read it as a download does.
	ar, err := s.Fulfillment.Activities.Archives.NewReader(context.Background(), reqID, reqID+"/export.zip")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(ar)
	ar.Close()
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range zr.File {
		if f.Name != "preferences/viewing_history.json" {
			continue
		}
		rc, _ := f.Open()
		var events []struct{ Name string }
		if err := json.NewDecoder(rc).Decode(&events); err != nil {
			t.Fatal(err)
		}
		rc.Close()
		seen := map[string]bool{}
		for _, e := range events {
			seen[e.Name] = true
		}
		if len(events) != 100_000 || len(seen) != 100_000 {
			t.Fatalf("archive has %d events (%d distinct), want 100000 exactly once", len(events), len(seen))
		}
		return
	}
	t.Fatal("archive lacks preferences/viewing_history.json")
}
