package devstack_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"lethe.dev/devstack"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/platform/transport"
)

// mailTo waits until the dev mailbox holds a message to address with subject, and
// returns its body.
func mailTo(t *testing.T, dataDir, address, subject string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		raw, _ := os.ReadFile(filepath.Join(dataDir, "identity", "mailbox.jsonl"))
		sc := bufio.NewScanner(bytes.NewReader(raw))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m struct{ To, Subject, Body string }
			if json.Unmarshal(sc.Bytes(), &m) == nil && m.To == address && m.Subject == subject {
				return m.Body
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was never sent %q; mailbox:\n%s", address, subject, raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPolicyChangesTransfersComplaintsJourney walks the policies' new flows over HTTP
// against the dev stack. A policy change lowering protection for audience measurement
// is published: every member is emailed, the processing is refused for a member until
// they accept the version, then allowed, and the accepted version shows. A business
// transfer is recorded: both members get the notice email, one objects with its link;
// before the date nothing flows to the acquirer, after it data flows for the other
// member and is refused for the objector; a member who signed up after the notices
// went out is told by the workflow's sweep at the date and waits for their own notice.
// A complaint is filed, escalates when nobody
// acknowledges it in time, is acknowledged and resolved (the member is told), and is
// counted in the yearly figures.
func TestPolicyChangesTransfersComplaintsJourney(t *testing.T) {
	env := map[string]string{"FULFILLMENT_COMPLAINT_ACK_WINDOW": "3s", "FULFILLMENT_COMPLAINT_RESOLVE_WINDOW": "1h"}
	for k := range env {
		t.Cleanup(func() { os.Unsetenv(k) }) // later stacks in this process get the defaults
	}
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
	op := c.must("POST", "/v1/operators:signIn", "", map[string]any{"email": s.Operator.Email, "password": s.Operator.Password, "totpCode": s.Operator.TOTPCode(time.Now())})["accessToken"].(string)

	type member struct{ name, email, token string }
	signUp := func(full, email, pw string) member {
		m := c.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": full, "email": email, "birthDate": "1980-01-01"}, "password": pw, "requestId": "signup-" + email})
		tok := c.must("POST", "/v1/auth:signIn", "", map[string]any{"email": email, "password": pw})["accessToken"].(string)
		return member{m["name"].(string), email, tok}
	}
	ada := signUp("Ada Lovelace", "ada@example.com", "analytical engine notes")
	grace := signUp("Grace Hopper", "grace@example.com", "cobol compiler bug")

	n := 0
	authorize := func(m member, partner, purpose, category string) string {
		t.Helper()
		n++
		res, err := sh.AuthorizeDisclosure(t.Context(), &sharingv1.AuthorizeDisclosureRequest{Member: m.name, Partner: "partners/" + partner, Purpose: purpose,
			DataCategories: []string{category}, RequestId: "journey-" + strconv.Itoa(n)})
		if err != nil {
			t.Fatal(err)
		}
		return res.GetReason()
	}

	// 1. A policy change lowering protection for audience measurement.
	c.must("POST", "/v1/partners?partnerId=measure-co", op, map[string]any{"displayName": "Measure Co", "kind": "PARTNER_KIND_PROCESSOR",
		"purposes": []string{"audience_measurement"}, "dataCategories": []string{"user.behavior.media_consumption"}, "agreementRef": "DPA-7",
		"erasureWebhookUrl": "http://127.0.0.1:1/erase", "webhookSecret": strings.Repeat("s", 40)})
	if r := authorize(ada, "measure-co", "audience_measurement", "user.behavior.media_consumption"); r != "ALLOWED" {
		t.Fatalf("before the policy change: %s", r)
	}
	c.must("POST", "/v1/policies/trakt/versions?policyVersionId=2026-12-01", op, map[string]any{"summary": "Viewing data is shared with an audience measurement processor.",
		"effectiveTime": time.Now().UTC().Format(time.RFC3339), "lowersProtection": true, "affectedPurposes": []string{"audience_measurement"}})
	if code, _ := c.do("POST", "/v1/policies/trakt/versions?policyVersionId=2026-12-02", ada.token, map[string]any{"summary": "x", "effectiveTime": time.Now().UTC().Format(time.RFC3339)}); code != http.StatusForbidden {
		t.Fatalf("a member publishing a policy version: %d", code)
	}
	for _, m := range []member{ada, grace} {
		body := mailTo(t, dir, m.email, "Our privacy policy is changing")
		for _, want := range []string{"policies/trakt/versions/2026-12-01", "audience measurement processor", "audience_measurement", "accept version 2026-12-01"} {
			if !strings.Contains(body, want) {
				t.Errorf("policy change email to %s lacks %q:\n%s", m.email, want, body)
			}
		}
	}
	if r := authorize(ada, "measure-co", "audience_measurement", "user.behavior.media_consumption"); r != "POLICY_CONSENT_REQUIRED" {
		t.Fatalf("after a lowering change, before consent: %s", r)
	}
	acc := c.must("GET", "/v1/"+ada.name+"/policyAcceptances/trakt", ada.token, nil)
	if pending, _ := acc["pendingVersions"].([]any); len(pending) != 1 || acc["acceptedVersion"] != nil {
		t.Fatalf("acceptance before consent: %v", acc)
	}
	acc = c.must("POST", "/v1/"+ada.name+"/policyAcceptances/trakt:accept", ada.token, map[string]any{"version": "policies/trakt/versions/2026-12-01", "requestId": "accept-1"})
	if acc["acceptedVersion"] != "policies/trakt/versions/2026-12-01" {
		t.Fatalf("accept: %v", acc)
	}
	if r := authorize(ada, "measure-co", "audience_measurement", "user.behavior.media_consumption"); r != "ALLOWED" {
		t.Fatalf("after consent: %s", r)
	}
	if r := authorize(grace, "measure-co", "audience_measurement", "user.behavior.media_consumption"); r != "POLICY_CONSENT_REQUIRED" {
		t.Fatalf("another member who has not consented: %s", r)
	}
	acc = c.must("GET", "/v1/"+ada.name+"/policyAcceptances/trakt", ada.token, nil)
	if acc["acceptedVersion"] != "policies/trakt/versions/2026-12-01" || acc["acceptTime"] == nil || acc["pendingVersions"] != nil {
		t.Fatalf("the member's accepted version: %v", acc)
	}
	recs := c.must("GET", "/v1/"+ada.name+"/consentRecords", ada.token, nil)["consentRecords"].([]any)
	if r := recs[0].(map[string]any); r["setting"] != "policy/trakt" || r["policyVersion"] != "2026-12-01" || r["source"] != "CONSENT_SOURCE_POLICY_ACCEPTANCE" {
		t.Fatalf("the acceptance's consent record: %v", r)
	}
	versions := c.must("GET", "/v1/policies/trakt/versions", "", nil)["policyVersions"].([]any)
	if v := versions[0].(map[string]any); v["notificationComplete"] != true || v["notifiedCount"] != "2" {
		t.Fatalf("published version as anyone sees it: %v", v)
	}

	// 2. A business transfer to NewCo, effective in a few seconds.
	c.must("POST", "/v1/partners?partnerId=newco", op, map[string]any{"displayName": "NewCo Holdings", "kind": "PARTNER_KIND_ACQUIRER",
		"purposes": []string{"acquisition"}, "dataCategories": []string{"user.contact.email"}, "agreementRef": "SPA-2026"})
	c.must("POST", "/v1/partners/newco/purposes?purposeId=acquisition", op, map[string]any{"description": "NewCo runs the service after buying it",
		"dataCategories": []string{"user.contact.email"}, "legalBasis": "legitimate_interest", "noticePeriod": "30s"})
	effective := time.Now().Add(8 * time.Second)
	tr := c.must("POST", "/v1/businessTransfers?businessTransferId=newco-merger", op, map[string]any{"acquirer": "partners/newco", "purpose": "acquisition",
		"dataCategories": []string{"user.contact.email"}, "effectiveTime": effective.UTC().Format(time.RFC3339Nano)})
	if tr["state"] != "BUSINESS_TRANSFER_STATE_NOTIFYING" {
		t.Fatalf("transfer: %v", tr)
	}
	links := map[string]string{}
	for _, m := range []member{ada, grace} {
		body := mailTo(t, dir, m.email, "Before your data passes to a new owner")
		for _, want := range []string{"NewCo Holdings", "user.contact.email", "erasure request"} {
			if !strings.Contains(body, want) {
				t.Errorf("transfer notice to %s lacks %q:\n%s", m.email, want, body)
			}
		}
		links[m.email] = regexp.MustCompile(`http://[^\s"\\]+/v1/notices:object\?token=[A-Za-z0-9.]+`).FindString(body)
	}
	if r := authorize(ada, "newco", "acquisition", "user.contact.email"); r != "TRANSFER_NOT_EFFECTIVE" {
		t.Fatalf("before the transfer's date: %s", r)
	}
	// A member who signs up after the notices went out is told too (the transfer
	// workflow's sweep at the latest at the date), with a notice of the purpose's full
	// period, and nothing of theirs flows until it has run.
	dan := signUp("Dan Bricklin", "dan@example.com", "visible calculator sheets")
	if r := authorize(dan, "newco", "acquisition", "user.contact.email"); r != "TRANSFER_NOT_EFFECTIVE" {
		t.Fatalf("the newcomer before the transfer's date: %s", r)
	}
	resp, err := http.Get(links[grace.email]) // Grace objects with one click
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("objection link %q: %v %v", links[grace.email], resp, err)
	}
	resp.Body.Close()
	time.Sleep(time.Until(effective))
	deadline := time.Now().Add(30 * time.Second)
	for r := ""; r != "ALLOWED"; {
		if r = authorize(ada, "newco", "acquisition", "user.contact.email"); time.Now().After(deadline) {
			t.Fatalf("after the date, the member who did not object: %s", r)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r := authorize(grace, "newco", "acquisition", "user.contact.email"); r != "OBJECTED" {
		t.Fatalf("after the date, the member who objected: %s", r)
	}
	if body := mailTo(t, dir, dan.email, "Before your data passes to a new owner"); !strings.Contains(body, "NewCo Holdings") || !strings.Contains(body, "/v1/notices:object?token=") {
		t.Errorf("the newcomer's transfer notice:\n%s", body)
	}
	if r := authorize(dan, "newco", "acquisition", "user.contact.email"); r != "NOTICE_PENDING" {
		t.Fatalf("after the date, the newcomer within their notice period: %s", r)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		tr = c.must("GET", "/v1/businessTransfers/newco-merger", op, nil)
		if tr["state"] == "BUSINESS_TRANSFER_STATE_EFFECTIVE" && tr["notifiedCount"] == "3" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("transfer after its date: %v", tr)
		}
	}

	// 3. A complaint: filed, escalated when nobody acknowledges it in time, acknowledged,
	// resolved, counted.
	pr := c.must("POST", "/v1/"+ada.name+"/privacyRequests?requestId=export-ada", ada.token, map[string]any{"kind": "REQUEST_KIND_ACCESS"})
	cp := c.must("POST", "/v1/"+ada.name+"/complaints?requestId=complaint-1", ada.token, map[string]any{"category": "COMPLAINT_CATEGORY_SHARING",
		"description": "I did not expect my viewing history to go to a measurement company.", "relatedRequests": []string{pr["name"].(string)}})
	name := cp["name"].(string)
	if cp["state"] != "COMPLAINT_STATE_RECEIVED" || len(cp["relatedRequests"].([]any)) != 1 {
		t.Fatalf("filed complaint: %v", cp)
	}
	if again := c.must("POST", "/v1/"+ada.name+"/complaints?requestId=complaint-1", ada.token, map[string]any{"category": "COMPLAINT_CATEGORY_SHARING", "description": "again"}); again["name"] != name {
		t.Fatalf("retry filed a second complaint: %v", again)
	}
	if code, _ := c.do("GET", "/v1/"+name, grace.token, nil); code != http.StatusNotFound {
		t.Fatalf("another member reading the complaint: %d", code)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		cp = c.must("GET", "/v1/"+name, ada.token, nil)
		if esc, _ := cp["escalations"].([]any); slices.Contains(esc, any("acknowledgement-overdue")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("an unacknowledged complaint past its deadline did not escalate: %v", cp)
		}
	}
	open := c.must("GET", "/v1/members/-/complaints", op, nil)["complaints"].([]any)
	if len(open) != 1 {
		t.Fatalf("operators' open complaints: %v", open)
	}
	if code, _ := c.do("POST", "/v1/"+name+":acknowledge", ada.token, map[string]any{}); code != http.StatusForbidden {
		t.Fatalf("the member acknowledging their own complaint: %d", code)
	}
	c.must("POST", "/v1/"+name+":acknowledge", op, map[string]any{})
	mailTo(t, dir, ada.email, "About your complaint")
	cp = c.must("POST", "/v1/"+name+":resolve", op, map[string]any{"resolution": "We explained the new policy version; your data goes there only after you accept it."})
	if cp["state"] != "COMPLAINT_STATE_RESOLVED" || cp["acknowledgeTime"] == nil || cp["resolveTime"] == nil {
		t.Fatalf("resolved complaint: %v", cp)
	}
	cp = c.must("GET", "/v1/"+name, ada.token, nil)
	if !strings.Contains(cp["resolution"].(string), "accept it") {
		t.Fatalf("the member reads the resolution: %v", cp)
	}
	stats := c.must("GET", "/v1/requestStatistics/"+strconv.Itoa(time.Now().UTC().Year()), op, nil)
	cs, _ := stats["complaints"].(map[string]any)
	if cs["received"] != "1" || cs["resolved"] != "1" || cs["resolvedOnTime"] != "1" || cs["escalated"] != "1" {
		t.Fatalf("yearly complaint figures: %v", stats["complaints"])
	}
}
