package devstack_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lethe.dev/devstack"
)

// mails returns the bodies of the messages to address with subject in the dev mailbox.
func mails(dataDir, address, subject string) []string {
	raw, _ := os.ReadFile(filepath.Join(dataDir, "identity", "mailbox.jsonl"))
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var out []string
	for sc.Scan() {
		var m struct{ To, Subject, Body string }
		if json.Unmarshal(sc.Bytes(), &m) == nil && m.To == address && m.Subject == subject {
			out = append(out, m.Body)
		}
	}
	return out
}

// TestMarketingMailingJourney (SQLite and PostgreSQL): an operator sends a newsletter mailing by campaign id over
// HTTP. Preferences asks AuthorizeMarketing per member: the subscribed member gets one
// message with a one-click unsubscribe token, the member who unsubscribed and the member
// whose processing is restricted get nothing. Creating the mailing again sends nobody a
// second message; the operator's action is in the audit log; the token unsubscribes, so
// the next mailing skips that member too.
func TestMarketingMailingJourney(t *testing.T) {
	eachEngine(t, marketingMailing)
}

func marketingMailing(t *testing.T, env map[string]string) {
	env["FULFILLMENT_COOLING_OFF"], env["GATEWAY_SENSITIVE_PER_MINUTE"] = "0s", "600"
	dir := t.TempDir()
	s, err := devstack.Start(t.Context(), devstack.Options{DataDir: dir, UIPort: -1, Env: env})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	c := client{t, "http://" + s.Addresses["gateway"]}
	op := c.must("POST", "/v1/operators:signIn", "", map[string]any{"email": s.Operator.Email, "password": s.Operator.Password, "totpCode": s.Operator.TOTPCode(time.Now())})["accessToken"].(string)
	newsletter := func(name, tok string, on bool) {
		c.must("PATCH", "/v1/"+name+"/communicationPreferences", tok, map[string]any{"changes": []any{map[string]any{"channel": "CHANNEL_EMAIL", "topic": "TOPIC_NEWSLETTER", "subscribed": on}}})
	}
	signUp := func(full, email string) (string, string) {
		m := c.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": full, "email": email, "birthDate": "1980-01-01"},
			"password": "a long enough password", "requestId": "signup-" + email})
		tok := c.must("POST", "/v1/auth:signIn", "", map[string]any{"email": email, "password": "a long enough password"})["accessToken"].(string)
		return m["name"].(string), tok
	}
	sub, subTok := signUp("Subscribed Sam", "sam@example.com")
	unsub, unsubTok := signUp("Unsubscribed Uma", "uma@example.com")
	restricted, restrictedTok := signUp("Restricted Rex", "rex@example.com")
	newsletter(sub, subTok, true)
	newsletter(unsub, unsubTok, true)
	newsletter(unsub, unsubTok, false)
	newsletter(restricted, restrictedTok, true)
	r := c.must("POST", "/v1/"+restricted+"/privacyRequests?requestId=restrict-rex", restrictedTok, map[string]any{"kind": "REQUEST_KIND_RESTRICTION"})
	c.awaitState(r["name"].(string), restrictedTok, "REQUEST_STATE_COMPLETED")

	send := func(id string) map[string]any {
		t.Helper()
		body := map[string]any{"channel": "CHANNEL_EMAIL", "topic": "TOPIC_NEWSLETTER"}
		if code, _ := c.do("POST", "/v1/marketingMailings?marketingMailingId="+id, subTok, body); code != 403 {
			t.Fatalf("a member sending a mailing: %d", code)
		}
		m := c.must("POST", "/v1/marketingMailings?marketingMailingId="+id, op, body)
		deadline := time.Now().Add(60 * time.Second)
		for m["done"] != true {
			if time.Now().After(deadline) {
				t.Fatalf("mailing %s not done: %v", id, m)
			}
			time.Sleep(200 * time.Millisecond)
			m = c.must("GET", "/v1/marketingMailings/"+id, op, nil)
		}
		time.Sleep(time.Second) // delivery runs every 250 ms
		return m
	}
	m := send("campaign-2026-12")
	if fmt.Sprint(m["sentCount"]) != "1" || fmt.Sprint(m["refusedCount"]) != "2" {
		t.Fatalf("mailing counts: %v", m)
	}
	got := map[string]int{}
	for _, a := range []string{"sam@example.com", "uma@example.com", "rex@example.com"} {
		got[a] = len(mails(dir, a, "News from us"))
	}
	if got["sam@example.com"] != 1 || got["uma@example.com"] != 0 || got["rex@example.com"] != 0 {
		t.Fatalf("marketing mail per member: %v", got)
	}
	// Creating it again (a retry) returns the same mailing and sends nothing more.
	again := send("campaign-2026-12")
	if again["name"] != m["name"] || len(mails(dir, "sam@example.com", "News from us")) != 1 {
		t.Fatalf("a retried mailing sent again: %v, %d messages", again, len(mails(dir, "sam@example.com", "News from us")))
	}
	if code, res := c.do("POST", "/v1/marketingMailings?marketingMailingId=campaign-2026-12", op, map[string]any{"channel": "CHANNEL_EMAIL", "topic": "TOPIC_PROMOTIONS"}); code != 409 {
		t.Fatalf("the campaign id reused for another topic: %d %v", code, res)
	}
	audited := false
	for _, e := range items(c.must("GET", "/v1/auditLog", op, nil), "auditEvents") {
		audited = audited || strings.Contains(fmt.Sprint(e), "CreateMarketingMailing")
	}
	if !audited {
		t.Fatal("the mailing is not in the audit log")
	}
	// The message's one-click token unsubscribes; the next mailing skips Sam too.
	body := mails(dir, "sam@example.com", "News from us")[0]
	i := strings.Index(body, "with the token ")
	if i < 0 {
		t.Fatalf("no unsubscribe token in the message:\n%s", body)
	}
	token := strings.Fields(body[i+len("with the token "):])[0]
	c.must("POST", "/v1/unsubscribe", "", map[string]any{"token": token})
	if m := send("campaign-2027-01"); m["sentCount"] != nil || fmt.Sprint(m["refusedCount"]) != "3" || len(mails(dir, "sam@example.com", "News from us")) != 1 {
		t.Fatalf("mailing after unsubscribing: %v", m)
	}
}
