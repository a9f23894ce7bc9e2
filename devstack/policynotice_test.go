package devstack_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	tclient "go.temporal.io/sdk/client"
	"google.golang.org/protobuf/proto"

	"lethe.dev/devstack"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/platform/transport"
)

// mailCount counts the dev mailbox's messages to address with subject.
func mailCount(dataDir, address, subject string) int {
	raw, _ := os.ReadFile(filepath.Join(dataDir, "identity", "mailbox.jsonl"))
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		var m struct{ To, Subject string }
		if json.Unmarshal(sc.Bytes(), &m) == nil && m.To == address && m.Subject == subject {
			n++
		}
	}
	return n
}

// TestPolicyChangeNoticeWorkflowJourney publishes policy versions over HTTP against the
// dev stack (SQLite, then every service on PostgreSQL) and follows the change notice
// through its Temporal workflow: a lowering version effective now is published twice
// (a retry) and each member gets one email from one workflow
// (policy-change/{policy}/{version}), whose history holds no personal data; the
// processing is refused until the member accepts; a member who signs up afterwards
// accepted the version at sign-up (consent record), is not refused and is not mailed
// about it; a version effective in 30 days is mailed at once while the previous terms
// still apply, and its workflow waits for the date.
func TestPolicyChangeNoticeWorkflowJourney(t *testing.T) {
	eachEngine(t, policyChangeNotice)
}

