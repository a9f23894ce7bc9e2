package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	authv1 "lethe.dev/gen/lethe/auth/v1"
	identityv1 "lethe.dev/gen/lethe/identity/v1"
	"lethe.dev/gen/openapiv2"
	"lethe.dev/platform/authz"
	"lethe.dev/platform/grpcserver"
	"lethe.dev/platform/grpcserver/grpctest"
	"lethe.dev/platform/storage/storagetest"
	"lethe.dev/services/gateway"
	"lethe.dev/services/gateway/internal/gw"
	"lethe.dev/services/identity"
	"lethe.dev/services/preferences"
	"lethe.dev/services/sharing"
)

type stack struct {
	url      string
	identity *identity.Service
	prefs    *preferences.Service
	dataDir  string

	identityAddr string
}

// start runs real identity, preferences and sharing services (SQLite) behind the
// gateway; fulfillment is a bare gRPC server that answers every call Unimplemented.
func start(t testing.TB, perMinute int) *stack {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	id, err := identity.New(ctx, identity.Config{DatabaseURL: storagetest.SQLiteURL(t), DataDir: filepath.Join(dir, "identity"), KEKURI: "file:" + filepath.Join(dir, "kek.json"), KeyRotation: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pr, err := preferences.New(ctx, preferences.Config{DatabaseURL: storagetest.SQLiteURL(t), TokenKeyPath: filepath.Join(dir, "p.json"), UnsubscribeTTL: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sh, err := sharing.New(ctx, sharing.Config{DatabaseURL: storagetest.SQLiteURL(t), DataDir: filepath.Join(dir, "sharing"), WebhookTimeout: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { id.Close(); pr.Close(); sh.Close() })
	cfg := gateway.Config{
		IdentityAddress: grpctest.Serve(t, id.Register), PreferencesAddress: grpctest.Serve(t, pr.Register), SharingAddress: grpctest.Serve(t, sh.Register),
		FulfillmentAddress: grpctest.Serve(t, func(*grpcserver.Server) {}), FulfillmentHTTPAddr: "http://127.0.0.1:9",
		CORSOrigins: "https://app.example.com", MaxBodyBytes: 1 << 20, Timeout: 10 * time.Second, SensitivePerMinute: perMinute, JWKSRefetch: 100 * time.Millisecond,
	}
	g, err := gateway.New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(func() { srv.Close(); g.Close() })
	return &stack{url: srv.URL, identity: id, prefs: pr, dataDir: dir, identityAddr: cfg.IdentityAddress}
}

func (s *stack) do(t testing.TB, method, path, token string, body any, headers ...string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, s.url+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

// signUp creates a member through the gateway and signs them in.
func (s *stack) signUp(t testing.TB, email string) (member, token string) {
	t.Helper()
	code, m := s.do(t, "POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": "Test Person", "email": email, "birthDate": "1990-01-01"}, "password": "a long enough password"})
	if code != 200 {
		t.Fatalf("sign-up: %d %v", code, m)
	}
	member = strings.TrimPrefix(m["name"].(string), "members/")
	return member, s.signIn(t, email)
}

func (s *stack) signIn(t testing.TB, email string) string {
	t.Helper()
	code, m := s.do(t, "POST", "/v1/auth:signIn", "", map[string]any{"email": email, "password": "a long enough password", "deviceName": "test"})
	if code != 200 {
		t.Fatalf("sign-in: %d %v", code, m)
	}
	return m["accessToken"].(string)
}

// operator creates an operator (privacy staff, not a member) and signs it in with its
// password and TOTP code over HTTP.
func (s *stack) operator(t testing.TB) string {
	t.Helper()
	_, enrol, err := s.identity.Domain.CreateOperator(context.Background(), "privacy-staff@example.com", "a long operator password")
	if err != nil {
		t.Fatal(err)
	}
	code, _ := totp.GenerateCode(enrol.Secret, time.Now())
	st, m := s.do(t, "POST", "/v1/operators:signIn", "", map[string]any{"email": "privacy-staff@example.com", "password": "a long operator password", "totpCode": code})
	if st != 200 {
		t.Fatalf("operator sign-in: %d %v", st, m)
	}
	return m["accessToken"].(string)
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

var varRE = regexp.MustCompile(`\{[^}]+\}`)

// concrete fills a route template: {member} with member, anything else with a
// well-formed opaque id.
func concrete(tmpl, member string) string {
	return varRE.ReplaceAllStringFunc(tmpl, func(v string) string {
		switch v {
		case "{member}":
			return member
		case "{year}":
			return "2026"
		case "{partner}":
			return "acme-pay"
		}
		return "abcdefgh12345678"
	})
}

// TestTheSpecAndTheRoutePolicyAgree: every operation the OpenAPI document publishes is
// a route the gateway derives from the descriptors (with its RPC's declared access), and
// no route is missing from the document.
func TestTheSpecAndTheRoutePolicyAgree(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openapiv2.Spec, &doc); err != nil {
		t.Fatal(err)
	}
	routes := gw.Routes()
	n := 0
	for path, ops := range doc.Paths {
		for method := range ops {
			n++
			m := strings.ToUpper(method)
			if r, _ := authz.Match(routes, m, concrete(path, "abcdefgh12345678")); r == nil {
				t.Errorf("the spec serves %s %s, which no RPC's HTTP binding matches", m, path)
			} else if r.Access == authv1.Access_ACCESS_UNSPECIFIED || r.Access == authv1.Access_ACCESS_SERVICE {
				t.Errorf("%s has access %v but an HTTP route", r.Key(), r.Access)
			}
		}
	}
	if n != len(routes) || n < 60 {
		t.Fatalf("%d operations in the spec, %d routes", n, len(routes))
	}
}

func TestEverySpecRouteReachesItsBackend(t *testing.T) {
	s := start(t, 1000)
	op, _ := s.signUp(t, "someone@example.com")
	token := s.operator(t)
	for _, r := range gw.Routes() {
		var body any
		if r.Method != "GET" && r.Method != "DELETE" {
			body = map[string]any{}
		}
		code, m := s.do(t, r.Method, r.Example(op, "abcdefgh12345678"), token, body)
		if reasonOf(m) == "ROUTE_NOT_FOUND" || code == http.StatusMethodNotAllowed {
			t.Errorf("%s: the gateway did not route it (%d %v)", r.Key(), code, m)
		}
		if code >= 500 && code != http.StatusNotImplemented {
			t.Errorf("%s: %d %v", r.Key(), code, m)
		}
	}
}

// TestAuthorizationMatrix drives every route from its RPC's declared access
// (lethe.auth.v1.access): anonymous callers, member A on member B, a member on operator
// routes, and an operator.
func TestAuthorizationMatrix(t *testing.T) {
	s := start(t, 1000)
	a, tokA := s.signUp(t, "a@example.com")
	b, _ := s.signUp(t, "b@example.com")
	tokOp := s.operator(t)
	counts := map[authv1.Access]int{}
	for _, r := range gw.Routes() {
		counts[r.Access]++
		var body any
		if r.Method != "GET" && r.Method != "DELETE" {
			body = map[string]any{}
		}
		path := r.Example(b, "abcdefgh12345678")
		denied := func(code int, m map[string]any) bool {
			switch reasonOf(m) {
			case "UNAUTHENTICATED", "OPERATOR_ONLY", "MEMBER_NOT_FOUND", "INTERNAL_ONLY", "ACCESS_UNDECLARED":
				return true
			}
			return code == http.StatusUnauthorized || code == http.StatusForbidden
		}
		// Anonymous.
		if code, m := s.do(t, r.Method, path, "", body); r.Access != authv1.Access_ACCESS_PUBLIC {
			if code != http.StatusUnauthorized || reasonOf(m) != "UNAUTHENTICATED" {
				t.Errorf("anonymous %s: %d %v", r.Key(), code, m)
			}
		} else if denied(code, m) {
			t.Errorf("anonymous refused on public %s: %d %v", r.Key(), code, m)
		}
		switch r.Access {
		case authv1.Access_ACCESS_SELF: // member A acting on member B
			code, m := s.do(t, r.Method, path, tokA, body)
			raw, _ := json.Marshal(m)
			if code != http.StatusNotFound || reasonOf(m) != "MEMBER_NOT_FOUND" || strings.Contains(string(raw), b) {
				t.Errorf("A on B %s: %d %s", r.Key(), code, raw)
			}
		case authv1.Access_ACCESS_OPERATOR: // a member on an operator route
			code, m := s.do(t, r.Method, r.Example(a, "abcdefgh12345678"), tokA, body)
			if code != http.StatusForbidden || reasonOf(m) != "OPERATOR_ONLY" {
				t.Errorf("member on operator route %s: %d %v", r.Key(), code, m)
			}
		case authv1.Access_ACCESS_SIGNED_IN:
			if code, m := s.do(t, r.Method, path, tokA, body); denied(code, m) {
				t.Errorf("member refused on signed-in route %s: %d %v", r.Key(), code, m)
			}
		}
		// An operator passes every route's authorization, at the gateway and in the backend.
		if code, m := s.do(t, r.Method, path, tokOp, body); denied(code, m) {
			t.Errorf("operator refused on %s: %d %v", r.Key(), code, m)
		}
	}
	for _, acc := range []authv1.Access{authv1.Access_ACCESS_PUBLIC, authv1.Access_ACCESS_SIGNED_IN, authv1.Access_ACCESS_SELF, authv1.Access_ACCESS_OPERATOR} {
		if counts[acc] == 0 {
			t.Errorf("no route declares %v", acc)
		}
	}
	// A on their own data works.
	if code, m := s.do(t, "GET", "/v1/members/"+a, tokA, nil); code != 200 || m["email"] != "a@example.com" {
		t.Fatalf("own profile: %d %v", code, m)
	}
}

// TestBackendsEnforceTheDeclaredAccessToo calls identity directly with the caller
// metadata the gateway would send: a policy slip in the gateway (or a forged route)
// still meets the same decision in the backend.
func TestBackendsEnforceTheDeclaredAccessToo(t *testing.T) {
	s := start(t, 1000)
	a, _ := s.signUp(t, "a@example.com")
	b, _ := s.signUp(t, "b@example.com")
	conn, err := grpc.NewClient(s.identityAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := identityv1.NewIdentityServiceClient(conn)
	as := func(kv ...string) context.Context {
		return metadata.NewOutgoingContext(context.Background(), metadata.Pairs(kv...))
	}
	memberA := as(authz.HeaderRole, authz.RoleMember, authz.HeaderMember, a)
	anon := as(authz.HeaderRole, authz.RoleAnonymous)
	for _, tc := range []struct {
		name   string
		call   func() error
		reason string
	}{
		{"anonymous lists members", func() error { _, err := c.ListMembers(anon, &identityv1.ListMembersRequest{}); return err }, "UNAUTHENTICATED"},
		{"member lists members", func() error { _, err := c.ListMembers(memberA, &identityv1.ListMembersRequest{}); return err }, "OPERATOR_ONLY"},
		{"A reads B", func() error {
			_, err := c.GetMember(memberA, &identityv1.GetMemberRequest{Name: "members/" + b})
			return err
		}, "MEMBER_NOT_FOUND"},
		{"member notifies", func() error {
			_, err := c.NotifyMember(memberA, &identityv1.NotifyMemberRequest{Name: "members/" + a})
			return err
		}, "INTERNAL_ONLY"},
	} {
		if err := tc.call(); grpcserver.ReasonOf(err) != tc.reason {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.reason)
		}
	}
	if m, err := c.GetMember(memberA, &identityv1.GetMemberRequest{Name: "members/" + a}); err != nil || m.GetEmail() != "a@example.com" {
		t.Fatalf("A reads A: %v", err)
	}
}

func TestTokensAreVerifiedLocallyAndRotationIsPickedUp(t *testing.T) {
	s := start(t, 1000)
	a, tok := s.signUp(t, "a@example.com")
	bad := tok[:len(tok)-4] + "AAAA"
	if code, _ := s.do(t, "GET", "/v1/members/"+a, bad, nil); code != http.StatusUnauthorized {
		t.Fatalf("forged signature: %d", code)
	}
	if code, _ := s.do(t, "GET", "/v1/members/"+a, "not.a.jwt", nil); code != http.StatusUnauthorized {
		t.Fatalf("garbage: %d", code)
	}
	s.identity.Domain.Now = func() time.Time { return time.Now().Add(-time.Hour) }
	expired := s.signIn(t, "a@example.com")
	s.identity.Domain.Now = time.Now
	if code, _ := s.do(t, "GET", "/v1/members/"+a, expired, nil); code != http.StatusUnauthorized {
		t.Fatalf("expired token: %d", code)
	}
	if err := s.identity.Domain.Keys.Rotate(filepath.Join(s.dataDir, "identity"), time.Now()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond) // past the refetch interval: the next unknown key triggers a refetch
	rotated := s.signIn(t, "a@example.com")
	if code, m := s.do(t, "GET", "/v1/members/"+a, rotated, nil); code != 200 {
		t.Fatalf("token from the rotated key: %d %v", code, m)
	}
	if code, _ := s.do(t, "GET", "/v1/members/"+a, tok, nil); code != 200 {
		t.Fatalf("token from the previous key must verify until it expires: %d", code)
	}
}

func TestGlobalPrivacyControlIsRecorded(t *testing.T) {
	s := start(t, 1000)
	a, tok := s.signUp(t, "a@example.com")
	if code, _ := s.do(t, "GET", "/v1/members/"+a, tok, nil, "Sec-GPC", "1"); code != 200 {
		t.Fatal(code)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, m := s.do(t, "GET", "/v1/members/"+a+"/adPreferences", tok, nil)
		if m["gpcSignalTime"] != nil && m["saleSharingOptOut"] == true {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GPC not recorded: %v", m)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLimitsAndErrorShape(t *testing.T) {
	s := start(t, 5)
	for i := range 6 {
		code, m := s.do(t, "POST", "/v1/auth:signIn", "", map[string]any{"email": "x@example.com", "password": "wrong password!"})
		if i < 5 && code == http.StatusTooManyRequests {
			t.Fatalf("limited too early at %d", i)
		}
		if i == 5 && (code != http.StatusTooManyRequests || reasonOf(m) != "RATE_LIMITED") {
			t.Fatalf("sixth sign-in: %d %v", code, m)
		}
	}
	// The gateway trusts no proxy here: X-Forwarded-For cannot buy a fresh bucket.
	if code, _ := s.do(t, "POST", "/v1/auth:signIn", "", map[string]any{"email": "x@example.com", "password": "wrong password!"}, "X-Forwarded-For", "198.51.100.7"); code != http.StatusTooManyRequests {
		t.Fatalf("X-Forwarded-For from an untrusted peer changed the client address: %d", code)
	}
	big := strings.Repeat("x", 2<<20)
	if code, m := s.do(t, "POST", "/v1/members", "", map[string]any{"password": big}); code != http.StatusRequestEntityTooLarge || reasonOf(m) != "BODY_TOO_LARGE" {
		t.Fatalf("large body: %d %v", code, m)
	}
	code, m := s.do(t, "GET", "/v1/nowhere", "", nil)
	if code != http.StatusNotFound || m["code"] != float64(5) || reasonOf(m) != "ROUTE_NOT_FOUND" {
		t.Fatalf("unknown route: %d %v", code, m)
	}
	code, m = s.do(t, "POST", "/v1/members", "", map[string]any{"member": map[string]any{"email": "nope"}, "password": "a long enough password"})
	if code != http.StatusBadRequest || m["code"] != float64(3) || reasonOf(m) != "INVALID_ARGUMENT" {
		t.Fatalf("bad input: %d %v", code, m)
	}
	req, _ := http.NewRequest("OPTIONS", s.url+"/v1/auth:signIn", nil)
	req.Header.Set("Origin", "https://app.example.com")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("CORS preflight: %v", resp.Header)
	}
	req.Header.Set("Origin", "https://evil.example.com")
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("CORS allowed an unconfigured origin")
	}
	code, _ = s.do(t, "GET", "/openapi.json", "", nil)
	if code != 200 {
		t.Fatalf("openapi: %d", code)
	}
}

func FuzzSignInBody(f *testing.F) {
	s := start(f, 1_000_000)
	for _, seed := range []string{`{}`, `{"email":"a@b.co","password":"x"}`, `{"email":1}`, `[`, `{"rememberMe":"yes"}`, "\x00"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		resp, err := http.Post(s.url+"/v1/auth:signIn", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("body %q: %d", body, resp.StatusCode)
		}
	})
}

func FuzzViewingEventsQuery(f *testing.F) {
	s := start(f, 1_000_000)
	a, tok := s.signUp(f, "fuzz@example.com")
	for _, seed := range []string{"pageSize=10", "pageSize=-1", "pageToken=%%%", "pageSize=99999999999", "x=1&pageSize=abc"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, query string) {
		req, err := http.NewRequest("GET", s.url+"/v1/members/"+a+"/viewingEvents?"+query, nil)
		if err != nil {
			return // not a URL a client could send
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("query %q: %d", query, resp.StatusCode)
		}
	})
}

func FuzzCreateViewingEventBody(f *testing.F) {
	s := start(f, 1_000_000)
	a, tok := s.signUp(f, "fuzz@example.com")
	for _, seed := range []string{`{"titleId":"dark"}`, `{"titleId":""}`, `{"viewTime":"yesterday"}`, `{"durationSeconds":-5}`, `null`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req, _ := http.NewRequest("POST", s.url+"/v1/members/"+a+"/viewingEvents", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("body %q: %d", body, resp.StatusCode)
		}
	})
}
