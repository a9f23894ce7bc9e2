package devstack_test

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"lethe.dev/devstack"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	subjectv1 "lethe.dev/gen/lethe/subject/v1"
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
// the dev stack, on SQLite and on PostgreSQL: Global Privacy Control from a signed-out
// visitor applied at sign-in, disabling, member legal holds, profile and social, report.html.
func TestPolicyPromises2Journey(t *testing.T) {
	eachEngine(t, policyPromises2)
}

func policyPromises2(t *testing.T, env map[string]string) {
	env["FULFILLMENT_DISABLE_GRACE"] = "6s" // the grace period before a disabled account is erased
	env["FULFILLMENT_COOLING_OFF"] = "0s"
	env["GATEWAY_SENSITIVE_PER_MINUTE"] = "600" // every step signs members in from this one address
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
	p := &promises2{t: t, s: s, c: c, sh: sharingv1.NewSharingServiceClient(conn)}
	p.opTok = c.must("POST", "/v1/operators:signIn", "", map[string]any{"email": s.Operator.Email, "password": s.Operator.Password, "totpCode": s.Operator.TOTPCode(time.Now())})["accessToken"].(string)

	p.signedOutGPC()
	p.disableAccount()
	p.memberLegalHold()
	p.memberHoldEveryPath()
	p.profileAndSocial()
	p.accessReport()
}