func policyChangeNotice(t *testing.T, env map[string]string) {
	dir := t.TempDir()
	s, err := devstack.Start(t.Context(), devstack.Options{DataDir: dir, UIPort: -1, Env: env})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	c := client{t, "http://" + s.Addresses["gateway"]}
	conn, err := transport.FromEnv().Dial(s.Addresses["sharing"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sh := sharingv1.NewSharingServiceClient(conn)
	tc, err := tclient.Dial(tclient.Options{HostPort: s.TemporalAddress, Namespace: "lethe"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	op := c.must("POST", "/v1/operators:signIn", "", map[string]any{"email": s.Operator.Email, "password": s.Operator.Password, "totpCode": s.Operator.TOTPCode(time.Now())})["accessToken"].(string)

	type member struct{ name, full, email, token string }
	signUp := func(full, email, pw string) member {
		m := c.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": full, "email": email, "birthDate": "1980-01-01"}, "password": pw, "requestId": "signup-" + email})
		tok := c.must("POST", "/v1/auth:signIn", "", map[string]any{"email": email, "password": pw})["accessToken"].(string)
		return member{m["name"].(string), full, email, tok}
	}
	ada := signUp("Ada Lovelace", "ada@example.com", "analytical engine notes")
	grace := signUp("Grace Hopper", "grace@example.com", "cobol compiler bug")
	n := 0
	authorize := func(m member) string {
		t.Helper()
		n++
		res, err := sh.AuthorizeDisclosure(t.Context(), &sharingv1.AuthorizeDisclosureRequest{Member: m.name, Partner: "partners/measure-co", Purpose: "audience_measurement",
			DataCategories: []string{"user.behavior.media_consumption"}, RequestId: "notice-" + strconv.Itoa(n)})
		if err != nil {
			t.Fatal(err)
		}
		return res.GetReason()
	}
	c.must("POST", "/v1/partners?partnerId=measure-co", op, map[string]any{"displayName": "Measure Co", "kind": "PARTNER_KIND_PROCESSOR",
		"purposes": []string{"audience_measurement"}, "dataCategories": []string{"user.behavior.media_consumption"}, "agreementRef": "DPA-7",
		"erasureWebhookUrl": "http://127.0.0.1:1/erase", "webhookSecret": strings.Repeat("s", 40)})
	const subject = "Our privacy policy is changing"
	workflowDone := func(id string) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			d, err := tc.DescribeWorkflowExecution(t.Context(), id, "")
			if err == nil && d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("workflow %s did not complete: %v %v", id, d.GetWorkflowExecutionInfo().GetStatus(), err)
			}
		}
	}

	// 1. A lowering version effective now, published twice (an operator's retry).
	publish := func(id string, effective time.Time) map[string]any {
		return c.must("POST", "/v1/policies/trakt/versions?policyVersionId="+id, op, map[string]any{"summary": "Viewing data is shared with an audience measurement processor.",
			"effectiveTime": effective.UTC().Format(time.RFC3339), "lowersProtection": true, "affectedPurposes": []string{"audience_measurement"}})
	}
	now := time.Now()
	publish("2026-12-01", now)
	publish("2026-12-01", now)
	for _, m := range []member{ada, grace} {
		if body := mailTo(t, dir, m.email, subject); !strings.Contains(body, "accept version 2026-12-01") {
			t.Errorf("policy change email to %s:\n%s", m.email, body)
		}
	}
	workflowDone("policy-change/trakt/2026-12-01")
	for _, m := range []member{ada, grace} {
		if got := mailCount(dir, m.email, subject); got != 1 {
			t.Errorf("%s got %d policy change emails, want 1", m.email, got)
		}
	}
	v := c.must("GET", "/v1/policies/trakt/versions", "", nil)["policyVersions"].([]any)[0].(map[string]any)
	if v["notifiedCount"] != "2" || v["notificationComplete"] != true {
		t.Fatalf("the version's notice progress: %v", v)
	}
	// Only opaque ids crossed into Temporal: no address, name or member id.
	iter := tc.GetWorkflowHistory(t.Context(), "policy-change/trakt/2026-12-01", "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := &historypb.History{}
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		h.Events = append(h.Events, ev)
	}
	raw, _ := proto.Marshal(h)
	if len(h.Events) < 5 || !bytes.Contains(raw, []byte("2026-12-01")) {
		t.Fatalf("history of %d events does not name the version", len(h.Events))
	}
	for _, m := range []member{ada, grace} {
		for _, pd := range []string{m.email, m.full, strings.TrimPrefix(m.name, "members/")} {
			if bytes.Contains(raw, []byte(pd)) {
				t.Errorf("%q is in the workflow's history", pd)
			}
		}
	}

	// 2. The consent gate, then acceptance.
	if r := authorize(ada); r != "POLICY_CONSENT_REQUIRED" {
		t.Fatalf("after a lowering change, before consent: %s", r)
	}
	c.must("POST", "/v1/"+ada.name+"/policyAcceptances/trakt:accept", ada.token, map[string]any{"version": "policies/trakt/versions/2026-12-01", "requestId": "accept-1"})
	if r := authorize(ada); r != "ALLOWED" {
		t.Fatalf("after consent: %s", r)
	}

	// 3. A member who signs up after the version accepted it at sign-up.
	carol := signUp("Carol Shaw", "carol@example.com", "river raid high score")
	if r := authorize(carol); r != "ALLOWED" {
		t.Fatalf("a member who signed up under the changed policy: %s", r)
	}
	acc := c.must("GET", "/v1/"+carol.name+"/policyAcceptances/trakt", carol.token, nil)
	if acc["acceptedVersion"] != "policies/trakt/versions/2026-12-01" || acc["pendingVersions"] != nil {
		t.Fatalf("the newcomer's acceptance: %v", acc)
	}
	recs := c.must("GET", "/v1/"+carol.name+"/consentRecords", carol.token, nil)["consentRecords"].([]any)
	if r := recs[0].(map[string]any); r["setting"] != "policy/trakt" || r["policyVersion"] != "2026-12-01" || r["source"] != "CONSENT_SOURCE_SIGN_UP" {
		t.Fatalf("the newcomer's consent record: %v", recs)
	}

	// 4. A version effective in 30 days: everyone is mailed now, the old terms apply
	// until the date, and the workflow waits for it.
	publish("2027-01-01", now.Add(30*24*time.Hour))
	for _, m := range []member{ada, grace, carol} {
		mailTo(t, dir, m.email, subject)
	}
	if got := mailCount(dir, carol.email, subject); got != 1 {
		t.Fatalf("the newcomer got %d policy change emails, want 1 (the later version only)", got)
	}
	if r := authorize(ada); r != "ALLOWED" {
		t.Fatalf("before the new version's date: %s", r)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var state string
		res, err := tc.QueryWorkflow(t.Context(), "policy-change/trakt/2027-01-01", "", "state")
		if err == nil && res.Get(&state) == nil && state == "announced" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the future version's workflow: %q %v", state, err)
		}
	}
}
