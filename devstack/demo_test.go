package devstack_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"lethe.dev/devstack"
)

// TestSeedDemo seeds a fresh dev stack with lethe-dev -demo's data, through the public
// APIs, and reads it back through the gateway as the operator: each request is in the
// state SeedDemo reports (awaiting verification, cooling off and extended, on hold, in
// progress, completed, cancelled), the members have viewing history and ratings, both
// partners exist, the child's erasure was acknowledged by the loopback processor and the
// other still waits for it. A second SeedDemo on the same stack finds demo.json and only
// serves the webhook again.
func TestSeedDemo(t *testing.T) {
	dir := t.TempDir()
	s, err := devstack.Start(t.Context(), devstack.Options{DataDir: dir, UIPort: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	d, err := devstack.SeedDemo(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	c := client{t, "http://" + s.Addresses["gateway"]}
	op := d.OperatorToken // read back as the operator, over the gateway
	if op == "" {
		t.Fatal("SeedDemo returned no operator token")
	}

	want := map[string]bool{"REQUEST_STATE_AWAITING_VERIFICATION": false, "REQUEST_STATE_COOLING_OFF": false, "REQUEST_STATE_ON_HOLD": false,
		"REQUEST_STATE_IN_PROGRESS": false, "REQUEST_STATE_COMPLETED": false, "REQUEST_STATE_CANCELLED": false}
	extended := 0
	for _, r := range d.Requests {
		got := c.must("GET", "/v1/"+r.Name, op, nil)
		if got["state"] != r.State {
			t.Errorf("%s (%s) is %v, SeedDemo says %s", r.Name, r.Note, got["state"], r.State)
		}
		if _, ok := want[r.State]; ok {
			want[r.State] = true
		}
		if r.Extended {
			extended++
			if got["extended"] != true || got["extensionReason"] == "" {
				t.Errorf("%s is not extended: %v", r.Name, got)
			}
		}
		if r.State == "REQUEST_STATE_ON_HOLD" && got["holdReason"] == "" {
			t.Errorf("%s is on hold without a reason: %v", r.Name, got)
		}
	}
	for st, ok := range want {
		if !ok {
			t.Errorf("no demo request is %s", st)
		}
	}
	if extended == 0 {
		t.Error("no demo request is extended")
	}

	if len(d.Members) < 5 {
		t.Fatalf("%d demo members", len(d.Members))
	}
	for _, m := range d.Members[:2] { // members whose accounts remain
		// SeedDemo used up the gateway's sign-in budget for this address (10 a minute):
		// wait for it, as SeedDemo does.
		var tok string
		for deadline := time.Now().Add(time.Minute); tok == ""; time.Sleep(time.Second) {
			code, res := c.do("POST", "/v1/auth:signIn", "", map[string]any{"email": m.Email, "password": m.Password})
			if code == http.StatusOK {
				tok = res["accessToken"].(string)
			} else if code != http.StatusTooManyRequests || time.Now().After(deadline) {
				t.Fatalf("sign-in of %s: %d %v", m.Email, code, res)
			}
		}
		views, _ := c.must("GET", "/v1/"+m.Name+"/viewingEvents", tok, nil)["viewingEvents"].([]any)
		ratings, _ := c.must("GET", "/v1/"+m.Name+"/ratings", tok, nil)["ratings"].([]any)
		if len(views) < 3 || len(ratings) < 2 {
			t.Errorf("%s has %d viewing events and %d ratings; want a history", m.Email, len(views), len(ratings))
		}
	}
	partners, _ := c.must("GET", "/v1/partners", op, nil)["partners"].([]any)
	kinds := map[string]string{}
	for _, p := range partners {
		p := p.(map[string]any)
		kinds[p["name"].(string)], _ = p["kind"].(string)
	}
	if kinds["partners/"+devstack.DemoProcessor] != "PARTNER_KIND_PROCESSOR" || kinds["partners/"+devstack.DemoMarketing] == "" {
		t.Errorf("partners: %v", kinds)
	}
	for _, r := range d.Requests {
		got := c.must("GET", "/v1/"+r.Name, op, nil)
		steps := map[string]string{}
		prog, _ := got["progress"].([]any)
		for _, st := range prog {
			st := st.(map[string]any)
			steps[st["step"].(string)], _ = st["state"].(string)
		}
		onward := steps["onward.partners/"+devstack.DemoProcessor]
		switch r.State {
		case "REQUEST_STATE_COMPLETED":
			if _, isErasure := steps["stop.sessions_marketing_sharing"]; isErasure && onward != "acknowledged" {
				t.Errorf("the completed erasure's processor step is %q, want acknowledged by the loopback webhook (%v)", onward, steps)
			}
		case "REQUEST_STATE_IN_PROGRESS":
			if _, ok := steps["onward.recipients"]; !ok || onward != "" {
				t.Errorf("the erasure in progress should wait for the processor; its steps are %v", steps)
			}
		}
	}

	raw, err := os.ReadFile(filepath.Join(dir, "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	var saved devstack.Demo
	if err := json.Unmarshal(raw, &saved); err != nil || len(saved.Requests) != len(d.Requests) {
		t.Fatalf("demo.json: %v, %d requests", err, len(saved.Requests))
	}
	again, err := devstack.SeedDemo(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Requests) != len(d.Requests) || again.WebhookURL == "" {
		t.Errorf("the second SeedDemo: %d requests, webhook %q", len(again.Requests), again.WebhookURL)
	}
	resp, err := http.Post(again.WebhookURL, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the webhook answered an unsigned call %d, want 401", resp.StatusCode)
	}
}