// accessReport: report.html in an export is generated from the data map and the partner
// registry: a page per system, the recipient the member's data went to (by its registry
// name), and how long each kind of data is kept.
func (p *promises2) accessReport() {
	t, c := p.t, p.c
	name, tok := p.signUp("Reported Rosa", "rosa@example.com")
	c.must("POST", "/v1/partners?partnerId=mailhouse", p.opTok, map[string]any{"displayName": "Mail House Ltd", "kind": "PARTNER_KIND_LEGAL_AUTHORITY",
		"purposes": []string{"delivery"}, "dataCategories": []string{"user.contact.email"}, "agreementRef": "DPA-7"})
	res, err := p.sh.AuthorizeDisclosure(t.Context(), &sharingv1.AuthorizeDisclosureRequest{Member: name, Partner: "partners/mailhouse", Purpose: "delivery",
		DataCategories: []string{"user.contact.email"}, RequestId: "mail-1"})
	if err != nil || !res.GetAllowed() {
		t.Fatalf("legal-authority disclosure: %v %v", res, err)
	}
	// Records the archive must carry: a complaint, a rectification with the value the
	// member asserts, a restriction of processing (preferences and sharing), a policy
	// acceptance and a Global Privacy Control signal sent with a sign-in.
	c.must("POST", "/v1/"+name+"/complaints?requestId=complaint-rosa", tok, map[string]any{"category": "COMPLAINT_CATEGORY_SHARING",
		"description": "Rosa complains about the mail house"})
	c.must("POST", "/v1/"+name+"/privacyRequests?requestId=rectify-rosa", tok, map[string]any{"kind": "REQUEST_KIND_RECTIFICATION",
		"rectification": map[string]any{"field": "RECTIFIABLE_FIELD_FULL_NAME", "value": "Rosalind Reported", "statement": "Rosa's full name is longer"}})
	restrict := c.must("POST", "/v1/"+name+"/privacyRequests?requestId=restrict-rosa", tok, map[string]any{"kind": "REQUEST_KIND_RESTRICTION"})
	c.awaitState(restrict["name"].(string), tok, "REQUEST_STATE_COMPLETED")
	c.must("POST", "/v1/policies/netflix/versions?policyVersionId=2026-12-07", p.opTok, map[string]any{"summary": "Rosa's policy change.",
		"effectiveTime": time.Now().UTC().Format(time.RFC3339), "lowersProtection": true, "affectedPurposes": []string{"audience_measurement"}})
	c.must("POST", "/v1/"+name+"/policyAcceptances/netflix:accept", tok, map[string]any{"version": "policies/netflix/versions/2026-12-07", "requestId": "accept-rosa"})
	if code, m := c.doWith("POST", "/v1/auth:signIn", "", map[string]any{"email": "rosa@example.com", "password": "a long enough password"}, map[string]string{"Sec-GPC": "1"}); code != http.StatusOK {
		t.Fatalf("sign-in with Sec-GPC: %d %v", code, m)
	}
	req := c.must("POST", "/v1/"+name+"/privacyRequests?requestId=export-rosa", tok, map[string]any{"kind": "REQUEST_KIND_ACCESS"})
	c.awaitState(req["name"].(string), tok, "REQUEST_STATE_COMPLETED")
	dl := c.must("GET", "/v1/"+req["name"].(string)+"/exportDownload", tok, nil)
	code, archive := download(t, c, dl["downloadUri"].(string), "")
	if code != http.StatusOK {
		t.Fatalf("download: %d", code)
	}
	zr, err := zip.NewReader(bytes.NewReader(archive), int64(len(archive)))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, f := range zr.File {
		rc, _ := f.Open()
		b, _ := io.ReadAll(rc)
		rc.Close()
		files[f.Name] = string(b)
	}
	report := files["report.html"]
	for _, want := range []struct{ file, what string }{
		{"fulfillment/complaints.json", "Rosa complains about the mail house"},
		{"fulfillment/privacy_requests.json", `"value":"Rosalind Reported"`},
		{"fulfillment/privacy_requests.json", "Rosa's full name is longer"},
		{"fulfillment/privacy_requests.json", "REQUEST_KIND_RESTRICTION"},
		{"preferences/processing_restriction.json", `"restricted":true`},
		{"preferences/ad_preferences.json", `"processingRestricted":true`},
		{"sharing/restrictions.json", `"restricted":true`},
		{"preferences/consent_records.json", `"setting":"policy/netflix"`},
		{"preferences/consent_records.json", `"policyVersion":"2026-12-07"`},
		{"preferences/consent_records.json", "CONSENT_SOURCE_GLOBAL_PRIVACY_CONTROL"},
		{"preferences/ad_preferences.json", `"gpcSignalTime"`},
		{"report.html", "fulfillment/complaints.json"},
		{"report.html", "fulfillment/privacy_requests.json"},
		{"report.html", "sharing/restrictions.json"},
		{"report.html", "preferences/processing_restriction.json"},
		{"report.html", "Where the law requires us to keep data"},
	} {
		if !strings.Contains(strings.ReplaceAll(files[want.file], " ", ""), strings.ReplaceAll(want.what, " ", "")) {
			t.Errorf("%s lacks %s:\n%.2000s", want.file, want.what, files[want.file])
		}
	}
	// Legal holds are not disclosed in the archive (docs/portability.md).
	for f := range files {
		if strings.Contains(strings.ToLower(f), "hold") {
			t.Errorf("the archive discloses a legal hold: %s", f)
		}
	}
	var man struct {
		Files []struct{ Path string }
	}
	_ = json.Unmarshal([]byte(files["manifest.json"]), &man)
	for _, f := range man.Files {
		if _, ok := files[f.Path]; !ok {
			t.Errorf("manifest lists %s, not in the archive", f.Path)
		}
	}
	for _, want := range []string{
		`<section id="identity">`, `<section id="preferences">`, `<section id="sharing">`, `<section id="fulfillment">`,
		"Mail House Ltd (partners/mailhouse)", "legal_authority", "delivery",
		"Your email address", "deleted when your account is erased", "anonymized when your account is erased", "kept after erasure",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	if strings.Contains(report, "http://") || strings.Contains(report, "https://") || strings.Contains(report, "<script") || strings.Contains(report, "<link") {
		t.Error("report.html is not readable offline")
	}
}

// profileAndSocial: the profile read path shows each section only to whom its visibility
// allows (the public, other members, the member); a social connection is given only what
// its share flags allow, and disconnecting deletes what it was given.
func (p *promises2) profileAndSocial() {
	t, c := p.t, p.c
	name, tok := p.signUp("Profiled Paula", "paula@example.com")
	_, otherTok := p.signUp("Other Oscar", "oscar@example.com")
	conn := c.must("POST", "/v1/"+name+"/socialConnections?requestId=fb", tok, map[string]any{"network": "facebook", "externalAccountRef": "fb-paula",
		"shareViewingActivity": true, "shareRatings": false})
	c.must("POST", "/v1/"+name+"/viewingEvents?requestId=view-p1", tok, map[string]any{"titleId": "tt0111161", "durationSeconds": 900})
	c.must("PUT", "/v1/"+name+"/ratings/tt0111161", tok, map[string]any{"stars": 4})
	c.must("PATCH", "/v1/"+name+"/profileVisibility?updateMask=display_name,viewing_history,ratings,social_connections", tok, map[string]any{
		"displayName": "VISIBILITY_PUBLIC", "viewingHistory": "VISIBILITY_MEMBERS", "ratings": "VISIBILITY_PRIVATE", "socialConnections": "VISIBILITY_MEMBERS"})

	public := c.must("GET", "/v1/"+name+"/profile", "", nil)
	member := c.must("GET", "/v1/"+name+"/profile", otherTok, nil)
	self := c.must("GET", "/v1/"+name+"/profile", tok, nil)
	for _, tc := range []struct {
		who                     string
		m                       map[string]any
		history, rates, network bool
	}{{"public", public, false, false, false}, {"another member", member, true, false, true}, {"the member", self, true, true, true}} {
		if tc.m["displayName"] != "Profiled Paula" {
			t.Errorf("%s: display name %v", tc.who, tc.m["displayName"])
		}
		if got := len(items(tc.m, "viewingEvents")) > 0; got != tc.history {
			t.Errorf("%s sees viewing history: %v, want %v (%v)", tc.who, got, tc.history, tc.m)
		}
		if got := len(items(tc.m, "ratings")) > 0; got != tc.rates {
			t.Errorf("%s sees ratings: %v, want %v (%v)", tc.who, got, tc.rates, tc.m)
		}
		if got := len(items(tc.m, "socialNetworks")) > 0; got != tc.network {
			t.Errorf("%s sees social networks: %v, want %v (%v)", tc.who, got, tc.network, tc.m)
		}
	}

	// The network got the viewing activity, not the rating (share_ratings off); then the
	// member turns ratings on and the next rating is posted too.
	posts := func() []any { return items(c.must("GET", "/v1/"+name+"/socialPosts", tok, nil), "socialPosts") }
	if ps := posts(); len(ps) != 1 || ps[0].(map[string]any)["kind"] != "viewing_activity" {
		t.Fatalf("posts with share_ratings off: %v", ps)
	}
	c.must("PATCH", "/v1/"+conn["name"].(string)+"?updateMask=share_ratings", tok, map[string]any{"shareRatings": true})
	c.must("PUT", "/v1/"+name+"/ratings/tt0068646", tok, map[string]any{"stars": 5})
	if ps := posts(); len(ps) != 2 || ps[0].(map[string]any)["kind"] != "rating" {
		t.Fatalf("posts with share_ratings on: %v", ps)
	}
	// Disconnecting deletes what the network was given.
	c.must("DELETE", "/v1/"+conn["name"].(string), tok, nil)
	if ps := posts(); len(ps) != 0 {
		t.Fatalf("posts after disconnecting: %v", ps)
	}
	c.must("POST", "/v1/"+name+"/viewingEvents?requestId=view-p2", tok, map[string]any{"titleId": "tt0068646", "durationSeconds": 900})
	if ps := posts(); len(ps) != 0 {
		t.Fatalf("posted after disconnecting: %v", ps)
	}
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

// memberHoldEveryPath: a member legal hold blocks the deletion paths the member does not
// start: identity's retention purge keeps the held member's records (and purges another
// member's in the same run); the services refuse to erase, or to tell a processor to
// erase, while it lasts (an erasure already in its erasing steps stops there and waits);
// a disabled account's erasure and a child's erasure on discovery wait on hold. Once the
// holds are released, both erasures complete.
func (p *promises2) memberHoldEveryPath() {
	t, c, ctx := p.t, p.c, p.t.Context()
	kim, kimTok := p.signUp("Kept Kim", "kim@example.com")
	yan, _ := p.signUp("Young Yan", "yan@example.com")
	fay, _ := p.signUp("Free Fay", "fay@example.com")
	for _, m := range []string{kim, yan} {
		c.must("POST", "/v1/"+m+"/legalHold:set", p.opTok, map[string]any{"reason": "case 2026-31 preservation order",
			"expireTime": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
	}

	// Identity's retention purge: sessions revoked 40 days ago, one per member.
	db := p.s.Identity.Domain.DB
	old := time.Now().Add(-40 * 24 * time.Hour).UnixMicro()
	for _, m := range []string{kim, fay} {
		if _, err := db.ExecContext(ctx, `INSERT INTO sessions (id, member_id, device, remember_me, refresh_hash, created_at, last_used_at, expires_at, revoked_at)
			VALUES ($1, $2, $3, FALSE, $3, $4, $4, $4, $4)`, "old-"+strings.TrimPrefix(m, "members/"), strings.TrimPrefix(m, "members/"), []byte("dev-"+m), old); err != nil {
			t.Fatal(err)
		}
	}
	purged, err := p.s.Identity.Domain.Purge(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for m, want := range map[string]int{kim: 1, fay: 0} {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sessions WHERE id = $1`, "old-"+strings.TrimPrefix(m, "members/")).Scan(&n); err != nil || n != want {
			t.Errorf("%s: %d old sessions after the retention purge (%v), want %d (purged %+v)", m, n, err, want, purged)
		}
	}

	// Each deleting service refuses by itself, whoever asks.
	for _, svc := range []string{"identity", "preferences", "sharing"} {
		conn, err := transport.FromEnv().Dial(p.s.Addresses[svc])
		if err != nil {
			t.Fatal(err)
		}
		_, err = subjectv1.NewDataSubjectServiceClient(conn).EraseSubjectData(ctx, &subjectv1.EraseSubjectDataRequest{Subject: kim, RequestId: "direct-" + svc, TombstoneId: "tombheld0001"})
		conn.Close()
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(fmt.Sprint(status.Convert(err).Details()), "LEGAL_HOLD") {
			t.Errorf("%s erased a held member's data: %v", svc, err)
		}
	}
	if _, err := p.sh.SendOnwardErasure(ctx, &sharingv1.SendOnwardErasureRequest{Member: kim, Partner: "partners/mailhouse", RequestId: "direct-onward"}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("onward erasure of a held member's data: %v", err)
	}

	// A disabled account's erasure and a child's erasure on discovery wait on hold.
	c.must("POST", "/v1/"+kim+":disable", kimTok, map[string]any{"requestId": "disable-kim"})
	c.must("POST", "/v1/"+yan+":reportChild", p.opTok, map[string]any{"reporter": "CHILD_REPORTER_OPERATOR", "requestId": "report-yan"})
	awaitRequest := func(member, field, value string) string {
		deadline := time.Now().Add(90 * time.Second)
		for {
			for _, r := range items(c.must("GET", "/v1/"+member+"/privacyRequests", p.opTok, nil), "privacyRequests") {
				if r := r.(map[string]any); r[field] == value {
					return r["name"].(string)
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no request with %s %s for %s", field, value, member)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	disabled := awaitRequest(kim, "origin", "REQUEST_ORIGIN_ACCOUNT_DISABLED")
	childErasure := awaitRequest(yan, "kind", "REQUEST_KIND_CHILD_ERASURE")
	for _, r := range []string{disabled, childErasure} {
		c.awaitState(r, p.opTok, "REQUEST_STATE_ON_HOLD")
	}
	time.Sleep(time.Second)
	for _, r := range []string{disabled, childErasure} {
		if m := c.must("GET", "/v1/"+r, p.opTok, nil); m["state"] != "REQUEST_STATE_ON_HOLD" {
			t.Fatalf("erasure under a legal hold: %v", m)
		}
	}
	for _, m := range []string{kim, yan} {
		c.must("POST", "/v1/"+m+"/legalHold:release", p.opTok, map[string]any{"reason": "case closed"})
	}
	for _, r := range []string{disabled, childErasure} {
		c.awaitState(r, p.opTok, "REQUEST_STATE_COMPLETED")
	}
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
