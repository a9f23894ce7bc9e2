package devstack_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"lethe.dev/devstack"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/platform/transport"
)

// drpAgent is an authorized agent speaking the Data Rights Protocol v1.0 to the dev
// stack: Ed25519 signatures prepended to the JSON (libsodium's combined mode), base64,
// text/plain.
type drpAgent struct {
	t        *testing.T
	apiBase  string
	id       string
	business string
	key      ed25519.PrivateKey
	token    string
}

func newAgent(t *testing.T, apiBase, id string) *drpAgent {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &drpAgent{t: t, apiBase: apiBase, id: id, business: "LETHE", key: key}
}

func (a *drpAgent) pub() []byte { return a.key.Public().(ed25519.PublicKey) }

// seal signs msg with key: base64(signature ‖ msg).
func seal(key ed25519.PrivateKey, msg []byte) string {
	return base64.StdEncoding.EncodeToString(append(ed25519.Sign(key, msg), msg...))
}

// claims is a request envelope valid now, with fields added or overridden.
func (a *drpAgent) claims(extra map[string]any) []byte {
	now := time.Now().UTC()
	m := map[string]any{"agent-id": a.id, "business-id": a.business, "issued-at": now.Add(-time.Second).Format(time.RFC3339Nano),
		"expires-at": now.Add(5 * time.Minute).Format(time.RFC3339Nano), "drp.version": "1.0"}
	for k, v := range extra {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	raw, _ := json.Marshal(m)
	return raw
}

func (a *drpAgent) signed(extra map[string]any) string { return seal(a.key, a.claims(extra)) }

func (a *drpAgent) call(method, path, token, body string) (int, []byte) {
	a.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, a.apiBase+path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "text/plain")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, raw
}

func (a *drpAgent) callJSON(method, path, body string) (int, map[string]any) {
	a.t.Helper()
	code, raw := a.call(method, path, a.token, body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		a.t.Fatalf("%s %s: %d, body is not JSON: %q", method, path, code, raw)
	}
	return code, m
}

// submit files a data rights request and returns its Status object.
func (a *drpAgent) submit(extra map[string]any) map[string]any {
	a.t.Helper()
	code, st := a.callJSON("POST", "/v1/data-rights-request", a.signed(extra))
	if code != 200 {
		a.t.Fatalf("data-rights-request: %d %v", code, st)
	}
	return st
}

