package devstack_test

import (
	"archive/zip"
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	tclient "go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"

	"lethe.dev/devstack"
)

// client talks JSON to the dev stack's gateway like the web tier does.
type client struct {
	t    *testing.T
	base string
}

func (c client) do(method, path, token string, body any) (int, map[string]any) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

func (c client) must(method, path, token string, body any) map[string]any {
	c.t.Helper()
	code, m := c.do(method, path, token, body)
	if code != 200 {
		c.t.Fatalf("%s %s: %d %v", method, path, code, m)
	}
	return m
}

// awaitState polls a privacy request until it reaches state.
func (c client) awaitState(name, token, state string) map[string]any {
	c.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, m := c.do("GET", "/v1/"+name, token, nil)
		if m["state"] == state {
			return m
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s stuck in %v (want %s): %v", name, m["state"], state, m)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// mailed waits until the dev mailbox holds every want (delivery runs every 250 ms) and
// fails the test if it does not within 10 seconds.
func mailed(t *testing.T, dataDir string, wants ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		raw, _ := os.ReadFile(filepath.Join(dataDir, "identity", "mailbox.jsonl"))
		missing := ""
		for _, w := range wants {
			if !strings.Contains(string(raw), w) {
				missing = w
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the member was never sent %q; mailbox:\n%s", missing, raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func reasonOf(m map[string]any) string {
	ds, _ := m["details"].([]any)
	for _, d := range ds {
		if dm, ok := d.(map[string]any); ok && dm["reason"] != nil {
			return dm["reason"].(string)
		}
	}
	return ""
}

// lastCode reads the newest verification code from the dev mailbox.
func lastCode(t *testing.T, dataDir string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if f, err := os.Open(filepath.Join(dataDir, "identity", "mailbox.jsonl")); err == nil {
			var code string
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if c := regexp.MustCompile(`\b[0-9]{6}\b`).FindString(sc.Text()); c != "" {
					code = c
				}
			}
			f.Close()
			if code != "" {
				return code
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no verification code was mailed")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestNewMemberJourney walks what a new member does, over real HTTP against the dev
// stack: sign up, sign in, set preferences, watch and rate, export and download
// everything, erase the account, and find no trace afterwards.
func TestNewMemberJourney(t *testing.T) {
	eachEngine(t, func(t *testing.T, env map[string]string) { journey(t, env) })
}

func journey(t *testing.T, env map[string]string) {
	dir := t.TempDir()
	env["FULFILLMENT_COOLING_OFF"] = "0s"
	s, err := devstack.Start(t.Context(), devstack.Options{DataDir: dir, UIPort: -1, Env: env})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	c := client{t, "http://" + s.Addresses["gateway"]}

	entered := map[string]string{"fullName": "Grace Brewster Hopper", "email": "grace.hopper@example.com", "phoneNumber": "+12025550147", "birthDate": "1986-12-09", "paymentMethodRef": "pm_card_amex_1906"}
	member := map[string]any{"postalAddress": map[string]any{"regionCode": "US", "postalCode": "20500", "locality": "Arlington", "addressLines": []string{"1701 Compiler Way"}}}
	for k, v := range entered {
		member[k] = v
	}
	m := c.must("POST", "/v1/members", "", map[string]any{"member": member, "password": "cobol is a fine language", "requestId": "signup-1"})
	name := m["name"].(string)
	tok := c.must("POST", "/v1/auth:signIn", "", map[string]any{"email": "Grace.Hopper@example.com", "password": "cobol is a fine language", "deviceName": "Laptop", "rememberMe": true})["accessToken"].(string)

	c.must("PATCH", "/v1/"+name+"/communicationPreferences", tok, map[string]any{"changes": []any{map[string]any{"channel": "CHANNEL_EMAIL", "topic": "TOPIC_NEWSLETTER", "subscribed": true}}, "policyVersion": "2011-07-01"})
	c.must("PATCH", "/v1/"+name+"/profileVisibility?updateMask=ratings", tok, map[string]any{"ratings": "VISIBILITY_MEMBERS"})
	titles := []string{"the-first-bug", "nanoseconds", "flow-matic"}
	for i, title := range titles {
		c.must("POST", "/v1/"+name+"/viewingEvents?requestId=view-"+title, tok, map[string]any{"titleId": title, "durationSeconds": 600 + i})
	}
	c.must("PUT", "/v1/"+name+"/ratings/nanoseconds", tok, map[string]any{"stars": 5})

	// Export: a fresh sign-in verifies the request at once.
	req := c.must("POST", "/v1/"+name+"/privacyRequests?requestId=export-1", tok, map[string]any{"kind": "REQUEST_KIND_ACCESS"})
	done := c.awaitState(req["name"].(string), tok, "REQUEST_STATE_COMPLETED")
	if len(done["progress"].([]any)) < 4 {
		t.Fatalf("progress = %v", done["progress"])
	}
	dl := c.must("GET", "/v1/"+req["name"].(string)+"/exportDownload", tok, nil)
	resp, err := http.Get(c.base + dl["downloadUri"].(string))
	if err != nil {
		t.Fatal(err)
	}
	archive, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("download: %d %s", resp.StatusCode, archive)
	}
	zr, err := zip.NewReader(bytes.NewReader(archive), int64(len(archive)))
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	files := map[string]bool{}
	for _, f := range zr.File {
		rc, _ := f.Open()
		b, _ := io.ReadAll(rc)
		rc.Close()
		files[f.Name] = true
		all.Write(b)
	}
	for _, want := range []string{"manifest.json", "README.txt", "identity/account.json", "preferences/viewing_history.json", "preferences/ratings.json", "sharing/disclosures.json"} {
		if !files[want] {
			t.Errorf("archive lacks %s (has %v)", want, files)
		}
	}
	for _, v := range append([]string{"Arlington", "1701 Compiler Way", "20500", "Laptop", "newsletter", "VISIBILITY_MEMBERS"}, titles...) {
		entered[v] = v
	}
	for _, v := range entered {
		if !strings.Contains(strings.ToLower(all.String()), strings.ToLower(v)) {
			t.Errorf("the export lacks %q", v)
		}
	}
	// A range request works (resumable downloads).
	rq, _ := http.NewRequest("GET", c.base+dl["downloadUri"].(string), nil)
	rq.Header.Set("Range", "bytes=0-99")
	if resp, err := http.DefaultClient.Do(rq); err != nil || resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("range download: %v %v", resp.StatusCode, err)
	}
	if resp, _ := http.Get(c.base + strings.Replace(dl["downloadUri"].(string), "sig=", "sig=0", 1)); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("tampered link: %d", resp.StatusCode)
	}

	// Erasure filed by an operator on the member's behalf: it must be verified with the
	// emailed code.
	opTok := c.must("POST", "/v1/operators:signIn", "", map[string]any{"email": s.Operator.Email, "password": s.Operator.Password, "totpCode": s.Operator.TOTPCode(time.Now())})["accessToken"].(string)
	er := c.must("POST", "/v1/"+name+"/privacyRequests?requestId=erase-1", opTok, map[string]any{"kind": "REQUEST_KIND_ERASURE", "origin": "REQUEST_ORIGIN_OPERATOR", "jurisdiction": "JURISDICTION_GDPR"})
	receiptToken, _ := er["receiptToken"].(string)
	if receiptToken == "" {
		t.Fatal("no receipt token")
	}
	c.awaitState(er["name"].(string), tok, "REQUEST_STATE_AWAITING_VERIFICATION")
	// GDPR allows one extension, with the member told why.
	if code, m := c.do("POST", "/v1/"+er["name"].(string)+":extend", tok, map[string]any{"reason": "complex request"}); code != http.StatusForbidden {
		t.Fatalf("a member extended their own request: %d %v", code, m)
	}
	ext := c.must("POST", "/v1/"+er["name"].(string)+":extend", opTok, map[string]any{"reason": "records spread over several archives"})
	if ext["extended"] != true {
		t.Fatalf("extension: %v", ext)
	}
	if code, m := c.do("POST", "/v1/"+er["name"].(string)+":extend", opTok, map[string]any{"reason": "records spread over several archives"}); code != http.StatusBadRequest || reasonOf(m) != "ALREADY_EXTENDED" {
		t.Fatalf("second extension: %d %v", code, m)
	}
	mailed(t, dir, "records spread over several archives", "Your data export is ready")
	if code, _ := c.do("POST", "/v1/"+er["name"].(string)+":verify", tok, map[string]any{"code": "000000"}); code != http.StatusBadRequest {
		t.Fatalf("wrong code: %d", code)
	}
	c.must("POST", "/v1/"+er["name"].(string)+":verify", tok, map[string]any{"code": lastCode(t, dir)})
	c.awaitState(er["name"].(string), opTok, "REQUEST_STATE_COMPLETED")
	mailed(t, dir, "Your account is being erased")

	// No trace: sign-in fails, and every route answers as for a member who never existed.
	if code, _ := c.do("POST", "/v1/auth:signIn", "", map[string]any{"email": "grace.hopper@example.com", "password": "cobol is a fine language"}); code != http.StatusUnauthorized {
		t.Fatalf("sign-in after erasure: %d", code)
	}
	ghost := "members/neverexisted0000000000000"
	for _, route := range []string{"", "/sessions", "/viewingEvents", "/ratings", "/consentRecords", "/communicationPreferences", "/adPreferences", "/profileVisibility", "/socialConnections", "/objections", "/disclosures", "/notices"} {
		codeErased, bodyErased := c.do("GET", "/v1/"+name+route, opTok, nil)
		codeGhost, bodyGhost := c.do("GET", "/v1/"+ghost+route, opTok, nil)
		e, _ := json.Marshal(bodyErased)
		g, _ := json.Marshal(bodyGhost)
		if codeErased != codeGhost || strings.ReplaceAll(string(e), name, "X") != strings.ReplaceAll(string(g), ghost, "X") {
			t.Errorf("GET %s differs from an unknown member: %d %s vs %d %s", route, codeErased, e, codeGhost, g)
		}
	}

	// The receipt verifies offline with the published key.
	reqID := er["name"].(string)[strings.LastIndex(er["name"].(string), "/")+1:]
	rc := c.must("POST", "/v1/receipts/"+reqID+":fetch", "", map[string]any{"receiptToken": receiptToken})
	payload := verifyReceipt(t, c, rc)
	for _, v := range []string{"grace", "Hopper", "example.com", "+1202"} {
		if bytes.Contains(payload, []byte(v)) {
			t.Errorf("the receipt contains personal data %q", v)
		}
	}
	var receipt struct{ Systems []struct{ Service string } }
	_ = json.Unmarshal(payload, &receipt)
	if len(receipt.Systems) != 4 { // preferences, sharing, identity, fulfillment (archives)
		t.Fatalf("receipt systems = %s", payload)
	}
	if code, _ := c.do("POST", "/v1/receipts/"+reqID+":fetch", "", map[string]any{"receiptToken": "wrong"}); code != http.StatusNotFound {
		t.Fatalf("receipt with a wrong token: %d", code)
	}
	id := strings.TrimPrefix(name, "members/")
	// The export is still open (its archive timer runs 7 days); replaying the history
	// up to that timer checks every command it issued before.
	// A parent reports a child's account: it is erased without cooling-off or code.
	kid := c.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": "Not Really Eighteen", "email": "kid@example.com", "birthDate": "1999-01-01"}, "password": "another long password"})
	c.must("POST", "/v1/"+kid["name"].(string)+":reportChild", opTok, map[string]any{"reporter": "CHILD_REPORTER_PARENT"})
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, _ := c.do("GET", "/v1/"+kid["name"].(string), opTok, nil)
		_, list := c.do("GET", "/v1/"+kid["name"].(string)+"/privacyRequests", opTok, nil)
		reqs, _ := list["privacyRequests"].([]any)
		if code == http.StatusNotFound && len(reqs) == 1 && reqs[0].(map[string]any)["state"] == "REQUEST_STATE_COMPLETED" && reqs[0].(map[string]any)["kind"] == "REQUEST_KIND_CHILD_ERASURE" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the child's account was not erased: %d %v", code, list)
		}
		time.Sleep(200 * time.Millisecond)
	}
	recordHistories(t, s, map[string]string{"erasure-gdpr-extended-verified.json": "privacy-request/erasure/" + id, "export-until-archive-timer.json": "privacy-request/access/" + id})
}

// recordHistories writes the histories of a member's finished workflows to the
// fulfillment replay test's testdata when LETHE_RECORD_HISTORIES=1, so a change to the
// workflow code that breaks determinism fails the replay test.
func recordHistories(t *testing.T, s *devstack.Stack, workflowIDs map[string]string) {
	t.Helper()
	if os.Getenv("LETHE_RECORD_HISTORIES") != "1" {
		return
	}
	c, err := tclient.Dial(tclient.Options{HostPort: s.TemporalAddress, Namespace: "lethe"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir := filepath.Join("..", "services", "fulfillment", "internal", "request", "testdata")
	os.MkdirAll(dir, 0o755)
	for file, id := range workflowIDs {
		iter := c.GetWorkflowHistory(t.Context(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		h := &historypb.History{}
		for iter.HasNext() {
			ev, err := iter.Next()
			if err != nil {
				t.Fatal(err)
			}
			h.Events = append(h.Events, ev)
		}
		raw, err := protojson.MarshalOptions{Indent: "  "}.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), raw, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("recorded %s (%d events)", file, len(h.Events))
	}
}

// verifyReceipt checks a receipt offline against the key it names among the published
// ones (GET /v1/receipts:keys), and returns its payload.
func verifyReceipt(t *testing.T, c client, rc map[string]any) []byte {
	t.Helper()
	keys := c.must("GET", "/v1/receipts:keys", "", nil)
	payload, _ := base64.StdEncoding.DecodeString(rc["payload"].(string))
	sig, _ := base64.StdEncoding.DecodeString(rc["signature"].(string))
	var named struct {
		KeyID string `json:"key_id"`
	}
	_ = json.Unmarshal(payload, &named)
	if named.KeyID == "" || rc["keyId"] != named.KeyID {
		t.Fatalf("the receipt names key %v, its payload %q", rc["keyId"], named.KeyID)
	}
	for _, k := range keys["keys"].([]any) {
		key := k.(map[string]any)
		if key["keyId"] != named.KeyID {
			continue
		}
		pub, _ := base64.StdEncoding.DecodeString(key["publicKey"].(string))
		if !ed25519.Verify(pub, payload, sig) {
			t.Fatalf("the receipt does not verify with published key %s", named.KeyID)
		}
		return payload
	}
	t.Fatalf("key %s that signed the receipt is not published (%v)", named.KeyID, keys)
	return nil
}
