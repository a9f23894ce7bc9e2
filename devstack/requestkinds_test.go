package devstack_test

import (
	"archive/zip"
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	enumspb "go.temporal.io/api/enums/v1"
	tclient "go.temporal.io/sdk/client"

	"lethe.dev/devstack"
	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/platform/transport"
)

// TestRequestKindsJourney files every request kind beyond access and erasure over HTTP
// on the dev stack and checks each is enforced where the member's data is used: a
// restriction refuses an advertising disclosure and a marketing send until it is
// lifted; a CCPA opt-out of sale (whose receipt is confirmed by mail) refuses the
// advertiser; an objection to the partner and to direct marketing refuses both; an
// approved rectification changes the member's data; a second one is denied with a
// coded reason, the member is told why and how to complain, and the yearly figures
// count it; the portability archive downloads and matches its documented schema.
func TestRequestKindsJourney(t *testing.T) {
	eachEngine(t, func(t *testing.T, env map[string]string) { requestKinds(t, env) })
}

func requestKinds(t *testing.T, env map[string]string) {
	if env == nil {
		env = map[string]string{}
	}
	env["FULFILLMENT_COOLING_OFF"] = "1s"
	env["GATEWAY_SENSITIVE_PER_MINUTE"] = "100" // a dozen filings in a minute; the limit is tested elsewhere
	dir := t.TempDir()
	s, err := devstack.Start(t.Context(), devstack.Options{DataDir: dir, UIPort: -1, Env: env})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	c := client{t, "http://" + s.Addresses["gateway"]}
	shConn, err := transport.FromEnv().Dial(s.Addresses["sharing"])
	if err != nil {
		t.Fatal(err)
	}
	defer shConn.Close()
	sh := sharingv1.NewSharingServiceClient(shConn)
	prConn, err := transport.FromEnv().Dial(s.Addresses["preferences"])
	if err != nil {
		t.Fatal(err)
	}
	defer prConn.Close()
	pr := preferencesv1.NewPreferencesServiceClient(prConn)
	opTok := c.must("POST", "/v1/operators:signIn", "", map[string]any{"email": s.Operator.Email, "password": s.Operator.Password, "totpCode": s.Operator.TOTPCode(time.Now())})["accessToken"].(string)

	m := c.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": "Grace Hopper", "email": "grace@example.com", "birthDate": "1986-12-09"},
		"password": "nanoseconds are a foot long", "requestId": "signup-grace"})
	name := m["name"].(string)
	tok := c.must("POST", "/v1/auth:signIn", "", map[string]any{"email": "grace@example.com", "password": "nanoseconds are a foot long"})["accessToken"].(string)

	// An advertiser announced to the member, who allows personalized ads and the newsletter.
	c.must("POST", "/v1/partners?partnerId=adnet", opTok, map[string]any{"displayName": "Ad Network Inc", "kind": "PARTNER_KIND_ADVERTISER",
		"purposes": []string{"ads"}, "dataCategories": []string{"user.behavior.media_consumption"}, "agreementRef": "ADV-1"})
	c.must("POST", "/v1/partners/adnet/purposes?purposeId=ads", opTok, map[string]any{"description": "Ads chosen from what you watch",
		"dataCategories": []string{"user.behavior.media_consumption"}, "legalBasis": "consent", "noticePeriod": "1s"})
	c.must("POST", "/v1/partners/adnet/purposes/ads:notifyMembers", opTok, map[string]any{"members": []string{name}})
	c.must("PATCH", "/v1/"+name+"/adPreferences?updateMask=personalized_ads", tok, map[string]any{"personalizedAds": true})
	c.must("PATCH", "/v1/"+name+"/communicationPreferences", tok, map[string]any{"changes": []any{map[string]any{"channel": "CHANNEL_EMAIL", "topic": "TOPIC_NEWSLETTER", "subscribed": true}}})

	n := 0
	disclose := func() string {
		t.Helper()
		n++
		res, err := sh.AuthorizeDisclosure(t.Context(), &sharingv1.AuthorizeDisclosureRequest{Member: name, Partner: "partners/adnet", Purpose: "ads",
			DataCategories: []string{"user.behavior.media_consumption"}, RequestId: "kinds-" + strconv.Itoa(n)})
		if err != nil {
			t.Fatal(err)
		}
		return res.GetReason()
	}
	marketing := func() string {
		t.Helper()
		res, err := pr.AuthorizeMarketing(t.Context(), &preferencesv1.AuthorizeMarketingRequest{Member: name, Channel: preferencesv1.Channel_CHANNEL_EMAIL, Topic: preferencesv1.Topic_TOPIC_NEWSLETTER})
		if err != nil {
			t.Fatal(err)
		}
		return res.GetReason()
	}
	awaitDisclosure := func(want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for got := disclose(); got != want; got = disclose() {
			if time.Now().After(deadline) {
				t.Fatalf("advertising disclosure: %s, want %s", got, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	file := func(id string, body map[string]any) string {
		t.Helper()
		return c.must("POST", "/v1/"+name+"/privacyRequests?requestId="+id, tok, body)["name"].(string)
	}
	awaitDisclosure("ALLOWED") // once the notice period ended
	if got := marketing(); got != "ALLOWED" {
		t.Fatalf("newsletter before any request: %s", got)
	}

	// Restriction of processing: the data stays, nothing flows, nothing is sent.
	restriction := file("restrict-1", map[string]any{"kind": "REQUEST_KIND_RESTRICTION"})
	c.awaitState(restriction, tok, "REQUEST_STATE_COMPLETED")
	if got := disclose(); got != "PROCESSING_RESTRICTED" {
		t.Fatalf("advertising disclosure while restricted: %s", got)
	}
	if got := marketing(); got != "PROCESSING_RESTRICTED" {
		t.Fatalf("newsletter while restricted: %s", got)
	}
	if ads := c.must("GET", "/v1/"+name+"/adPreferences", tok, nil); ads["processingRestricted"] != true || ads["personalizedAds"] == true {
		t.Fatalf("ad preferences while restricted: %v", ads)
	}
	if again := file("restrict-2", map[string]any{"kind": "REQUEST_KIND_RESTRICTION"}); again != restriction {
		t.Fatalf("a second restriction while one is in force: %s, want %s", again, restriction)
	}
	mailed(t, dir, "Your privacy request is done", "Your data is now restricted")
	if code, body := c.do("POST", "/v1/"+restriction+":liftRestriction", "", map[string]any{}); code != http.StatusUnauthorized && code != http.StatusForbidden {
		t.Fatalf("lifting without signing in: %d %v", code, body)
	}
	if lifted := c.must("POST", "/v1/"+restriction+":liftRestriction", tok, map[string]any{}); lifted["restrictionLiftTime"] == nil {
		t.Fatalf("lifted restriction: %v", lifted)
	}
	if got := disclose(); got != "ALLOWED" {
		t.Fatalf("advertising disclosure after the lift: %s", got)
	}
	if got := marketing(); got != "ALLOWED" {
		t.Fatalf("newsletter after the lift: %s", got)
	}

	// Opt-out of sale/sharing under the CCPA: receipt confirmed by mail, then enforced.
	optOut := file("optout-1", map[string]any{"kind": "REQUEST_KIND_SALE_OPT_OUT", "jurisdiction": "JURISDICTION_CCPA"})
	done := c.awaitState(optOut, tok, "REQUEST_STATE_COMPLETED")
	mailed(t, dir, "We received your privacy request", "Request: sale opt out.")
	deadline := time.Now().Add(10 * time.Second)
	for done["acknowledgeTime"] == nil && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		done = c.must("GET", "/v1/"+optOut, tok, nil)
	}
	if done["acknowledgeTime"] == nil {
		t.Fatalf("CCPA request without acknowledgement: %v", done)
	}
	if got := disclose(); got != "SALE_SHARING_OPTED_OUT" {
		t.Fatalf("advertising disclosure after the opt-out: %s", got)
	}

	// Objection to the partner's purpose and to direct marketing.
	objection := file("object-1", map[string]any{"kind": "REQUEST_KIND_OBJECTION", "objection": map[string]any{"purpose": "ads", "partner": "partners/adnet", "directMarketing": true}})
	if got := c.awaitState(objection, tok, "REQUEST_STATE_COMPLETED"); got["objection"].(map[string]any)["partner"] != "partners/adnet" {
		t.Fatalf("objection request: %v", got)
	}
	if got := disclose(); got != "OBJECTED" {
		t.Fatalf("advertising disclosure after the objection: %s", got)
	}
	if got := marketing(); got != "NOT_SUBSCRIBED" {
		t.Fatalf("newsletter after objecting to direct marketing: %s", got)
	}
	if code, body := c.do("POST", "/v1/"+name+"/privacyRequests?requestId=object-bad", tok, map[string]any{"kind": "REQUEST_KIND_OBJECTION"}); code != http.StatusBadRequest {
		t.Fatalf("an objection to nothing: %d %v", code, body)
	}

	// Rectification: reviewed by an operator, then applied in identity.
	rect := file("rectify-1", map[string]any{"kind": "REQUEST_KIND_RECTIFICATION",
		"rectification": map[string]any{"field": "RECTIFIABLE_FIELD_BIRTH_DATE", "value": "1906-12-09", "statement": "my birth date was entered wrong at sign-up"}})
	waiting := c.awaitState(rect, tok, "REQUEST_STATE_IN_PROGRESS")
	for deadline := time.Now().Add(10 * time.Second); !hasStep(waiting, "review", "waiting") && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		waiting = c.must("GET", "/v1/"+rect, opTok, nil)
	}
	if !hasStep(waiting, "review", "waiting") || waiting["rectification"].(map[string]any)["value"] != "1906-12-09" {
		t.Fatalf("rectification waiting for review, as the operator sees it: %v", waiting)
	}
	if code, body := c.do("POST", "/v1/"+rect+":review", tok, map[string]any{"approve": true}); code != http.StatusForbidden {
		t.Fatalf("a member reviewing their own rectification: %d %v", code, body)
	}
	c.must("POST", "/v1/"+rect+":review", opTok, map[string]any{"approve": true, "reason": "matches the passport copy on file"})
	applied := c.awaitState(rect, tok, "REQUEST_STATE_COMPLETED")
	if rc := applied["rectification"].(map[string]any); rc["approved"] != true || rc["value"] != nil {
		t.Fatalf("applied rectification keeps the asserted value: %v", rc)
	}
	if got := c.must("GET", "/v1/"+name, tok, nil)["birthDate"]; got != "1906-12-09" {
		t.Fatalf("birth date after the approved rectification: %v", got)
	}

	// A denial: coded reason, the member told why and how to complain, counted.
	rect2 := file("rectify-2", map[string]any{"kind": "REQUEST_KIND_RECTIFICATION",
		"rectification": map[string]any{"field": "RECTIFIABLE_FIELD_FULL_NAME", "value": "Admiral of the Fleet"}})
	c.awaitState(rect2, tok, "REQUEST_STATE_IN_PROGRESS")
	if code, body := c.do("POST", "/v1/"+rect2+":deny", opTok, map[string]any{"denialReason": "DENIAL_REASON_MANIFESTLY_UNFOUNDED"}); code != http.StatusBadRequest {
		t.Fatalf("a denial without a reason: %d %v", code, body)
	}
	if code, body := c.do("POST", "/v1/"+rect2+":deny", tok, map[string]any{"denialReason": "DENIAL_REASON_EXCESSIVE", "reason": "I changed my mind about it"}); code != http.StatusForbidden {
		t.Fatalf("a member denying a request: %d %v", code, body)
	}
	c.must("POST", "/v1/"+rect2+":deny", opTok, map[string]any{"denialReason": "DENIAL_REASON_MANIFESTLY_UNFOUNDED", "reason": "a rank is not part of a legal name"})
	denied := c.awaitState(rect2, tok, "REQUEST_STATE_DENIED")
	if denied["denialReason"] != "DENIAL_REASON_MANIFESTLY_UNFOUNDED" || denied["denialExplanation"] != "a rank is not part of a legal name" {
		t.Fatalf("denied request: %v", denied)
	}
	mailed(t, dir, "We cannot act on your privacy request", "the request is manifestly unfounded", "a rank is not part of a legal name", "lodge a complaint")
	if code, body := c.do("POST", "/v1/"+rect+":deny", opTok, map[string]any{"denialReason": "DENIAL_REASON_EXCESSIVE", "reason": "too late for this one"}); code != http.StatusBadRequest || reasonOf(body) != "REQUEST_CLOSED" {
		t.Fatalf("denying a completed request: %d %v", code, body)
	}
	if got := c.must("GET", "/v1/"+name, tok, nil)["fullName"]; got != "Grace Hopper" {
		t.Fatalf("name after the denied rectification: %v", got)
	}
	stats := c.must("GET", "/v1/requestStatistics/"+time.Now().UTC().Format("2006"), opTok, nil)
	figures := map[string]map[string]any{}
	for _, k := range stats["kinds"].([]any) {
		km := k.(map[string]any)
		figures[km["kind"].(string)] = km
	}
	for kind, want := range map[string][3]string{ // received, completed, denied
		"REQUEST_KIND_RECTIFICATION": {"2", "1", "1"},
		"REQUEST_KIND_RESTRICTION":   {"1", "1", ""},
		"REQUEST_KIND_OBJECTION":     {"1", "1", ""},
		"REQUEST_KIND_SALE_OPT_OUT":  {"1", "1", ""},
	} {
		f := figures[kind]
		if f == nil || f["received"] != want[0] || f["completed"] != want[1] || (want[2] != "" && f["denied"] != want[2]) || (want[2] == "" && f["denied"] != nil) {
			t.Errorf("figures for %s: %v, want received/completed/denied %v", kind, f, want)
		}
	}

	// Portability: a machine-readable archive addressed to the member, in the documented schema.
	port := file("port-1", map[string]any{"kind": "REQUEST_KIND_PORTABILITY"})
	c.awaitState(port, tok, "REQUEST_STATE_COMPLETED")
	dl := c.must("GET", "/v1/"+port+"/exportDownload", tok, nil)
	code, archive := download(t, c, dl["downloadUri"].(string), "")
	if code != http.StatusOK {
		t.Fatalf("portability download: %d", code)
	}
	zr, err := zip.NewReader(bytes.NewReader(archive), int64(len(archive)))
	if err != nil {
		t.Fatal(err)
	}
	var doc []byte
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
		if f.Name == "portability.json" {
			rc, _ := f.Open()
			doc, _ = io.ReadAll(rc)
			rc.Close()
		}
	}
	if doc == nil {
		t.Fatalf("no portability.json in %v", names)
	}
	schemaRaw, err := os.ReadFile(filepath.Join("..", "docs", "portability.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	schemaDoc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaRaw))
	if err != nil {
		t.Fatal(err)
	}
	comp := jsonschema.NewCompiler()
	comp.AssertFormat()
	if err := comp.AddResource("portability.schema.json", schemaDoc); err != nil {
		t.Fatal(err)
	}
	schema, err := comp.Compile("portability.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatalf("portability.json is not JSON: %v", err)
	}
	if err := schema.Validate(inst); err != nil {
		t.Fatalf("portability.json does not match docs/portability.schema.json: %v", err)
	}
	for _, want := range []string{`"subject":"` + name + `"`, "grace@example.com", "1906-12-09", `"system":"preferences"`, `"system":"sharing"`} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("portability.json lacks %s", want)
		}
	}

	// Erasure takes the member's other requests with it: a rectification waiting for
	// review is closed and its asserted value deleted (else the erasure's sweep fails).
	pending := file("rectify-3", map[string]any{"kind": "REQUEST_KIND_RECTIFICATION",
		"rectification": map[string]any{"field": "RECTIFIABLE_FIELD_PHONE_NUMBER", "value": "+14155550100"}})
	c.awaitState(pending, tok, "REQUEST_STATE_IN_PROGRESS")
	erasure := file("erase-1", map[string]any{"kind": "REQUEST_KIND_ERASURE"})
	c.awaitState(erasure, opTok, "REQUEST_STATE_COMPLETED")
	if got := c.must("GET", "/v1/"+pending, opTok, nil); got["state"] != "REQUEST_STATE_CANCELLED" || got["rectification"] != nil && got["rectification"].(map[string]any)["value"] != nil {
		t.Fatalf("pending rectification after the erasure: %v", got)
	}
	// Its workflow, which was waiting for review, is terminated: the erasure stops the
	// kinds the member has requests of (and asks Temporal about no other kind).
	tc, err := tclient.Dial(tclient.Options{HostPort: s.TemporalAddress, Namespace: "lethe"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	d, err := tc.DescribeWorkflowExecution(t.Context(), "privacy-request/rectification/"+strings.TrimPrefix(name, "members/"), "")
	if err != nil {
		t.Fatal(err)
	}
	if st := d.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED {
		t.Fatalf("the pending rectification's workflow after the erasure: %v, want terminated", st)
	}
}

// hasStep reports whether a request's progress has step in state.
func hasStep(pr map[string]any, step, state string) bool {
	steps, _ := pr["progress"].([]any)
	for _, s := range steps {
		if sm, _ := s.(map[string]any); sm["step"] == step && sm["state"] == state {
			return true
		}
	}
	return false
}
