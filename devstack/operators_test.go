package devstack_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"lethe.dev/devstack"
)

// operatorID reads the subject of an access token (the test trusts its own token).
func operatorID(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Sub  string `json:"sub"`
		Role string `json:"role"`
	}
	_ = json.Unmarshal(raw, &claims)
	if claims.Role != "operator" {
		t.Fatalf("role %q", claims.Role)
	}
	return claims.Sub
}

// TestOperatorsSignInWithTOTPAndMembersAreNotOperators: over HTTP on the dev stack, the
// bootstrap operator signs in with password + TOTP (a wrong or replayed code fails), a
// member's credentials do not open the operator sign-in, and a member token is refused
// on every operator route while the operator's token is accepted.
func TestOperatorsSignInWithTOTPAndMembersAreNotOperators(t *testing.T) {
	dir := t.TempDir()
	s, err := devstack.Start(t.Context(), devstack.Options{DataDir: dir, UIPort: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	c := client{t, "http://" + s.Addresses["gateway"]}
	op := s.Operator
	if op.Email == "" || len(op.Password) < 16 || op.TOTPSecret == "" {
		t.Fatalf("no bootstrap operator: %+v", op)
	}

	signIn := func(password, code string) (int, map[string]any) {
		return c.do("POST", "/v1/operators:signIn", "", map[string]any{"email": op.Email, "password": password, "totpCode": code})
	}
	if code, m := signIn(op.Password, ""); code != http.StatusBadRequest {
		t.Fatalf("no code: %d %v", code, m)
	}
	wrong := "000000"
	if op.TOTPCode(time.Now()) == wrong {
		wrong = "111111"
	}
	if code, m := signIn(op.Password, wrong); code != http.StatusUnauthorized || reasonOf(m) != "INVALID_CREDENTIALS" {
		t.Fatalf("wrong code: %d %v", code, m)
	}
	if code, m := signIn("not the operator password", op.TOTPCode(time.Now())); code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d %v", code, m)
	}
	now := op.TOTPCode(time.Now())
	code, m := signIn(op.Password, now)
	if code != 200 {
		t.Fatalf("operator sign-in: %d %v", code, m)
	}
	opTok := m["accessToken"].(string)
	operatorID(t, opTok)
	if code, m := signIn(op.Password, now); code != http.StatusUnauthorized {
		t.Fatalf("a replayed TOTP code signed in: %d %v", code, m)
	}

	// A member, even one with the operator's email and a long password, is not an operator.
	c.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": "Mallory Member", "email": op.Email, "birthDate": "1985-05-05"}, "password": "a long member password here"})
	if code, m := c.do("POST", "/v1/operators:signIn", "", map[string]any{"email": op.Email, "password": "a long member password here", "totpCode": "123456"}); code != http.StatusUnauthorized {
		t.Fatalf("member credentials on operator sign-in: %d %v", code, m)
	}
	memTok := c.must("POST", "/v1/auth:signIn", "", map[string]any{"email": op.Email, "password": "a long member password here"})["accessToken"].(string)

	year := time.Now().UTC().Format("2006")
	for _, r := range []struct{ method, path string }{
		{"GET", "/v1/members"},
		{"POST", "/v1/members:lookup"},
		{"GET", "/v1/auditLog"},
		{"GET", "/v1/requestStatistics/" + year},
		{"GET", "/v1/partners"},
		{"POST", "/v1/partners"},
		{"POST", "/v1/members/abcdefgh12345678/privacyRequests/abcdefgh12345678:extend"},
		{"POST", "/v1/members/abcdefgh12345678/privacyRequests/abcdefgh12345678:setLegalHold"},
		{"POST", "/v1/members/abcdefgh12345678:reportChild"},
	} {
		var body any
		if r.method == "POST" {
			body = map[string]any{}
		}
		if code, m := c.do(r.method, r.path, memTok, body); code != http.StatusForbidden || reasonOf(m) != "OPERATOR_ONLY" {
			t.Errorf("member token on %s %s: %d %v", r.method, r.path, code, m)
		}
	}
	if code, m := c.do("GET", "/v1/members", opTok, nil); code != 200 || m["members"] == nil {
		t.Fatalf("operator lists members: %d %v", code, m)
	}
	if code, m := c.do("GET", "/v1/auditLog", opTok, nil); code != 200 {
		t.Fatalf("operator reads the audit log: %d %v", code, m)
	}
}

// TestAuditLogRecordsOperatorActions: an operator's extend, hold, release, view and
// download are in the audit log with actor, action, target, reason and time, readable by
// operators only, and counted in the yearly figures; a member's own actions are not
// operator actions.
func TestAuditLogRecordsOperatorActions(t *testing.T) {
	eachEngine(t, func(t *testing.T, env map[string]string) { auditLog(t, env) })
}

func auditLog(t *testing.T, env map[string]string) {
	dir := t.TempDir()
	s, err := devstack.Start(t.Context(), devstack.Options{DataDir: dir, UIPort: -1, Env: env})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	c := client{t, "http://" + s.Addresses["gateway"]}
	opTok := c.must("POST", "/v1/operators:signIn", "", map[string]any{"email": s.Operator.Email, "password": s.Operator.Password, "totpCode": s.Operator.TOTPCode(time.Now())})["accessToken"].(string)
	actor := "operators/" + operatorID(t, opTok)

	m := c.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": "Ada Lovelace", "email": "ada@example.com", "birthDate": "1990-12-10"}, "password": "correct horse battery"})
	name := m["name"].(string)
	tok := c.must("POST", "/v1/auth:signIn", "", map[string]any{"email": "ada@example.com", "password": "correct horse battery"})["accessToken"].(string)
	c.must("GET", "/v1/"+name, tok, nil) // the member's own view: not an operator action

	// An export, downloaded by the operator with a reason.
	exp := c.must("POST", "/v1/"+name+"/privacyRequests?requestId=export-1", tok, map[string]any{"kind": "REQUEST_KIND_ACCESS"})
	c.awaitState(exp["name"].(string), tok, "REQUEST_STATE_COMPLETED")
	dl := c.must("GET", "/v1/"+exp["name"].(string)+"/exportDownload", opTok, nil)
	rq, _ := http.NewRequest("GET", c.base+dl["downloadUri"].(string), nil)
	rq.Header.Set("Authorization", "Bearer "+opTok)
	rq.Header.Set("X-Lethe-Reason", "complaint 2026-17: checking the export")
	resp, err := http.DefaultClient.Do(rq)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("operator download: %d", resp.StatusCode)
	}
	// A client cannot name an operator on a download itself.
	rq, _ = http.NewRequest("GET", c.base+dl["downloadUri"].(string), nil)
	rq.Header.Set("X-Lethe-Operator", "forgedoperator01")
	if resp, err := http.DefaultClient.Do(rq); err != nil || resp.StatusCode != 200 {
		t.Fatalf("member download: %v", err)
	} else {
		resp.Body.Close()
	}

	// Before the erasure below ends the member's sessions: members cannot read the audit log.
	if code, m := c.do("GET", "/v1/auditLog", tok, nil); code != http.StatusForbidden {
		t.Fatalf("a member read the audit log: %d %v", code, m)
	}

	c.must("GET", "/v1/"+name, opTok, nil) // an operator viewing a member's data

	// An erasure (in its cooling-off period), extended and held by the operator.
	er := c.must("POST", "/v1/"+name+"/privacyRequests?requestId=erase-1", tok, map[string]any{"kind": "REQUEST_KIND_ERASURE", "jurisdiction": "JURISDICTION_GDPR"})
	erName := er["name"].(string)
	if code, m := c.do("POST", "/v1/"+erName+":setLegalHold", opTok, map[string]any{}); code != http.StatusBadRequest {
		t.Fatalf("a hold without a reason: %d %v", code, m)
	}
	c.must("POST", "/v1/"+erName+":extend", opTok, map[string]any{"reason": "records spread over several archives"})
	c.must("POST", "/v1/"+erName+":setLegalHold", opTok, map[string]any{"reason": "litigation hold LH-9"})
	c.must("POST", "/v1/"+erName+":releaseLegalHold", opTok, map[string]any{"reason": "LH-9 closed"})

	log := c.must("GET", "/v1/auditLog?target="+name+"&pageSize=100", opTok, nil)
	raw, _ := json.Marshal(log)
	type event struct{ Actor, Action, Target, Reason, Time string }
	var page struct{ AuditEvents []event }
	_ = json.Unmarshal(raw, &page)
	find := func(action, target, reason string) {
		t.Helper()
		for _, e := range page.AuditEvents {
			if e.Action == action && e.Target == target {
				if e.Actor != actor || e.Reason != reason || e.Time == "" {
					t.Errorf("%s: %+v, want actor %s reason %q", action, e, actor, reason)
				}
				return
			}
		}
		t.Errorf("no %s on %s in the audit log: %s", action, target, raw)
	}
	find("lethe.fulfillment.v1.FulfillmentService/ExtendPrivacyRequest", erName, "records spread over several archives")
	find("lethe.fulfillment.v1.FulfillmentService/SetLegalHold", erName, "litigation hold LH-9")
	find("lethe.fulfillment.v1.FulfillmentService/ReleaseLegalHold", erName, "LH-9 closed")
	find("lethe.fulfillment.v1.FulfillmentService/GetExportDownload", exp["name"].(string), "")
	find("download", exp["name"].(string), "complaint 2026-17: checking the export")
	find("lethe.identity.v1.IdentityService/GetMember", name, "")
	downloads := 0
	for _, e := range page.AuditEvents {
		if e.Actor != actor {
			t.Errorf("an event not by the operator: %+v", e)
		}
		if e.Action == "download" {
			downloads++
		}
	}
	if downloads != 1 {
		t.Errorf("%d download events, want 1 (the member's download is not an operator action)", downloads)
	}

	// The yearly figures count operator actions.
	stats := c.must("GET", "/v1/requestStatistics/"+time.Now().UTC().Format("2006"), opTok, nil)
	counts := map[string]float64{}
	for _, a := range stats["operatorActions"].([]any) {
		am := a.(map[string]any)
		n := 0.0
		switch v := am["count"].(type) {
		case string:
			_ = json.Unmarshal([]byte(v), &n)
		case float64:
			n = v
		}
		counts[am["action"].(string)] = n
	}
	if counts["lethe.fulfillment.v1.FulfillmentService/ExtendPrivacyRequest"] != 1 || counts["download"] != 1 || counts["lethe.fulfillment.v1.FulfillmentService/SetLegalHold"] != 1 {
		t.Fatalf("yearly operator actions = %v", counts)
	}
}
