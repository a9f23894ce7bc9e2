package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"lethe.dev/devstack"
	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
)

// gw talks JSON to the dev stack's gateway, as a member's browser would: the tests use it
// to set up what the CLI then operates on.
type gw struct {
	t    *testing.T
	base string
}

func (c gw) call(method, path, token string, body any) map[string]any {
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
	if resp.StatusCode != 200 {
		c.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}

// cli runs one lethectl command line and returns its output.
func cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(t.Context(), args, &out)
	return out.String(), err
}

func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := cli(t, args...)
	if err != nil {
		t.Fatalf("lethectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestLethectlOnTheDevStack runs lethectl against a real dev stack over the gateway:
// login with the bootstrap operator (token kept in a 0600 file), the queue listed with
// filters, a request shown with its timeline, extended, held and released with reasons
// that the audit log records under the operator's name, the partner registry, the
// yearly statistics — and the receipt of a real erasure verified offline, accepted as
// fetched and rejected with one byte changed.
func TestLethectlOnTheDevStack(t *testing.T) {
	dir := t.TempDir()
	s, err := devstack.Start(t.Context(), devstack.Options{DataDir: dir, UIPort: -1, Env: map[string]string{"FULFILLMENT_COOLING_OFF": "0s"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	base := "http://" + s.Addresses["gateway"]
	c := gw{t, base}
	cfg := t.TempDir()
	t.Setenv("LETHECTL_CONFIG_DIR", cfg)
	t.Setenv("LETHECTL_TOKEN", "")
	t.Setenv("LETHECTL_GATEWAY", "")

	// Without a session the gateway refuses operator commands.
	if _, err := cli(t, "--gateway", base, "requests", "list"); err == nil || !strings.Contains(err.Error(), "Unauthenticated") {
		t.Fatalf("requests list without a token: %v", err)
	}
	out := mustCLI(t, "--gateway", base, "login", "--credentials", s.OperatorFile)
	if !strings.Contains(out, "signed in to "+base) {
		t.Fatalf("login: %s", out)
	}
	info, err := os.Stat(filepath.Join(cfg, "lethectl-session.json"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("session file: %v %v", info, err)
	}
	// An expired session is not sent, and the error says so.
	live, _ := loadSession()
	stale := live
	stale.ExpireTime = time.Now().Add(-time.Minute)
	saveSession(stale)
	if _, err := cli(t, "requests", "list"); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("an expired session: %v", err)
	}
	saveSession(live)

	// Two members: one asks for an export (completes), one for an erasure filed under
	// GDPR (it completes too; its receipt is verified below), and a third's erasure that
	// the operator acts on while it waits for the member's emailed code.
	member := func(email string) (string, string) {
		m := c.call("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": "Member " + email, "email": email, "birthDate": "1990-01-01"}, "password": "a long enough password"})
		tok := c.call("POST", "/v1/auth:signIn", "", map[string]any{"email": email, "password": "a long enough password"})["accessToken"].(string)
		return m["name"].(string), tok
	}
	ada, adaTok := member("ada@example.com")
	exp := c.call("POST", "/v1/"+ada+"/privacyRequests?requestId=export-1", adaTok, map[string]any{"kind": "REQUEST_KIND_ACCESS"})["name"].(string)
	bob, bobTok := member("bob@example.com")
	er := c.call("POST", "/v1/"+bob+"/privacyRequests?requestId=erase-1", bobTok, map[string]any{"kind": "REQUEST_KIND_ERASURE", "jurisdiction": "JURISDICTION_GDPR"})
	erName, receiptToken := er["name"].(string), er["receiptToken"].(string)
	cyd, _ := member("cyd@example.com")
	opTok := loadToken(t)
	held := c.call("POST", "/v1/"+cyd+"/privacyRequests?requestId=erase-op", opTok, map[string]any{"kind": "REQUEST_KIND_ERASURE", "origin": "REQUEST_ORIGIN_OPERATOR", "jurisdiction": "JURISDICTION_GDPR"})["name"].(string)

	// The queue: every request by due date; filters by state and kind; JSON for scripts.
	out = mustCLI(t, "requests", "list")
	for _, n := range []string{exp, erName, held, "NAME", "STATE", "DUE"} {
		if !strings.Contains(out, n) {
			t.Fatalf("requests list lacks %s:\n%s", n, out)
		}
	}
	awaitCLI(t, func() bool {
		out := mustCLI(t, "requests", "list", "--state", "awaiting_verification", "-o", "json")
		return strings.Contains(out, held) && !strings.Contains(out, exp)
	}, "the operator-filed erasure awaiting verification")
	out = mustCLI(t, "requests", "list", "--kind", "access", "--all")
	if !strings.Contains(out, exp) || strings.Contains(out, erName) {
		t.Fatalf("--kind access:\n%s", out)
	}
	if _, err := cli(t, "requests", "list", "--at-risk", "--overdue"); err == nil {
		t.Fatal("two filters were accepted")
	}
	out = mustCLI(t, "requests", "list", "--page-size", "1")
	if !strings.Contains(out, "--page-token ") {
		t.Fatalf("one page of one: %s", out)
	}

	// Operator actions, each with a reason, land in the audit log under the operator.
	mustCLI(t, "requests", "extend", held, "--reason", "records spread over several archives")
	mustCLI(t, "requests", "hold", held, "--reason", "litigation hold LH-9")
	// (A hold pauses the workflow once it is verified; the list shows the hold now.)
	out = mustCLI(t, "requests", "list", "--open")
	if !strings.Contains(out, held) || !strings.Contains(out, "litigation hold LH-9") {
		t.Fatalf("held request listed without its hold:\n%s", out)
	}
	mustCLI(t, "requests", "release", held, "--reason", "LH-9 closed")
	if _, err := cli(t, "requests", "hold", held); err == nil {
		t.Fatal("a hold without a reason was sent")
	}
	if _, err := cli(t, "requests", "extend", held, "--reason", "a second extension attempt"); err == nil || !strings.Contains(err.Error(), "ALREADY_EXTENDED") {
		t.Fatalf("second extension: %v", err)
	}
	// The service credential (the stack put it in LETHE_SERVICE_TOKEN) reads directly
	// over gRPC, but takes no action on a member's request: no operator to audit.
	if out := mustCLI(t, "--fulfillment", s.Addresses["fulfillment"], "requests", "list", "--open"); !strings.Contains(out, held) {
		t.Fatalf("requests list --direct:\n%s", out)
	}
	if _, err := cli(t, "--fulfillment", s.Addresses["fulfillment"], "requests", "hold", held, "--reason", "litigation hold LH-10"); err == nil || !strings.Contains(err.Error(), "audit log") {
		t.Fatalf("an unaudited hold over the service credential: %v", err)
	}

	out = mustCLI(t, "requests", "show", held)
	for _, want := range []string{"legal due date", "yes: records spread over several archives", "due-date rule", "due before extension", "workflow", "received",
		"extension Due date extended", "hold Legal hold set", "litigation hold LH-9", "release Legal hold released", "LH-9 closed", "operators/"} {
		if !strings.Contains(out, want) {
			t.Errorf("requests show lacks %q:\n%s", want, out)
		}
	}
	var shown struct {
		PrivacyRequest struct{ Name, State string }
		AuditLog       struct {
			AuditEvents []struct{ Actor, Action, Reason, Target string }
		}
		Timeline []event
		Detail   struct {
			WorkflowID string `json:"workflowId"`
		} `json:"requestTimeline"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "requests", "show", "/v1/"+held, "-o", "json")), &shown); err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, e := range shown.AuditLog.AuditEvents {
		if e.Target == held && strings.HasPrefix(e.Actor, "operators/") {
			reasons[e.Action[strings.LastIndex(e.Action, "/")+1:]] = e.Reason
		}
	}
	if reasons["ExtendPrivacyRequest"] != "records spread over several archives" || reasons["SetLegalHold"] != "litigation hold LH-9" || reasons["ReleaseLegalHold"] != "LH-9 closed" {
		t.Fatalf("audit log of %s: %+v", held, shown.AuditLog)
	}
	if shown.PrivacyRequest.Name != held || len(shown.Timeline) < 4 || !sortedByTime(shown.Timeline) || shown.Detail.WorkflowID == "" {
		t.Fatalf("show -o json: %+v", shown)
	}

	// The export's timeline has its workflow steps with times and counts.
	awaitCLI(t, func() bool { return strings.Contains(mustCLI(t, "requests", "show", exp), "completed") }, "the export to complete")
	if out := mustCLI(t, "requests", "show", exp); !strings.Contains(out, "step export.identity") || !strings.Contains(out, "records") {
		t.Fatalf("export timeline without its steps:\n%s", out)
	}

	// Partners.
	mustCLI(t, "partners", "create", "acme-billing", "--display-name", "Acme Billing Ltd", "--kind", "processor", "--purposes", "payment_processing",
		"--categories", "user.financial", "--agreement", "DPA-1", "--webhook-url", "http://127.0.0.1:1/erasure", "--webhook-secret", strings.Repeat("s", 32), "--ack-deadline", "72h")
	mustCLI(t, "partners", "update", "acme-billing", "--purposes", "payment_processing,fraud_prevention")
	out = mustCLI(t, "partners", "list")
	if !strings.Contains(out, "partners/acme-billing") || !strings.Contains(out, "payment_processing,fraud_prevention") || !strings.Contains(out, "72h0m0s") || strings.Contains(out, strings.Repeat("s", 32)) {
		t.Fatalf("partners list:\n%s", out)
	}

	// Statistics: the year's requests per kind and the operator actions just taken.
	out = mustCLI(t, "stats", time.Now().UTC().Format("2006"))
	if !strings.Contains(out, "RECEIVED") || !strings.Contains(out, "lethe.fulfillment.v1.FulfillmentService/SetLegalHold") {
		t.Fatalf("stats:\n%s", out)
	}

	// The erasure completes; its receipt verifies offline, and one changed byte fails it.
	awaitCLI(t, func() bool {
		return strings.Contains(mustCLI(t, "requests", "list", "--state", "completed", "--all"), erName)
	}, "the erasure to complete")
	id := erName[strings.LastIndex(erName, "/")+1:]
	rc := c.call("POST", "/v1/receipts/"+id+":fetch", "", map[string]any{"receiptToken": receiptToken})
	raw, _ := json.Marshal(rc)
	receipt := filepath.Join(t.TempDir(), "receipt.json")
	os.WriteFile(receipt, raw, 0o600)
	keys := filepath.Join(t.TempDir(), "keys.json")
	kr, _ := json.Marshal(c.call("GET", "/v1/receipts:keys", "", nil))
	os.WriteFile(keys, kr, 0o600)
	t.Setenv("LETHECTL_CONFIG_DIR", t.TempDir()) // no account: a member or a regulator

	for _, how := range [][]string{{"--keys", keys}, {"--keys-url", base + "/v1/receipts:keys"}, {"--gateway", base}} {
		out := mustCLI(t, append([]string{"receipt", "verify", receipt}, how...)...)
		if !strings.Contains(out, "receipt valid") || !strings.Contains(out, id) || !strings.Contains(out, "identity") {
			t.Fatalf("verify %v:\n%s", how, out)
		}
	}
	payload, _ := base64.StdEncoding.DecodeString(rc["payload"].(string))
	for i, mutate := range []func(m map[string]any){
		func(m map[string]any) { // one byte of the payload: a digit of a count, a letter of a name
			p := bytes.Clone(payload)
			p[bytes.Index(p, []byte(`"request_id":"`))+len(`"request_id":"`)] ^= 0x01
			m["payload"] = base64.StdEncoding.EncodeToString(p)
		},
		func(m map[string]any) { // one byte of the signature
			sig, _ := base64.StdEncoding.DecodeString(rc["signature"].(string))
			sig[10] ^= 0x80
			m["signature"] = base64.StdEncoding.EncodeToString(sig)
		},
	} {
		m := map[string]any{}
		for k, v := range rc {
			m[k] = v
		}
		mutate(m)
		bad, _ := json.Marshal(m)
		if len(bad) != len(raw) {
			t.Fatalf("case %d changed the file's length", i)
		}
		diff := 0
		for j := range bad {
			if bad[j] != raw[j] {
				diff++
			}
		}
		// One byte changed in the decoded receipt; in its base64 file at most two.
		if diff == 0 || diff > 2 {
			t.Fatalf("case %d: %d bytes differ", i, diff)
		}
		tampered := filepath.Join(t.TempDir(), "receipt.json")
		os.WriteFile(tampered, bad, 0o600)
		_, err := cli(t, "receipt", "verify", tampered, "--keys", keys)
		var invalid *receiptInvalid
		if !errors.As(err, &invalid) || exitCode(err) != 1 {
			t.Fatalf("case %d: a changed receipt: %v", i, err)
		}
	}
	// Every byte of the file, changed one at a time (two ways), is refused.
	keyset := &fulfillmentv1.ReceiptKeys{}
	if err := protojson.Unmarshal(kr, keyset); err != nil {
		t.Fatal(err)
	}
	if r, err := parseReceipt(raw); err != nil {
		t.Fatalf("the fetched receipt: %v", err)
	} else if _, err := verifyReceipt(r, keyset); err != nil {
		t.Fatalf("the fetched receipt: %v", err)
	}
	for i := range raw {
		for _, mask := range []byte{0x01, 0x20} {
			b := bytes.Clone(raw)
			b[i] ^= mask
			if r, err := parseReceipt(b); err == nil {
				if _, err := verifyReceipt(r, keyset); err == nil {
					t.Fatalf("byte %d changed from %q to %q and the receipt still verifies", i, raw[i], b[i])
				}
			}
		}
	}
	// A byte changed in the file through the CLI: exit status 1.
	flipped := bytes.Clone(raw)
	at := bytes.Index(flipped, []byte(`"payload":"`)) + len(`"payload":"`) + 20
	flipped[at] = map[bool]byte{true: 'B', false: 'A'}[flipped[at] == 'A']
	bad := filepath.Join(t.TempDir(), "receipt.json")
	os.WriteFile(bad, flipped, 0o600)
	if _, err := cli(t, "receipt", "verify", bad, "--keys", keys); exitCode(err) != 1 {
		t.Fatalf("a receipt file with one changed byte: %v", err)
	}
	// Keys of another deployment (same key id, another key) do not verify it.
	var published struct{ Keys []map[string]any }
	_ = json.Unmarshal(kr, &published)
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, k := range published.Keys {
		k["publicKey"] = base64.StdEncoding.EncodeToString(otherPub)
	}
	ok2, _ := json.Marshal(published)
	other := filepath.Join(t.TempDir(), "keys.json")
	os.WriteFile(other, ok2, 0o600)
	if _, err := cli(t, "receipt", "verify", receipt, "--keys", other); exitCode(err) != 1 {
		t.Fatalf("the receipt verified with another deployment's key: %v", err)
	}
}

func loadToken(t *testing.T) string {
	t.Helper()
	s, err := loadSession()
	if err != nil {
		t.Fatal(err)
	}
	return s.AccessToken
}

func sortedByTime(tl []event) bool {
	for i := 1; i < len(tl); i++ {
		if tl[i].Time.Before(tl[i-1].Time) {
			return false
		}
	}
	return true
}

// awaitCLI polls until ok, for at most 90 seconds.
func awaitCLI(t *testing.T, ok func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
