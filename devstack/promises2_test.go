package devstack_test

import (
	"bytes"
	"encoding/json"
	"io"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"lethe.dev/devstack"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/platform/transport"
)

// doWith is do with extra request headers (Sec-GPC, the device header).
func (c client) doWith(method, path, token string, body any, headers map[string]string) (int, map[string]any) {
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
	for k, v := range headers {
		req.Header.Set(k, v)
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

// items is a JSON list field, empty when the field is absent.
func items(m map[string]any, key string) []any {
	l, _ := m[key].([]any)
	return l
}

// promises2 is one dev stack shared by the steps of TestPolicyPromises2Journey.
type promises2 struct {
	t     *testing.T
	s     *devstack.Stack
	c     client
	sh    sharingv1.SharingServiceClient
	opTok string
}

// TestPolicyPromises2Journey walks the rest of the policies' promises over HTTP against
// the dev stack: Global Privacy Control from a signed-out visitor applied at sign-in.
func TestPolicyPromises2Journey(t *testing.T) {
	dir := t.TempDir()
	s, err := devstack.Start(t.Context(), devstack.Options{DataDir: dir, UIPort: -1, Env: map[string]string{
		"FULFILLMENT_DISABLE_GRACE": "6s", // the grace period before a disabled account is erased
		"FULFILLMENT_COOLING_OFF":   "0s",
	}})
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
	p := &promises2{t: t, s: s, c: c, sh: sharingv1.NewSharingServiceClient(conn)}
	p.opTok = c.must("POST", "/v1/operators:signIn", "", map[string]any{"email": s.Operator.Email, "password": s.Operator.Password, "totpCode": s.Operator.TOTPCode(time.Now())})["accessToken"].(string)

	p.signedOutGPC()
	p.disableAccount()
	p.memberLegalHold()
}

// memberLegalHold: an operator puts a member's data on legal hold (reason, expiry); the
// member's own history and rating deletes are refused and their erasure waits on hold
// until the operator releases it; then both go through.
func (p *promises2) memberLegalHold() {
	t, c := p.t, p.c
	name, tok := p.signUp("Held Harriet", "harriet@example.com")
	ev := c.must("POST", "/v1/"+name+"/viewingEvents?requestId=view-held", tok, map[string]any{"titleId": "tt0068646", "durationSeconds": 600})
	c.must("PUT", "/v1/"+name+"/ratings/tt0068646", tok, map[string]any{"stars": 5})
	hold := c.must("POST", "/v1/"+name+"/legalHold:set", p.opTok, map[string]any{"reason": "case 2026-17 preservation order",
		"expireTime": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
	if hold["active"] != true || hold["setBy"] == "" {
		t.Fatalf("hold: %v", hold)
	}
	if code, m := c.do("POST", "/v1/"+name+"/legalHold:set", p.opTok, map[string]any{"reason": "no expiry"}); code != http.StatusBadRequest {
		t.Fatalf("hold without expiry: %d %v", code, m)
	}
	for _, del := range []string{"/v1/" + ev["name"].(string), "/v1/" + name + "/ratings/tt0068646"} {
		if code, m := c.do("DELETE", del, tok, nil); code != http.StatusBadRequest || reasonOf(m) != "LEGAL_HOLD" {
			t.Fatalf("DELETE %s under a legal hold: %d %v", del, code, m)
		}
	}
	if code, m := c.do("POST", "/v1/"+name+"/viewingEvents:clear", tok, map[string]any{}); code != http.StatusBadRequest || reasonOf(m) != "LEGAL_HOLD" {
		t.Fatalf("clearing history under a legal hold: %d %v", code, m)
	}
	er := c.must("POST", "/v1/"+name+"/privacyRequests?requestId=erase-held", tok, map[string]any{"kind": "REQUEST_KIND_ERASURE"})
	c.awaitState(er["name"].(string), p.opTok, "REQUEST_STATE_ON_HOLD")
	time.Sleep(time.Second)
	if m := c.must("GET", "/v1/"+er["name"].(string), p.opTok, nil); m["state"] != "REQUEST_STATE_ON_HOLD" {
		t.Fatalf("erasure under a legal hold: %v", m)
	}
	if h := c.must("GET", "/v1/"+name+"/legalHold", p.opTok, nil); h["active"] != true {
		t.Fatalf("hold while active: %v", h)
	}
	// The audit log names the hold.
	audited := false
	for _, e := range items(c.must("GET", "/v1/auditLog", p.opTok, nil), "auditEvents") {
		audited = audited || strings.Contains(fmt.Sprint(e), "SetMemberLegalHold")
	}
	if !audited {
		t.Fatal("setting the legal hold is not in the audit log")
	}
	rel := c.must("POST", "/v1/"+name+"/legalHold:release", p.opTok, map[string]any{"reason": "case closed"})
	if rel["active"] == true || rel["releaseTime"] == nil {
		t.Fatalf("released hold: %v", rel)
	}
	c.awaitState(er["name"].(string), p.opTok, "REQUEST_STATE_COMPLETED")
}

// signUp creates a member and signs them in; it returns the member's name and token.
func (p *promises2) signUp(fullName, email string) (string, string) {
	p.t.Helper()
	m := p.c.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": fullName, "email": email, "birthDate": "1980-01-01"},
		"password": "a long enough password", "requestId": "signup-" + email})
	tok := p.c.must("POST", "/v1/auth:signIn", "", map[string]any{"email": email, "password": "a long enough password"})["accessToken"].(string)
	return m["name"].(string), tok
}

// disableAccount: disabling an account erases it when the grace period (6 s here) ends,
// unless the member signs in again with reactivate before.
func (p *promises2) disableAccount() {
	t, c := p.t, p.c
	gone, goneTok := p.signUp("Disabled Dora", "dora@example.com")
	back, backTok := p.signUp("Returning Rita", "rita@example.com")
	c.must("POST", "/v1/"+gone+":disable", goneTok, map[string]any{"requestId": "disable-dora"})
	c.must("POST", "/v1/"+back+":disable", backTok, map[string]any{"requestId": "disable-rita"})
	if code, _ := c.do("POST", "/v1/auth:signIn", "", map[string]any{"email": "rita@example.com", "password": "a long enough password"}); code != http.StatusForbidden {
		t.Fatalf("a disabled account signed in without reactivate: %d", code)
	}
	c.must("POST", "/v1/auth:signIn", "", map[string]any{"email": "rita@example.com", "password": "a long enough password", "reactivate": true})

	// Dora's erasure is filed when the grace period ends, and runs to the end.
	var erasure string
	deadline := time.Now().Add(90 * time.Second)
	for erasure == "" {
		for _, r := range items(c.must("GET", "/v1/"+gone+"/privacyRequests", p.opTok, nil), "privacyRequests") {
			if r := r.(map[string]any); r["origin"] == "REQUEST_ORIGIN_ACCOUNT_DISABLED" && r["kind"] == "REQUEST_KIND_ERASURE" {
				erasure = r["name"].(string)
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no erasure filed for the disabled account")
		}
		time.Sleep(300 * time.Millisecond)
	}
	c.awaitState(erasure, p.opTok, "REQUEST_STATE_COMPLETED")
	if code, m := c.do("GET", "/v1/"+gone, p.opTok, nil); code != http.StatusNotFound && m["state"] != "MEMBER_STATE_ERASED" {
		t.Fatalf("disabled account after its erasure: %d %v", code, m)
	}
	// Rita re-enabled in time: no erasure, the account is active.
	time.Sleep(2 * time.Second)
	for _, r := range items(c.must("GET", "/v1/"+back+"/privacyRequests", p.opTok, nil), "privacyRequests") {
		t.Fatalf("re-enabled account got a request: %v", r)
	}
	if m := c.must("GET", "/v1/"+back, p.opTok, nil); m["state"] != "MEMBER_STATE_ACTIVE" {
		t.Fatalf("re-enabled account: %v", m)
	}
}

// signedOutGPC: a visitor's browser sends Sec-GPC: 1 while signed out (signing up); the
// gateway records it against the device cookie it hands out; when the member signs in on
// that device, the opt-out and its consent record are theirs and an advertiser is refused.
func (p *promises2) signedOutGPC() {
	t, c := p.t, p.c
	c.must("POST", "/v1/partners?partnerId=adnet2", p.opTok, map[string]any{"displayName": "Ad Network Two", "kind": "PARTNER_KIND_ADVERTISER",
		"purposes": []string{"ads"}, "dataCategories": []string{"user.behavior.media_consumption"}, "agreementRef": "ADV-2"})

	// Signed out, with GPC: the sign-up answers with a device cookie.
	req, _ := http.NewRequest("POST", c.base+"/v1/members", bytes.NewReader([]byte(`{"member":{"fullName":"Grace Hopper","email":"grace@example.com","birthDate":"1976-12-09"},"password":"cobol compiler nanosecond","requestId":"signup-grace"}`)))
	req.Header.Set("Sec-GPC", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("sign-up: %d %v", resp.StatusCode, m)
	}
	name := m["name"].(string)
	var device string
	for _, ck := range resp.Cookies() {
		if ck.Name == "lethe_device" {
			device = ck.Value
		}
	}
	if device == "" {
		t.Fatal("no device cookie after a signed-out request with Sec-GPC")
	}
	// A sign-in on another device carries no signal: nothing changes.
	other := c.must("POST", "/v1/auth:signIn", "", map[string]any{"email": "grace@example.com", "password": "cobol compiler nanosecond"})["accessToken"].(string)
	if ads := c.must("GET", "/v1/"+name+"/adPreferences", other, nil); ads["saleSharingOptOut"] == true {
		t.Fatalf("opted out without a signal: %v", ads)
	}
	// Signing in on the device (cookie, no Sec-GPC this time) applies the signal.
	code, res := c.doWith("POST", "/v1/auth:signIn", "", map[string]any{"email": "grace@example.com", "password": "cobol compiler nanosecond"},
		map[string]string{"Cookie": "lethe_device=" + device})
	if code != 200 {
		t.Fatalf("sign-in on the device: %d %v", code, res)
	}
	tok := res["accessToken"].(string)
	ads := c.must("GET", "/v1/"+name+"/adPreferences", tok, nil)
	if ads["saleSharingOptOut"] != true || ads["personalizedAds"] == true || ads["gpcSignalTime"] == nil {
		t.Fatalf("ad preferences after signing in on the GPC device: %v", ads)
	}
	recs := c.must("GET", "/v1/"+name+"/consentRecords", tok, nil)["consentRecords"].([]any)
	found := false
	for _, r := range recs {
		r := r.(map[string]any)
		found = found || (r["setting"] == "ads/sale_sharing" && r["source"] == "CONSENT_SOURCE_GLOBAL_PRIVACY_CONTROL")
	}
	if !found {
		t.Fatalf("no GPC consent record: %v", recs)
	}
	res2, err := p.sh.AuthorizeDisclosure(t.Context(), &sharingv1.AuthorizeDisclosureRequest{Member: name, Partner: "partners/adnet2", Purpose: "ads",
		DataCategories: []string{"user.behavior.media_consumption"}, RequestId: "gpc-device-1"})
	if err != nil {
		t.Fatal(err)
	}
	if res2.GetAllowed() || res2.GetReason() != "GLOBAL_PRIVACY_CONTROL" {
		t.Fatalf("advertising disclosure after signed-out GPC: %v %s", res2.GetAllowed(), res2.GetReason())
	}
}
