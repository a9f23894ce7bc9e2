package devstack_test

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"lethe.dev/devstack"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/platform/transport"
)

// TestPolicyPromisesJourney walks the policies' promises that used to be flags nobody
// read, over HTTP against the dev stack: an advertiser is registered and announced, the
// member allows personalized ads and data flows; then their browser sends Global
// Privacy Control and the next advertising disclosure is refused; the notice email
// reached them with a one-click objection link, and opening it stops the flow for good.
func TestPolicyPromisesJourney(t *testing.T) {
	dir := t.TempDir()
	s, err := devstack.Start(t.Context(), devstack.Options{DataDir: dir, UIPort: -1, Env: map[string]string{}})
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
	opTok := c.must("POST", "/v1/operators:signIn", "", map[string]any{"email": s.Operator.Email, "password": s.Operator.Password, "totpCode": s.Operator.TOTPCode(time.Now())})["accessToken"].(string)

	m := c.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": "Hedy Lamarr", "email": "hedy@example.com", "birthDate": "1984-11-09"},
		"password": "frequency hopping spread", "requestId": "signup-hedy"})
	name := m["name"].(string)
	tok := c.must("POST", "/v1/auth:signIn", "", map[string]any{"email": "hedy@example.com", "password": "frequency hopping spread"})["accessToken"].(string)

	// An advertiser and its purpose, announced to the member with a short notice period.
	c.must("POST", "/v1/partners?partnerId=adnet", opTok, map[string]any{"displayName": "Ad Network Inc", "kind": "PARTNER_KIND_ADVERTISER",
		"purposes": []string{"ads"}, "dataCategories": []string{"user.behavior.media_consumption"}, "agreementRef": "ADV-1"})
	c.must("POST", "/v1/partners/adnet/purposes?purposeId=ads", opTok, map[string]any{"description": "Ads chosen from what you watch",
		"dataCategories": []string{"user.behavior.media_consumption"}, "legalBasis": "consent", "noticePeriod": "2s"})
	c.must("POST", "/v1/partners/adnet/purposes/ads:notifyMembers", opTok, map[string]any{"members": []string{name}})
	c.must("PATCH", "/v1/"+name+"/adPreferences?updateMask=personalized_ads", tok, map[string]any{"personalizedAds": true})

	n := 0
	authorize := func() *sharingv1.AuthorizeDisclosureResponse {
		t.Helper()
		n++
		res, err := sh.AuthorizeDisclosure(t.Context(), &sharingv1.AuthorizeDisclosureRequest{Member: name, Partner: "partners/adnet", Purpose: "ads",
			DataCategories: []string{"user.behavior.media_consumption"}, RequestId: "ads-" + strconv.Itoa(n)})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	await := func(want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			res := authorize()
			if res.GetReason() == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("advertising disclosure: %s, want %s", res.GetReason(), want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	await("ALLOWED") // once the notice period ended without objection

	// The member's browser sends Sec-GPC: 1; from then on no advertising disclosure.
	if code, body := c.doHeader("GET", "/v1/"+name+"/adPreferences", tok, "Sec-GPC", "1"); code != http.StatusOK {
		t.Fatalf("request with GPC: %d %v", code, body)
	}
	await("GLOBAL_PRIVACY_CONTROL")
	if ads := c.must("GET", "/v1/"+name+"/adPreferences", tok, nil); ads["saleSharingOptOut"] != true || ads["personalizedAds"] == true {
		t.Fatalf("ad preferences after GPC: %v", ads)
	}

	// The advance notice reached the member by mail: partner, purpose, data, and a
	// one-click objection link that works without sign-in.
	mailed(t, dir, "Before we share your data with a partner", "Ad Network Inc", "Ads chosen from what you watch", "user.behavior.media_consumption")
	raw, _ := os.ReadFile(filepath.Join(dir, "identity", "mailbox.jsonl"))
	link := regexp.MustCompile(`http://[^\s"\\]+/v1/notices:object\?token=[A-Za-z0-9.]+`).FindString(string(raw))
	if link == "" {
		t.Fatalf("no objection link in the notice email:\n%s", raw)
	}
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	var objected map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&objected)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || objected["partnerDisplayName"] != "Ad Network Inc" || objected["purpose"] != "ads" {
		t.Fatalf("objection link: %d %v", resp.StatusCode, objected)
	}
	if objs := c.must("GET", "/v1/"+name+"/objections", tok, nil)["objections"].([]any); len(objs) != 1 {
		t.Fatalf("objections after the link: %v", objs)
	}
	await("OBJECTED")
	if code, _ := c.do("GET", "/v1/notices:object?token=forged.0000", "", nil); code != http.StatusBadRequest {
		t.Fatalf("forged objection link: %d", code)
	}

	// The export carries report.html, readable offline, naming the recipient.
	req := c.must("POST", "/v1/"+name+"/privacyRequests?requestId=export-hedy", tok, map[string]any{"kind": "REQUEST_KIND_ACCESS"})
	c.awaitState(req["name"].(string), tok, "REQUEST_STATE_COMPLETED")
	dl := c.must("GET", "/v1/"+req["name"].(string)+"/exportDownload", tok, nil)
	resp, err = http.Get(c.base + dl["downloadUri"].(string))
	if err != nil {
		t.Fatal(err)
	}
	archive, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	zr, err := zip.NewReader(bytes.NewReader(archive), int64(len(archive)))
	if err != nil {
		t.Fatal(err)
	}
	var report string
	for _, f := range zr.File {
		if f.Name == "report.html" {
			rc, _ := f.Open()
			b, _ := io.ReadAll(rc)
			rc.Close()
			report = string(b)
		}
	}
	for _, want := range []string{"Ad Network Inc (partners/adnet)", "advertiser", "user.behavior.media_consumption", `<section id="identity">`, `<section id="preferences">`, `<section id="sharing">`, "Complain to us"} {
		if !strings.Contains(report, want) {
			t.Errorf("report.html lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "http://") || strings.Contains(report, "https://") || strings.Contains(report, "<script") {
		t.Errorf("report.html is not self-contained")
	}
}

// doHeader is do without a body and with one extra request header (e.g. Sec-GPC).
func (c client) doHeader(method, path, token, header, value string) (int, map[string]any) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.base+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set(header, value)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}
