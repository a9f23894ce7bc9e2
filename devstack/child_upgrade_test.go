package devstack_test

import (
	"strings"
	"testing"
	"time"

	"lethe.dev/devstack"
)

// TestChildReportUpgradesAnOpenErasure: a member's ordinary erasure sits in its seven-day
// cooling-off when a child report about them arrives. The report must not be swallowed:
// the open erasure becomes a child erasure and finishes at once — one request, completed
// within seconds. Before, the child request met the open one, the event was marked
// handled, and the erasure waited out the cooling-off.
func TestChildReportUpgradesAnOpenErasure(t *testing.T) {
	dir := t.TempDir()
	s, err := devstack.Start(t.Context(), devstack.Options{DataDir: dir, UIPort: -1, Env: map[string]string{"FULFILLMENT_COOLING_OFF": "168h"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	c := client{t, "http://" + s.Addresses["gateway"]}
	m := c.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": "Reported Member", "email": "young@example.com", "birthDate": "1999-05-01"},
		"password": "a long enough password", "requestId": "signup-young"})
	name := m["name"].(string)
	tok := c.must("POST", "/v1/auth:signIn", "", map[string]any{"email": "young@example.com", "password": "a long enough password"})["accessToken"].(string)
	er := c.must("POST", "/v1/"+name+"/privacyRequests?requestId=erase-young", tok, map[string]any{"kind": "REQUEST_KIND_ERASURE"})
	c.awaitState(er["name"].(string), tok, "REQUEST_STATE_COOLING_OFF")
	if _, err := s.Identity.Domain.ReportChild(t.Context(), strings.TrimPrefix(name, "members/")); err != nil {
		t.Fatal(err)
	}
	reqID := er["name"].(string)[strings.LastIndex(er["name"].(string), "/")+1:]
	db := s.Fulfillment.Activities.DB
	deadline := time.Now().Add(60 * time.Second)
	for {
		var state, kind int
		if err := db.QueryRowContext(t.Context(), `SELECT state, kind FROM requests WHERE id = $1`, reqID).Scan(&state, &kind); err != nil {
			t.Fatal(err)
		}
		if state == 5 {
			if kind != 3 {
				t.Fatalf("completed as kind %d, want CHILD_ERASURE", kind)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("60 s after the child report the erasure is in state %d, kind %d", state, kind)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var rows int
	if err := db.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM requests WHERE member_id = $1`, strings.TrimPrefix(name, "members/")).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("%d requests for the member (%v), want the one upgraded", rows, err)
	}
}
