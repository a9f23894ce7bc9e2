package devstack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"lethe.dev/devstack"
	identityv1 "lethe.dev/gen/lethe/identity/v1"
	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	subjectv1 "lethe.dev/gen/lethe/subject/v1"
	"lethe.dev/platform/grpcserver"
	"lethe.dev/platform/ids"
	"lethe.dev/platform/transport"
)

// attacker talks to the gateway over HTTP from one client address: the test stack
// trusts 127.0.0.1 as a proxy, so X-Forwarded-For names the client.
type attacker struct {
	t    *testing.T
	base string
	ip   string
}

func (a attacker) raw(method, path, token, contentType string, body []byte, headers ...string) (int, map[string]any) {
	a.t.Helper()
	req, _ := http.NewRequest(method, a.base+path, bytes.NewReader(body))
	if body == nil {
		req, _ = http.NewRequest(method, a.base+path, nil)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if a.ip != "" {
		req.Header.Set("X-Forwarded-For", a.ip)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	if out == nil && len(b) > 0 {
		out = map[string]any{"raw": string(b)}
	}
	return resp.StatusCode, out
}

func (a attacker) do(method, path, token string, body any) (int, map[string]any) {
	a.t.Helper()
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	return a.raw(method, path, token, "application/json", raw)
}

func (a attacker) must(method, path, token string, body any) map[string]any {
	a.t.Helper()
	code, m := a.do(method, path, token, body)
	if code != 200 {
		a.t.Fatalf("%s %s: %d %v", method, path, code, m)
	}
	return m
}

const testPassword = "a long enough password"

// signUp creates a member and returns "members/{id}".
func (a attacker) signUp(email string) string {
	a.t.Helper()
	return a.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": "Test Person", "email": email, "birthDate": "1990-01-01"}, "password": testPassword})["name"].(string)
}

// signIn returns the access and refresh tokens.
func (a attacker) signIn(email string) (string, string) {
	a.t.Helper()
	m := a.must("POST", "/v1/auth:signIn", "", map[string]any{"email": email, "password": testPassword, "deviceName": "phone"})
	return m["accessToken"].(string), m["refreshToken"].(string)
}

// refusedWithin polls path with token until the gateway answers 401, and fails the test
// when that takes longer than limit.
func (a attacker) refusedWithin(limit time.Duration, path, token string) {
	a.t.Helper()
	start := time.Now()
	for {
		code, m := a.do("GET", path, token, nil)
		if code == http.StatusUnauthorized {
			return
		}
		if time.Since(start) > limit {
			a.t.Fatalf("a revoked session still works after %v: %d %v", limit, code, m)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type secStack struct {
	*devstack.Stack
	dir   string
	n     int
	opTok string
}

// client returns an attacker from a fresh client address, so rate limits of one case
// do not spill into another.
func (s *secStack) client(t *testing.T) attacker {
	s.n++
	return attacker{t: t, base: "http://" + s.Addresses["gateway"], ip: fmt.Sprintf("203.0.113.%d", s.n)}
}

// operator signs the dev stack's bootstrap operator in (once: a TOTP code works once).
func (s *secStack) operator(t *testing.T) string {
	if s.opTok == "" {
		s.opTok = s.client(t).must("POST", "/v1/operators:signIn", "", map[string]any{"email": s.Operator.Email, "password": s.Operator.Password,
			"totpCode": s.Operator.TOTPCode(time.Now())})["accessToken"].(string)
	}
	return s.opTok
}

func (s *secStack) dial(t *testing.T, service string) *grpc.ClientConn {
	conn, err := transport.FromEnv().Dial(s.Addresses[service])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// awaitErased files an erasure with a fresh sign-in and waits until identity no longer
// knows the member.
func (s *secStack) erase(t *testing.T, c attacker, name, email string) {
	t.Helper()
	tok, _ := c.signIn(email)
	er := c.must("POST", "/v1/"+name+"/privacyRequests?requestId=erase-"+ids.New(), tok, map[string]any{"kind": "REQUEST_KIND_ERASURE"})
	op := s.operator(t)
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, m := c.do("GET", "/v1/"+er["name"].(string), op, nil)
		if m["state"] == "REQUEST_STATE_COMPLETED" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the erasure did not complete: %v", m)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func mailbox(t *testing.T, dir string) string {
	raw, _ := os.ReadFile(filepath.Join(dir, "identity", "mailbox.jsonl"))
	return string(raw)
}

// TestSecurityHoles probes the running stack over HTTP the way an attacker would; each
// subtest is one hole of issue 10 and failed before its fix.
func TestSecurityHoles(t *testing.T) {
	dir := t.TempDir()
	st, err := devstack.Start(t.Context(), devstack.Options{DataDir: dir, UIPort: -1, Env: map[string]string{
		"FULFILLMENT_COOLING_OFF": "0s", "GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32", "GATEWAY_RECENT_SIGNIN": "3s",
		"GATEWAY_READ_TIMEOUT": "2s", "GATEWAY_SESSION_CHECK_TTL": "2s",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Stop() })
	s := &secStack{Stack: st, dir: dir}

	t.Run("method_override", func(t *testing.T) {
		c := s.client(t)
		c.signUp("victim.override@example.com")
		for _, h := range [][]string{{"X-HTTP-Method-Override", "GET"}, {"X-HTTP-Method-Override", "get"}, {}} {
			code, m := c.raw("POST", "/v1/members", "", "application/x-www-form-urlencoded", []byte("pageSize=500"), h...)
			body, _ := json.Marshal(m)
			if strings.Contains(string(body), "victim.override") || m["members"] != nil {
				t.Fatalf("POST /v1/members with %v leaked members: %d %s", h, code, body)
			}
			if len(h) > 0 && code != http.StatusMethodNotAllowed && code != http.StatusNotFound {
				t.Fatalf("method override answered %d, want 405 or 404: %s", code, body)
			}
		}
		// Overriding onto any other route is refused as well.
		if code, _ := c.raw("POST", "/v1/auth:signOut", "", "application/json", []byte(`{}`), "X-HTTP-Method-Override", "DELETE"); code != http.StatusMethodNotAllowed {
			t.Fatalf("override on a public route: %d", code)
		}
	})

	t.Run("member_child_erasure", func(t *testing.T) {
		c := s.client(t)
		name := c.signUp("not.a.child@example.com")
		tok, _ := c.signIn("not.a.child@example.com")
		code, m := c.do("POST", "/v1/"+name+"/privacyRequests?requestId=child-1", tok, map[string]any{"kind": "REQUEST_KIND_CHILD_ERASURE"})
		if code != http.StatusForbidden {
			t.Fatalf("a member filed a child erasure on itself: %d %v", code, m)
		}
		_, list := c.do("GET", "/v1/"+name+"/privacyRequests", tok, nil)
		if reqs, _ := list["privacyRequests"].([]any); len(reqs) != 0 {
			t.Fatalf("a request was created: %v", list)
		}
		// An operator may (the child-report path).
		op := s.operator(t)
		c.must("POST", "/v1/"+name+"/privacyRequests?requestId=child-op", op, map[string]any{"kind": "REQUEST_KIND_CHILD_ERASURE", "origin": "REQUEST_ORIGIN_OPERATOR"})
	})

	t.Run("refresh_is_not_a_recent_sign_in", func(t *testing.T) {
		c := s.client(t)
		name := c.signUp("refresher@example.com")
		_, refresh := c.signIn("refresher@example.com")
		time.Sleep(3500 * time.Millisecond) // past GATEWAY_RECENT_SIGNIN
		tok := c.must("POST", "/v1/auth:refresh", "", map[string]any{"refreshToken": refresh})["accessToken"].(string)
		req := c.must("POST", "/v1/"+name+"/privacyRequests?requestId=export-r", tok, map[string]any{"kind": "REQUEST_KIND_ACCESS"})
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, m := c.do("GET", "/v1/"+req["name"].(string), tok, nil)
			if m["state"] == "REQUEST_STATE_AWAITING_VERIFICATION" {
				break
			}
			if m["state"] == "REQUEST_STATE_COMPLETED" || time.Now().After(deadline) {
				t.Fatalf("a refreshed token skipped the emailed code: %v", m)
			}
			time.Sleep(200 * time.Millisecond)
		}
		// A password sign-in is recent: the export needs no code.
		fresh, _ := c.signIn("refresher@example.com")
		name2 := c.signUp("fresh.signin@example.com")
		fresh, _ = c.signIn("fresh.signin@example.com")
		req2 := c.must("POST", "/v1/"+name2+"/privacyRequests?requestId=export-f", fresh, map[string]any{"kind": "REQUEST_KIND_ACCESS"})
		deadline = time.Now().Add(60 * time.Second)
		for {
			_, m := c.do("GET", "/v1/"+req2["name"].(string), fresh, nil)
			if m["state"] == "REQUEST_STATE_COMPLETED" {
				break
			}
			if m["state"] == "REQUEST_STATE_AWAITING_VERIFICATION" || time.Now().After(deadline) {
				t.Fatalf("a fresh sign-in was not recent: %v", m)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	t.Run("disclosure_request_id_is_per_member", func(t *testing.T) {
		c := s.client(t)
		a := c.signUp("discloser.a@example.com")
		b := c.signUp("discloser.b@example.com")
		op := s.operator(t)
		c.must("POST", "/v1/partners?partnerId=payproc", op, map[string]any{"displayName": "Pay Processor", "kind": "PARTNER_KIND_PROCESSOR",
			"purposes": []string{"payments"}, "dataCategories": []string{"user.financial"}, "erasureWebhookUrl": "https://payproc.example.com/erase", "webhookSecret": strings.Repeat("s", 32), "agreementRef": "DPA-1"})
		sh := sharingv1.NewSharingServiceClient(s.dial(t, "sharing"))
		ctx := t.Context()
		ra, err := sh.AuthorizeDisclosure(ctx, &sharingv1.AuthorizeDisclosureRequest{Member: a, Partner: "partners/payproc", Purpose: "payments", DataCategories: []string{"user.financial"}, RequestId: "pay-1"})
		if err != nil || !ra.GetAllowed() {
			t.Fatalf("A's disclosure: %v %v", ra, err)
		}
		if _, err := sh.BlockSharing(ctx, &sharingv1.BlockSharingRequest{Member: b}); err != nil {
			t.Fatal(err)
		}
		rb, err := sh.AuthorizeDisclosure(ctx, &sharingv1.AuthorizeDisclosureRequest{Member: b, Partner: "partners/payproc", Purpose: "payments", DataCategories: []string{"user.financial"}, RequestId: "pay-1"})
		if err != nil {
			t.Fatal(err)
		}
		if rb.GetAllowed() || rb.GetPartnerSubjectId() != "" || rb.GetDisclosure() != nil {
			t.Fatalf("B (sharing blocked) reusing A's request id got %v", rb)
		}
		// A's retry still answers from A's log entry.
		ra2, err := sh.AuthorizeDisclosure(ctx, &sharingv1.AuthorizeDisclosureRequest{Member: a, Partner: "partners/payproc", Purpose: "payments", DataCategories: []string{"user.financial"}, RequestId: "pay-1"})
		if err != nil || !ra2.GetAllowed() || ra2.GetDisclosure().GetHash() != ra.GetDisclosure().GetHash() {
			t.Fatalf("A's retry: %v %v", ra2, err)
		}
	})

	t.Run("revoked_sessions", func(t *testing.T) {
		op := s.operator(t)
		for _, path := range []string{"sign_out", "device_revoke", "revoke_all", "disable", "erasure"} {
			t.Run(path, func(t *testing.T) {
				c := s.client(t)
				email := "revoked." + path + "@example.com"
				name := c.signUp(email)
				tok, refresh := c.signIn(email)
				probe := "/v1/" + name + "/communicationPreferences"
				c.must("GET", probe, tok, nil)
				switch path {
				case "sign_out":
					c.must("POST", "/v1/auth:signOut", "", map[string]any{"refreshToken": refresh})
				case "device_revoke":
					// From another device, the member revokes the first one.
					m := c.must("POST", "/v1/auth:signIn", "", map[string]any{"email": email, "password": testPassword, "deviceName": "laptop"})
					other, mine := m["accessToken"].(string), m["session"].(map[string]any)["name"].(string)
					for _, x := range c.must("GET", "/v1/"+name+"/sessions", other, nil)["sessions"].([]any) {
						if sn := x.(map[string]any)["name"].(string); sn != mine {
							c.must("DELETE", "/v1/"+sn, other, nil)
						}
					}
					defer c.must("GET", probe, other, nil) // the revoking device still works
				case "revoke_all":
					c.must("POST", "/v1/"+name+"/sessions:revokeAll", tok, map[string]any{})
				case "disable":
					c.must("POST", "/v1/"+name+":disable", op, map[string]any{})
				case "erasure":
					s.erase(t, c, name, email)
				}
				c.refusedWithin(5*time.Second, probe, tok)
			})
		}
	})

	t.Run("erased_members_do_not_come_back", func(t *testing.T) {
		c := s.client(t)
		email := "erased.ghost@example.com"
		name := c.signUp(email)
		tok, _ := c.signIn(email)
		c.must("PATCH", "/v1/"+name+"/communicationPreferences", tok, map[string]any{"changes": []any{map[string]any{"channel": "CHANNEL_EMAIL", "topic": "TOPIC_NEWSLETTER", "subscribed": true}}})
		prefs := preferencesv1.NewPreferencesServiceClient(s.dial(t, "preferences"))
		link, err := prefs.CreateUnsubscribeToken(t.Context(), &preferencesv1.CreateUnsubscribeTokenRequest{Name: name + "/communicationPreferences", Channel: preferencesv1.Channel_CHANNEL_EMAIL, Topic: preferencesv1.Topic_TOPIC_NEWSLETTER})
		if err != nil {
			t.Fatal(err)
		}
		s.erase(t, c, name, email)
		ghost := "members/" + ids.New()
		ghostLink, err := prefs.CreateUnsubscribeToken(t.Context(), &preferencesv1.CreateUnsubscribeTokenRequest{Name: ghost + "/communicationPreferences", Channel: preferencesv1.Channel_CHANNEL_EMAIL, Topic: preferencesv1.Topic_TOPIC_NEWSLETTER})
		if err != nil {
			t.Fatal(err)
		}
		// The old unsubscribe link (public, 60 days) must not recreate rows.
		code, m := c.do("POST", "/v1/unsubscribe", "", map[string]any{"token": link.GetToken()})
		if code != http.StatusNotFound || reasonOf(m) != "MEMBER_NOT_FOUND" {
			t.Fatalf("old unsubscribe link after erasure: %d %v", code, m)
		}
		_ = ghostLink
		// In-flight writes straight to each data-holding service get what an unknown member gets.
		ctx := t.Context()
		_, err = prefs.UpdateCommunicationPreferences(ctx, &preferencesv1.UpdateCommunicationPreferencesRequest{Name: name + "/communicationPreferences",
			Changes: []*preferencesv1.SubscriptionChange{{Channel: preferencesv1.Channel_CHANNEL_EMAIL, Topic: preferencesv1.Topic_TOPIC_PROMOTIONS, Subscribed: true}}})
		if err == nil || grpcserver.ReasonOf(err) != "MEMBER_NOT_FOUND" {
			t.Fatalf("SetChoices after erasure: %v", err)
		}
		if _, err := prefs.CreateViewingEvent(ctx, &preferencesv1.CreateViewingEventRequest{Parent: name, ViewingEvent: &preferencesv1.ViewingEvent{TitleId: "late-title", DurationSeconds: 60}, RequestId: "late-view"}); err == nil || grpcserver.ReasonOf(err) != "MEMBER_NOT_FOUND" {
			t.Fatalf("viewing event after erasure: %v", err)
		}
		sh := sharingv1.NewSharingServiceClient(s.dial(t, "sharing"))
		if _, err := sh.CreateObjection(ctx, &sharingv1.CreateObjectionRequest{Parent: name, Objection: &sharingv1.Objection{}, RequestId: "late-objection"}); err == nil || grpcserver.ReasonOf(err) != "MEMBER_NOT_FOUND" {
			t.Fatalf("objection after erasure: %v", err)
		}
		id := identityv1.NewIdentityServiceClient(s.dial(t, "identity"))
		if _, err := id.SendVerificationCode(ctx, &identityv1.SendVerificationCodeRequest{Name: name, Purpose: identityv1.VerificationPurpose_VERIFICATION_PURPOSE_PRIVACY_REQUEST}); err == nil || grpcserver.ReasonOf(err) != "MEMBER_NOT_FOUND" {
			t.Fatalf("identity write after erasure: %v", err)
		}
		for _, svc := range []string{"preferences", "sharing"} {
			rep, err := subjectv1.NewDataSubjectServiceClient(s.dial(t, svc)).ReportSubjectData(ctx, &subjectv1.ReportSubjectDataRequest{Subject: name})
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range rep.GetHeld() {
				if h.GetLegalBasis() == "" {
					t.Errorf("%s holds %s for the erased member again", svc, h.GetDataset())
				}
			}
		}
	})

	t.Run("sign_up", func(t *testing.T) {
		c := s.client(t)
		first := c.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": "Taken Address", "email": "taken@example.com", "birthDate": "1990-01-01"}, "password": testPassword})
		code, second := c.do("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": "Someone Else", "email": "Taken@example.com", "birthDate": "1991-01-01"}, "password": "another long password"})
		if code != 200 {
			t.Fatalf("sign-up with a taken email revealed it: %d %v", code, second)
		}
		keys := func(m map[string]any) string {
			var ks []string
			for k := range m {
				ks = append(ks, k)
			}
			return fmt.Sprint(len(ks))
		}
		if keys(first) != keys(second) || second["name"] == first["name"] {
			t.Fatalf("the answers differ in shape: %v vs %v", first, second)
		}
		// The owner is told; the second password does not sign in.
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(mailbox(t, s.dir), "taken@example.com") || !strings.Contains(mailbox(t, s.dir), "sign up") {
			if time.Now().After(deadline) {
				t.Fatal("the existing account was not emailed")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if code, _ := c.do("POST", "/v1/auth:signIn", "", map[string]any{"email": "taken@example.com", "password": "another long password"}); code != http.StatusUnauthorized {
			t.Fatalf("sign-in with the second password: %d", code)
		}
		// Rate limit per client address.
		limited := false
		for i := range 15 {
			code, _ := c.do("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": "Bulk", "email": fmt.Sprintf("bulk%d@example.com", i), "birthDate": "1990-01-01"}, "password": testPassword})
			if code == http.StatusTooManyRequests {
				limited = true
				break
			}
		}
		if !limited {
			t.Fatal("15 sign-ups in a row from one address were not rate-limited")
		}
		// Another client is not affected.
		s.client(t).signUp("unaffected@example.com")
	})

	t.Run("lockout_is_per_client", func(t *testing.T) {
		attackerC, owner := s.client(t), s.client(t)
		owner.signUp("locked.out@example.com")
		for range 6 {
			attackerC.do("POST", "/v1/auth:signIn", "", map[string]any{"email": "locked.out@example.com", "password": "wrong wrong wrong"})
		}
		if code, m := attackerC.do("POST", "/v1/auth:signIn", "", map[string]any{"email": "locked.out@example.com", "password": testPassword}); code != http.StatusTooManyRequests {
			t.Fatalf("the attacking client is not throttled: %d %v", code, m)
		}
		if code, m := owner.do("POST", "/v1/auth:signIn", "", map[string]any{"email": "locked.out@example.com", "password": testPassword}); code != 200 {
			t.Fatalf("the owner from another client is locked out: %d %v", code, m)
		}
	})

	t.Run("receipt_token_not_in_query", func(t *testing.T) {
		c := s.client(t)
		email := "receipt.holder@example.com"
		name := c.signUp(email)
		tok, _ := c.signIn(email)
		er := c.must("POST", "/v1/"+name+"/privacyRequests?requestId=erase-receipt", tok, map[string]any{"kind": "REQUEST_KIND_ERASURE"})
		rt := er["receiptToken"].(string)
		id := er["name"].(string)[strings.LastIndex(er["name"].(string), "/")+1:]
		deadline := time.Now().Add(60 * time.Second)
		for {
			code, m := c.do("POST", "/v1/receipts/"+id+":fetch", "", map[string]any{"receiptToken": rt})
			if code == 200 && m["payload"] != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("receipt from the body: %d %v", code, m)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if code, m := c.do("GET", "/v1/receipts/"+id+"?receiptToken="+rt, "", nil); code == 200 {
			t.Fatalf("the receipt token still works in the query string: %v", m)
		}
	})

	t.Run("partners_operator_only", func(t *testing.T) {
		c := s.client(t)
		c.signUp("partner.snoop@example.com")
		tok, _ := c.signIn("partner.snoop@example.com")
		op := s.operator(t)
		c.must("POST", "/v1/partners?partnerId=adco", op, map[string]any{"displayName": "Ad Co", "kind": "PARTNER_KIND_ADVERTISER",
			"purposes": []string{"ads"}, "dataCategories": []string{"user.financial"}, "erasureWebhookUrl": "https://adco.example.com/erase", "webhookSecret": strings.Repeat("s", 32), "agreementRef": "DPA-SECRET-7"})
		for _, p := range []string{"/v1/partners", "/v1/partners/adco", "/v1/partners/adco/purposes"} {
			code, m := c.do("GET", p, tok, nil)
			body, _ := json.Marshal(m)
			if (code != http.StatusForbidden && code != http.StatusNotFound) || strings.Contains(string(body), "DPA-SECRET") || strings.Contains(string(body), "adco.example.com") {
				t.Errorf("a member read %s: %d %s", p, code, body)
			}
			c.must("GET", p, op, nil)
		}
	})

	t.Run("title_statistics_k_anonymity", func(t *testing.T) {
		var tok string
		for i := range 10 {
			c := s.client(t)
			email := fmt.Sprintf("viewer%d@example.com", i)
			name := c.signUp(email)
			tok, _ = c.signIn(email)
			c.must("POST", "/v1/"+name+"/viewingEvents?requestId=v", tok, map[string]any{"titleId": "rare-title", "durationSeconds": 60})
			code, m := c.do("GET", "/v1/titles/rare-title/statistics", tok, nil)
			if i < 9 {
				if code == 200 && m["viewCount"] != nil {
					t.Fatalf("statistics of %d members were shown: %v", i+1, m)
				}
			} else if code != 200 || m["viewCount"] != "10" {
				t.Fatalf("statistics of 10 members: %d %v", code, m)
			}
		}
	})

	t.Run("read_timeout", func(t *testing.T) {
		conn, err := net.Dial("tcp", s.Addresses["gateway"])
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// A slow body: headers complete, then the body trickles and never ends.
		fmt.Fprintf(conn, "POST /v1/auth:signIn HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
		closed := make(chan struct{})
		go func() {
			io.Copy(io.Discard, conn)
			close(closed)
		}()
		for i := 0; ; i++ {
			select {
			case <-closed:
				return
			case <-time.After(500 * time.Millisecond):
			}
			if i > 20 {
				t.Fatal("a trickling body kept the connection open past GATEWAY_READ_TIMEOUT")
			}
			conn.Write([]byte(" "))
		}
	})

	t.Run("email_change", func(t *testing.T) {
		c := s.client(t)
		email := "changer@example.com"
		name := c.signUp(email)
		tok, _ := c.signIn(email)
		other, _ := c.signIn(email)
		// The plain update no longer changes the address.
		code, m := c.do("PATCH", "/v1/"+name+"?updateMask=email", tok, map[string]any{"email": "hijacked@example.com"})
		if code == 200 && m["email"] == "hijacked@example.com" {
			t.Fatalf("the email changed without password or code: %v", m)
		}
		if code, m := c.do("POST", "/v1/"+name+":changeEmail", tok, map[string]any{"newEmail": "changed@example.com", "currentPassword": "wrong password!"}); code == 200 {
			t.Fatalf("a wrong password started an email change: %v", m)
		}
		ch := c.must("POST", "/v1/"+name+":changeEmail", tok, map[string]any{"newEmail": "changed@example.com", "currentPassword": testPassword})
		code6 := lastCodeTo(t, s.dir, "changed@example.com")
		c.must("POST", "/v1/"+name+":confirmEmailChange", tok, map[string]any{"challengeId": ch["challengeId"], "code": code6})
		if got := c.must("GET", "/v1/"+name, tok, nil)["email"]; got != "changed@example.com" {
			t.Fatalf("email = %v", got)
		}
		c.refusedWithin(5*time.Second, "/v1/"+name, other)
		c.must("GET", "/v1/"+name, tok, nil)
	})
}

// lastCodeTo reads the newest six-digit code mailed to addr.
func lastCodeTo(t *testing.T, dir, addr string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code := ""
		for _, line := range strings.Split(mailbox(t, dir), "\n") {
			var m struct{ To, Body string }
			if json.Unmarshal([]byte(line), &m) == nil && m.To == addr {
				for _, f := range strings.Fields(m.Body) {
					f = strings.Trim(f, ".,")
					if len(f) == 6 && strings.Trim(f, "0123456789") == "" {
						code = f
					}
				}
			}
		}
		if code != "" {
			return code
		}
		if time.Now().After(deadline) {
			t.Fatalf("no code was mailed to the new address")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestServicesRefuseToStartWithoutServiceToken runs the real binaries with no
// LETHE_SERVICE_TOKEN: they must exit with an error that says what to set, unless
// LETHE_INSECURE_DEV=true.
func TestServicesRefuseToStartWithoutServiceToken(t *testing.T) {
	bin := t.TempDir()
	for _, svc := range []string{"identity", "gateway"} {
		out, err := execCommand(t, "", nil, "go", "build", "-o", filepath.Join(bin, svc), "lethe.dev/services/"+svc+"/cmd/"+svc)
		if err != nil {
			t.Fatalf("build %s: %v\n%s", svc, err, out)
		}
	}
	for _, svc := range []string{"identity", "gateway"} {
		data := t.TempDir()
		env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "LETHE_DATA_DIR=" + data,
			strings.ToUpper(svc) + "_LISTEN=127.0.0.1:0", "GATEWAY_LISTEN=127.0.0.1:0"}
		out, err := execCommand(t, data, env, filepath.Join(bin, svc))
		if err == nil || !strings.Contains(out, "LETHE_SERVICE_TOKEN") || !strings.Contains(out, "LETHE_INSECURE_DEV") {
			t.Fatalf("%s started without a service token: %v\n%s", svc, err, out)
		}
		// With the explicit insecure flag it starts (and is stopped by the timeout).
		out, err = execCommand(t, data, append(env, "LETHE_INSECURE_DEV=true"), filepath.Join(bin, svc))
		if strings.Contains(out, "LETHE_SERVICE_TOKEN") {
			t.Fatalf("%s refused to start with LETHE_INSECURE_DEV=true: %v\n%s", svc, err, out)
		}
	}
}

// execCommand runs a command for at most three seconds and returns its combined output;
// a command still running then is stopped and reported as started (nil error).
func execCommand(t *testing.T, dir string, env []string, name string, args ...string) (string, error) {
	t.Helper()
	timeout := 3 * time.Second
	if name == "go" {
		timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), nil
	}
	return string(out), err
}