func (a *drpAgent) await(id, status string) map[string]any {
	a.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		code, st := a.callJSON("GET", "/v1/data-rights-request/"+id, "")
		if code == 200 && st["status"] == status {
			return st
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("request %s: %d %v, want status %s", id, code, st, status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// callbacks is the agent's status_callback endpoint on loopback.
type callbacks struct {
	mu  sync.Mutex
	got map[string][]string // request id → "status" or "status/reason", in order
	url string
}

func startCallbacks(t *testing.T) *callbacks {
	cb := &callbacks{got: map[string][]string{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var st map[string]any
		if err := json.NewDecoder(r.Body).Decode(&st); err != nil || r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(400)
			return
		}
		s, _ := st["status"].(string)
		if reason, _ := st["reason"].(string); reason != "" {
			s += "/" + reason
		}
		cb.mu.Lock()
		cb.got[st["request_id"].(string)] = append(cb.got[st["request_id"].(string)], s)
		cb.mu.Unlock()
	})}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	cb.url = "http://" + lis.Addr().String() + "/drp/status"
	return cb
}

// await waits until the callbacks for id are exactly want.
func (cb *callbacks) await(t *testing.T, id string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		cb.mu.Lock()
		got := append([]string(nil), cb.got[id]...)
		cb.mu.Unlock()
		if strings.Join(got, ",") == strings.Join(want, ",") {
			return
		}
		if time.Now().After(deadline) || len(got) > len(want) {
			t.Fatalf("callbacks for %s = %v, want %v", id, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDataRightsProtocol drives every DRP v1.0 endpoint on the dev stack as an
// authorized agent would: operators register agents, pair-wise key setup, the
// validation chain in the protocol's order, sale choices, a CCPA deletion to fulfilled,
// member verification with an access request to its results, revoke, expiry, replay,
// and status callbacks on loopback.
func TestDataRightsProtocol(t *testing.T) {
	eachEngine(t, func(t *testing.T, env map[string]string) { dataRightsProtocol(t, env) })
}

func dataRightsProtocol(t *testing.T, env map[string]string) {
	dir := t.TempDir()
	env["FULFILLMENT_COOLING_OFF"], env["DRP_CALLBACK_POLL"], env["FULFILLMENT_VERIFICATION_WINDOW"] = "0s", "500ms", "12s"
	s, err := devstack.Start(t.Context(), devstack.Options{DataDir: dir, UIPort: -1, Env: env})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	gw := "http://" + s.Addresses["gateway"]
	c := client{t, gw}
	apiBase := gw + "/drp"
	members := map[string]string{}
	tokens := map[string]string{}
	for _, who := range []string{"ada", "bob", "cy", "dan", "eve"} {
		m := c.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": who + " Tester", "email": who + "@example.com", "birthDate": "1990-01-01"}, "password": "a long enough password"})
		members[who] = m["name"].(string)
		tokens[who] = c.must("POST", "/v1/auth:signIn", "", map[string]any{"email": who + "@example.com", "password": "a long enough password"})["accessToken"].(string)
	}

	// Operators register agents over the API; members cannot.
	opTok := c.must("POST", "/v1/operators:signIn", "", map[string]any{"email": s.Operator.Email, "password": s.Operator.Password, "totpCode": s.Operator.TOTPCode(time.Now())})["accessToken"].(string)
	agent := newAgent(t, apiBase, "PERMISSION_SLIP")
	other := newAgent(t, apiBase, "OTHER_AGENT")
	for _, a := range []*drpAgent{agent, other} {
		body := map[string]any{"displayName": a.id, "verifyKey": base64.StdEncoding.EncodeToString(a.pub()), "contact": "drp@agent.example"}
		if code, _ := c.do("POST", "/v1/authorizedAgents?authorizedAgentId="+a.id, tokens["ada"], body); code != 403 {
			t.Fatalf("a member registering an agent: %d, want 403", code)
		}
		c.must("POST", "/v1/authorizedAgents?authorizedAgentId="+a.id, opTok, body)
	}
	if got := c.must("GET", "/v1/authorizedAgents", opTok, nil)["authorizedAgents"].([]any); len(got) != 2 {
		t.Fatalf("agents = %v", got)
	}

	t.Run("pair-wise key setup", func(t *testing.T) {
		stranger := newAgent(t, apiBase, "UNREGISTERED")
		forged := *agent
		_, forged.key, _ = ed25519.GenerateKey(rand.Reader)
		for _, tc := range []struct {
			name, path, body string
		}{
			{"unregistered agent", "/v1/agent/UNREGISTERED", stranger.signed(nil)},
			{"unsigned", "/v1/agent/" + agent.id, string(agent.claims(nil))},
			{"mis-signed", "/v1/agent/" + agent.id, forged.signed(nil)},
			{"path id is not the body's", "/v1/agent/" + agent.id, agent.signed(map[string]any{"agent-id": "OTHER_AGENT"})},
			{"wrong business", "/v1/agent/" + agent.id, agent.signed(map[string]any{"business-id": "ACME"})},
			{"not yet valid", "/v1/agent/" + agent.id, agent.signed(map[string]any{"issued-at": time.Now().Add(time.Hour).Format(time.RFC3339)})},
			{"expired", "/v1/agent/" + agent.id, agent.signed(map[string]any{"expires-at": time.Now().Add(-time.Minute).Format(time.RFC3339)})},
			{"wrong version", "/v1/agent/" + agent.id, agent.signed(map[string]any{"drp.version": "0.9"})},
		} {
			if code, raw := agent.call("POST", tc.path, "", tc.body); code != 403 || len(raw) != 0 {
				t.Errorf("%s: %d %q, want 403 with an empty body", tc.name, code, raw)
			}
		}
		body := agent.signed(nil)
		code, raw := agent.call("POST", "/v1/agent/"+agent.id, "", body)
		var res map[string]string
		if code != 200 || json.Unmarshal(raw, &res) != nil || res["agent-id"] != agent.id || len(res["token"]) < 32 {
			t.Fatalf("key setup: %d %s", code, raw)
		}
		agent.token = res["token"]
		if code, raw := agent.call("POST", "/v1/agent/"+agent.id, "", body); code != 403 || len(raw) != 0 {
			t.Errorf("replayed key setup: %d %q, want 403", code, raw)
		}
		_, raw = other.call("POST", "/v1/agent/"+other.id, "", other.signed(nil))
		_ = json.Unmarshal(raw, &res)
		other.token = res["token"]

		if code, raw := agent.call("GET", "/v1/agent/"+agent.id, agent.token, ""); code != 200 || string(raw) != "{}" {
			t.Errorf("agent information: %d %s", code, raw)
		}
		if code, _ := agent.call("GET", "/v1/agent/"+agent.id, other.token, ""); code != 403 {
			t.Errorf("another agent's token: %d, want 403", code)
		}
		if code, _ := agent.call("GET", "/v1/agent/"+agent.id, "", ""); code != 403 {
			t.Errorf("no token: %d, want 403", code)
		}
	})
	if agent.token == "" {
		t.FailNow()
	}

	t.Run("validation in the protocol's order", func(t *testing.T) {
		forged := *agent
		_, forged.key, _ = ed25519.GenerateKey(rand.Reader)
		past := time.Now().Add(-time.Minute).Format(time.RFC3339)
		future := time.Now().Add(time.Hour).Format(time.RFC3339)
		ada := map[string]any{"exercise": "sale:opt-out", "email": "ada@example.com", "email_verified": true}
		with := func(kv ...any) map[string]any {
			m := map[string]any{}
			for k, v := range ada {
				m[k] = v
			}
			for i := 0; i < len(kv); i += 2 {
				m[kv[i].(string)] = kv[i+1]
			}
			return m
		}
		// Each body fails at its step and at every later one, so the answer shows which
		// check ran first.
		for _, tc := range []struct {
			name, token, body, message string
			fatal                      bool
		}{
			{"no bearer token", "", agent.signed(with()), "bearer token", false},
			{"unsigned (plain JSON)", agent.token, string(agent.claims(with("business-id", "ACME"))), "not base64", true},
			{"unsigned (base64 without signature)", agent.token, base64.StdEncoding.EncodeToString(agent.claims(with("business-id", "ACME"))), "signature", true},
			{"mis-signed", agent.token, forged.signed(with("agent-id", "OTHER_AGENT", "business-id", "ACME", "expires-at", past)), "signature", true},
			{"signed by another agent than the token's", other.token, agent.signed(with()), "signature", true},
			{"wrong agent", agent.token, agent.signed(with("agent-id", "OTHER_AGENT", "business-id", "ACME", "expires-at", past)), "agent-id", true},
			{"wrong business", agent.token, agent.signed(with("business-id", "ACME", "issued-at", future, "expires-at", past)), "business-id", true},
			{"not yet valid", agent.token, agent.signed(with("issued-at", future, "expires-at", past)), "not valid yet", false},
			{"expired", agent.token, agent.signed(with("expires-at", past)), "expired", true},
		} {
			var code int
			var m map[string]any
			if tc.token == agent.token {
				code, m = agent.callJSON("POST", "/v1/data-rights-request", tc.body)
			} else {
				req, _ := http.NewRequest("POST", apiBase+"/v1/data-rights-request", strings.NewReader(tc.body))
				if tc.token != "" {
					req.Header.Set("Authorization", "Bearer "+tc.token)
				}
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := io.ReadAll(res.Body)
				res.Body.Close()
				code, m = res.StatusCode, nil
				_ = json.Unmarshal(raw, &m)
			}
			msg, _ := m["message"].(string)
			fatal, _ := m["fatal"].(bool)
			if code != 403 || m["code"] != "403" || !strings.Contains(msg, tc.message) || fatal != tc.fatal {
				t.Errorf("%s: %d %v, want 403 with a message about %q (fatal %v)", tc.name, code, m, tc.message, tc.fatal)
			}
		}
		if code, m := agent.callJSON("POST", "/v1/data-rights-request", agent.signed(with("exercise", "access:categories"))); code != 400 || m["code"] != "400" || m["fatal"] != true {
			t.Errorf("unsupported exercise: %d %v, want 400", code, m)
		}
	})

	t.Run("sale opt-out and opt-in with replay protection", func(t *testing.T) {
		// An advertiser ada allowed: data flows to it until the agent opts her out.
		conn, err := transport.FromEnv().Dial(s.Addresses["sharing"])
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		sh := sharingv1.NewSharingServiceClient(conn)
		c.must("POST", "/v1/partners?partnerId=adnet", opTok, map[string]any{"displayName": "Ad Network Inc", "kind": "PARTNER_KIND_ADVERTISER",
			"purposes": []string{"ads"}, "dataCategories": []string{"user.behavior.media_consumption"}, "agreementRef": "ADV-1"})
		c.must("POST", "/v1/partners/adnet/purposes?purposeId=ads", opTok, map[string]any{"description": "Ads chosen from what you watch",
			"dataCategories": []string{"user.behavior.media_consumption"}, "legalBasis": "consent", "noticePeriod": "1s"})
		c.must("POST", "/v1/partners/adnet/purposes/ads:notifyMembers", opTok, map[string]any{"members": []string{members["ada"]}})
		c.must("PATCH", "/v1/"+members["ada"]+"/adPreferences?updateMask=personalized_ads", tokens["ada"], map[string]any{"personalizedAds": true})
		n := 0
		awaitDisclosure := func(want string) {
			t.Helper()
			deadline := time.Now().Add(30 * time.Second)
			for {
				n++
				res, err := sh.AuthorizeDisclosure(t.Context(), &sharingv1.AuthorizeDisclosureRequest{Member: members["ada"], Partner: "partners/adnet", Purpose: "ads",
					DataCategories: []string{"user.behavior.media_consumption"}, RequestId: "drp-ads-" + strconv.Itoa(n)})
				if err != nil {
					t.Fatal(err)
				}
				if res.GetReason() == want {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("advertising disclosure: %s, want %s", res.GetReason(), want)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		awaitDisclosure("ALLOWED")

		body := agent.signed(map[string]any{"exercise": "sale:opt-out", "email": "ADA@example.com", "email_verified": true, "name": "ada Tester", "regime": "ccpa", "agent-request-id": "ps-1"})
		code, st := agent.callJSON("POST", "/v1/data-rights-request", body)
		if code != 200 || st["status"] != "fulfilled" || st["agent_request_id"] != "ps-1" || st["received_at"] == nil {
			t.Fatalf("opt-out: %d %v", code, st)
		}
		if code, m := agent.callJSON("POST", "/v1/data-rights-request", body); code != 403 || !strings.Contains(m["message"].(string), "already accepted") {
			t.Errorf("replayed body: %d %v, want 403", code, m)
		}
		ads := c.must("GET", "/v1/"+members["ada"]+"/adPreferences", tokens["ada"], nil)
		if ads["saleSharingOptOut"] != true || ads["personalizedAds"] == true {
			t.Fatalf("after opt-out: %v", ads)
		}
		awaitDisclosure("SALE_SHARING_OPTED_OUT")
		recs := c.must("GET", "/v1/"+members["ada"]+"/consentRecords", tokens["ada"], nil)["consentRecords"].([]any)
		if r := recs[0].(map[string]any); r["source"] != "CONSENT_SOURCE_AUTHORIZED_AGENT" || r["setting"] == nil || r["policyVersion"] != "drp:PERMISSION_SLIP" {
			t.Fatalf("consent record = %v", r)
		}
		if st := agent.submit(map[string]any{"exercise": "sale:opt-in", "email": "ada@example.com", "email_verified": false}); st["status"] != "denied" || st["reason"] != "insuf_verification" {
			t.Fatalf("unverified opt-in: %v", st)
		}
		if st := agent.submit(map[string]any{"exercise": "sale:opt-in", "email": "ada@example.com", "email_verified": true}); st["status"] != "fulfilled" {
			t.Fatalf("opt-in: %v", st)
		}
		if ads := c.must("GET", "/v1/"+members["ada"]+"/adPreferences", tokens["ada"], nil); ads["saleSharingOptOut"] == true {
			t.Fatalf("after opt-in: %v", ads)
		}
	})

	t.Run("no account is no_match", func(t *testing.T) {
		st := agent.submit(map[string]any{"exercise": "deletion", "email": "nobody@example.com", "email_verified": true, "regime": "ccpa"})
		if st["status"] != "denied" || st["reason"] != "no_match" {
			t.Fatalf("status = %v", st)
		}
	})

	cb := startCallbacks(t)

	t.Run("CCPA deletion ends fulfilled", func(t *testing.T) {
		st := agent.submit(map[string]any{"exercise": "deletion", "regime": "ccpa", "email": "bob@example.com", "email_verified": true, "status_callback": cb.url, "agent-request-id": "ps-del"})
		id := st["request_id"].(string)
		received, _ := time.Parse(time.RFC3339Nano, st["received_at"].(string))
		expected, _ := time.Parse(time.RFC3339Nano, st["expected_by"].(string))
		if st["status"] != "in_progress" || expected.Sub(received) < 44*24*time.Hour || expected.Sub(received) > 46*24*time.Hour {
			t.Fatalf("status = %v, want in_progress expected in 45 days", st)
		}
		if code, _ := other.callJSON("GET", "/v1/data-rights-request/"+id, ""); code != 403 {
			t.Errorf("another agent reading the request: %d, want 403", code)
		}
		agent.await(id, "fulfilled")
		cb.await(t, id, "in_progress", "fulfilled")
		if code, m := c.do("GET", "/v1/"+members["bob"], tokens["bob"], nil); code == 200 {
			t.Fatalf("the member still exists: %v", m)
		}
	})

	t.Run("unverified access: member verification, then results", func(t *testing.T) {
		st := agent.submit(map[string]any{"exercise": "access", "regime": "ccpa", "email": "cy@example.com", "email_verified": false, "status_callback": cb.url})
		id := st["request_id"].(string)
		if st["status"] != "in_progress" || st["reason"] != "need_user_verification" || st["user_verification_url"] != apiBase+"/verify/"+id || st["expires_at"] == nil {
			t.Fatalf("status = %v", st)
		}
		code := lastCode(t, dir)
		// An agent-supplied redirect_to on a host the operator did not allow is not followed:
		// the confirmation page is no open redirect (a redirect would fail this request).
		res, err := http.Post(st["user_verification_url"].(string), "application/json", strings.NewReader(`{"code":"`+code+`","redirect_to":"https://127.0.0.2:1/phish"}`))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("verify: %d %s", res.StatusCode, raw)
		}
		done := agent.await(id, "fulfilled")
		url, _ := done["results_url"].(string)
		if !strings.HasPrefix(url, apiBase+"/v1/results/") || done["expires_at"] == nil {
			t.Fatalf("fulfilled = %v", done)
		}
		res, err = http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		zip, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !bytes.HasPrefix(zip, []byte("PK")) {
			t.Fatalf("results: %d, %d bytes", res.StatusCode, len(zip))
		}
		if res, _ := http.Get(strings.Replace(url, "sig=", "sig=0", 1)); res.StatusCode != 403 {
			t.Errorf("tampered results link: %d, want 403", res.StatusCode)
		}
		cb.await(t, id, "in_progress/need_user_verification", "in_progress", "fulfilled")
	})

	t.Run("revoke", func(t *testing.T) {
		st := agent.submit(map[string]any{"exercise": "deletion", "email": "eve@example.com", "status_callback": cb.url})
		id := st["request_id"].(string)
		if st["reason"] != "need_user_verification" {
			t.Fatalf("status = %v", st)
		}
		revoke := seal(agent.key, []byte(`{"reason":"I changed my mind"}`))
		if code, _ := other.callJSON("DELETE", "/v1/data-rights-request/"+id, seal(other.key, []byte(`{"reason":"x"}`))); code != 403 {
			t.Errorf("another agent revoking: %d, want 403", code)
		}
		if code, m := agent.callJSON("DELETE", "/v1/data-rights-request/"+id, seal(other.key, []byte(`{"reason":"x"}`))); code != 403 {
			t.Errorf("mis-signed revoke: %d %v, want 403", code, m)
		}
		code, m := agent.callJSON("DELETE", "/v1/data-rights-request/"+id, revoke)
		if code != 200 || m["status"] != "revoked" {
			t.Fatalf("revoke: %d %v", code, m)
		}
		if code, m := agent.callJSON("DELETE", "/v1/data-rights-request/"+id, revoke); code == 200 {
			t.Errorf("second revoke: %d %v", code, m)
		}
		cb.await(t, id, "in_progress/need_user_verification", "revoked")
		agent.await(id, "revoked")
		c.must("GET", "/v1/"+members["eve"], tokens["eve"], nil) // still there
	})

	t.Run("expiry", func(t *testing.T) {
		st := agent.submit(map[string]any{"exercise": "deletion", "regime": "ccpa", "email": "dan@example.com", "status_callback": cb.url})
		id := st["request_id"].(string)
		exp, _ := time.Parse(time.RFC3339Nano, st["expires_at"].(string))
		if st["reason"] != "need_user_verification" || time.Until(exp) > 13*time.Second {
			t.Fatalf("status = %v", st)
		}
		agent.await(id, "expired")
		cb.await(t, id, "in_progress/need_user_verification", "expired")
		c.must("GET", "/v1/"+members["dan"], tokens["dan"], nil)
	})

	// An operator removes the agent: its token stops working.
	c.must("DELETE", "/v1/authorizedAgents/"+other.id, opTok, nil)
	if code, _ := other.call("GET", "/v1/agent/"+other.id, other.token, ""); code != 403 {
		t.Errorf("a removed agent's token: %d, want 403", code)
	}
}
