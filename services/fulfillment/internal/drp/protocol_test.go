package drp_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"lethe.dev/services/fulfillment/internal/drp"
)

func sign(key ed25519.PrivateKey, v any) string {
	msg, _ := json.Marshal(v)
	return base64.StdEncoding.EncodeToString(append(ed25519.Sign(key, msg), msg...))
}

// TestValidationOrder checks the chain runs in the protocol's order: each body below
// also fails every later step, so the step reported is the first that ran.
func TestValidationOrder(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	iso := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	good := map[string]any{"agent-id": "AA", "business-id": "LETHE", "issued-at": iso(-time.Second), "expires-at": iso(5 * time.Minute), "drp.version": "1.0"}
	with := func(kv ...string) map[string]any {
		m := map[string]any{}
		for k, v := range good {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	allWrong := []string{"agent-id", "BB", "business-id", "ACME", "issued-at", iso(time.Hour), "expires-at", iso(-time.Hour)}
	raw, _ := json.Marshal(with(allWrong...))
	for _, tc := range []struct {
		name, body, step string
		fatal            bool
	}{
		{"not base64", string(raw), "decode", true},
		{"too short to hold a signature", base64.StdEncoding.EncodeToString([]byte("{}")), "signature", true},
		{"unsigned JSON, base64", base64.StdEncoding.EncodeToString(raw), "signature", true},
		{"signed by another key", sign(otherKey, with(allWrong...)), "signature", true},
		{"wrong agent", sign(key, with(allWrong...)), "agent", true},
		{"wrong business", sign(key, with(allWrong[2:]...)), "business", true},
		{"not yet valid", sign(key, with(allWrong[4:]...)), "not_yet_valid", false},
		{"issued exactly now", sign(key, with("issued-at", iso(0))), "not_yet_valid", false},
		{"expired", sign(key, with(allWrong[6:]...)), "expired", true},
		{"expires exactly now", sign(key, with("expires-at", iso(0))), "expired", true},
		{"lives too long", sign(key, with("expires-at", iso(25*time.Hour))), "lifetime", true},
		{"not a time", sign(key, with("issued-at", "yesterday")), "issued_at", true},
	} {
		msg, f := drp.Open(tc.body, pub)
		if f == nil {
			_, _, f = drp.Check(msg, "AA", "LETHE", now)
		}
		if f == nil || f.Step != tc.step || f.Fatal != tc.fatal {
			t.Errorf("%s: failure %+v, want step %s (fatal %v)", tc.name, f, tc.step, tc.fatal)
		}
	}
	msg, f := drp.Open(sign(key, with("exercise", "deletion", "email", "a@example.com")), pub)
	if f != nil {
		t.Fatal(f)
	}
	r, exp, f := drp.Check(msg, "AA", "LETHE", now)
	if f != nil || r.Exercise != "deletion" || r.Email != "a@example.com" || !exp.Equal(now.Add(5*time.Minute)) {
		t.Fatalf("good body: %+v %v %+v", r, exp, f)
	}
	if e := (drp.Failure{Step: "expired", Message: "m", Fatal: true}).Error(); e.Reason != "DRP_EXPIRED" || e.Metadata["fatal"] != "true" {
		t.Fatalf("error = %+v", e)
	}
}

func TestValidCallback(t *testing.T) {
	for raw, want := range map[string]bool{
		"https://agent.example/status": true, "http://127.0.0.1:9000/cb": true, "http://localhost/cb": true, "http://[::1]:80/cb": true,
		"http://agent.example/status": false, "ftp://agent.example/": false, "https://user:pw@agent.example/": false, "not a url": false, "": false,
	} {
		if got := drp.ValidCallback(raw); got != want {
			t.Errorf("ValidCallback(%q) = %v, want %v", raw, got, want)
		}
	}
}
