package devstack_test

import (
	"strings"
	"testing"
	"time"

	tclient "go.temporal.io/sdk/client"

	"lethe.dev/devstack"
)

// TestRetentionSchedule: fulfillment registers its hourly retention schedule in
// Temporal, and the purge it runs removes download records past 90 days and whatever a
// failed export left behind (parts and key), keeping recent records.
func TestRetentionSchedule(t *testing.T) {
	dir := t.TempDir()
	s, err := devstack.Start(t.Context(), devstack.Options{DataDir: dir, UIPort: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	tc, err := tclient.Dial(tclient.Options{HostPort: s.TemporalAddress, Namespace: "lethe"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		d, err := tc.ScheduleClient().GetHandle(t.Context(), "lethe-retention").Describe(t.Context())
		if err == nil {
			if iv := d.Schedule.Spec.Intervals; len(iv) != 1 || iv[0].Every != time.Hour {
				t.Fatalf("schedule spec = %+v", d.Schedule.Spec)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no retention schedule: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	c := client{t, "http://" + s.Addresses["gateway"]}
	m := c.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": "Retta Keep", "email": "retta@example.com", "birthDate": "1990-01-01"},
		"password": "keep it short please", "requestId": "signup-rk"})
	name := m["name"].(string)
	tok := c.must("POST", "/v1/auth:signIn", "", map[string]any{"email": "retta@example.com", "password": "keep it short please"})["accessToken"].(string)
	ex := c.must("POST", "/v1/"+name+"/privacyRequests?requestId=export-1", tok, map[string]any{"kind": "REQUEST_KIND_ACCESS"})
	c.awaitState(ex["name"].(string), tok, "REQUEST_STATE_COMPLETED")
	exportID := ex["name"].(string)[strings.LastIndex(ex["name"].(string), "/")+1:]

	ctx := t.Context()
	a := s.Fulfillment.Activities
	// A failed export that left a part and its key behind, and two download records.
	const failed = "failedexport000001"
	if _, err := a.DB.ExecContext(ctx, `INSERT INTO requests (id, member_id, kind, jurisdiction, origin, state, is_open, client_request_id, created_at, due_at, extended, extension_reason,
		hold_reason, progress, challenge_id, tombstone_id, archive_path, archive_size, archive_sha256, breached)
		SELECT $1, member_id, kind, jurisdiction, origin, 8, FALSE, 'failed-1', created_at, due_at, extended, extension_reason, hold_reason, progress, challenge_id, 'tomb00000001', '', 0, '', FALSE
		FROM requests WHERE id = $2`, failed, exportID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Archives.Keys.Streaming(ctx, "archive/"+failed, true); err != nil {
		t.Fatal(err)
	}
	if err := a.Archives.Bucket.WriteAll(ctx, failed+"/parts/identity/000000.account.jsonl", []byte("ciphertext"), nil); err != nil {
		t.Fatal(err)
	}
	old, recent := time.Now().Add(-100*24*time.Hour).UnixMicro(), time.Now().Add(-time.Hour).UnixMicro()
	if _, err := a.DB.ExecContext(ctx, `INSERT INTO downloads (id, request_id, downloaded_at) VALUES ('dl-old', $1, $2), ('dl-recent', $1, $3)`, exportID, old, recent); err != nil {
		t.Fatal(err)
	}
	res, err := a.PurgeExpired(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Downloads != 1 || res.FailedExports != 1 {
		t.Fatalf("purged %+v", res)
	}
	if n, _ := a.Archives.Count(ctx, failed+"/"); n != 0 {
		t.Error("the failed export's part survived the purge")
	}
	if has, _ := a.Archives.Keys.Has(ctx, "archive/"+failed); has {
		t.Error("the failed export's key survived the purge")
	}
	var n int
	a.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM downloads WHERE id = 'dl-recent'`).Scan(&n)
	if n != 1 {
		t.Error("a recent download record was purged")
	}
	if n, _ := a.Archives.Count(ctx, exportID+"/"); n != 1 {
		t.Errorf("the completed export's archive was touched (%d objects)", n)
	}
}
