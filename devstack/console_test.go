package devstack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"lethe.dev/devstack"
)

// consoleArtifacts is where the browser test saves its screenshots (LETHE_CONSOLE_ARTIFACTS,
// else artifacts/console at the repository root).
func consoleArtifacts(t *testing.T) string {
	dir := os.Getenv("LETHE_CONSOLE_ARTIFACTS")
	if dir == "" {
		dir, _ = filepath.Abs(filepath.Join("..", "artifacts", "console"))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// chromium finds Debian's chromium (LETHE_CHROMIUM overrides). Missing, the test fails
// under CI=true (CI installs it) and skips with the reason elsewhere.
func chromium(t *testing.T) string {
	for _, p := range []string{os.Getenv("LETHE_CHROMIUM"), "/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed; .ci/run installs Debian's chromium package")
	}
	t.Skip("chromium is not installed (apt-get install chromium); under CI=true this fails")
	return ""
}

func axeSource(t *testing.T) string {
	src, err := os.ReadFile(filepath.Join("..", "node_modules", "axe-core", "axe.min.js"))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("axe-core is not installed (npm ci at the repository root): %v", err)
		}
		t.Skipf("axe-core is not installed (run npm ci at the repository root): %v", err)
	}
	return string(src)
}

type axeViolation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []struct {
		Target []any `json:"target"`
	} `json:"nodes"`
}

// TestOperatorConsoleInChromium drives the console in headless Chromium against the dev
// stack: sign in with password + TOTP, find the at-risk request in the queue, extend it,
// set and release a legal hold (each with a reason), see the timeline and the audit
// entries, register a partner, read the regulator figures and their CSV; axe-core finds
// no serious or critical accessibility violation on any page, at 1280×800 and 390 wide;
// list pages show no personal data. Screenshots go to artifacts/console.
func TestOperatorConsoleInChromium(t *testing.T) {
	exe := chromium(t)
	axe := axeSource(t)
	out := consoleArtifacts(t)
	dir := t.TempDir()
	s, err := devstack.Start(t.Context(), devstack.Options{DataDir: dir, UIPort: -1, Env: map[string]string{"GATEWAY_TEMPORAL_UI_URL": "http://127.0.0.1:8233", "GATEWAY_SENSITIVE_PER_MINUTE": "600"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	base := "http://" + s.Addresses["gateway"]
	c := client{t, base}
	op := s.Operator

	// Seed through the public API: members filing requests of several kinds, one filed
	// by an operator on a member's behalf (awaiting the member's code).
	member := func(i int, kind, jur string) (name, req string) {
		email := fmt.Sprintf("console%d@example.com", i)
		m := c.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": fmt.Sprintf("Consolata Member%d", i), "email": email, "birthDate": "1990-01-01"},
			"password": "console test password", "requestId": fmt.Sprintf("signup-console-%d", i)})
		tok := c.must("POST", "/v1/auth:signIn", "", map[string]any{"email": email, "password": "console test password"})["accessToken"].(string)
		if kind == "" {
			return m["name"].(string), ""
		}
		pr := c.must("POST", "/v1/"+m["name"].(string)+"/privacyRequests?requestId=console-"+kind, tok, map[string]any{"kind": kind, "jurisdiction": jur})
		if kind == "REQUEST_KIND_ACCESS" {
			c.awaitState(pr["name"].(string), tok, "REQUEST_STATE_COMPLETED")
		}
		return m["name"].(string), pr["name"].(string)
	}
	_, _ = member(1, "REQUEST_KIND_ACCESS", "JURISDICTION_POLICY")
	_, _ = member(2, "REQUEST_KIND_ERASURE", "JURISDICTION_CCPA")
	_, atRisk := member(3, "REQUEST_KIND_ERASURE", "JURISDICTION_GDPR")
	_, overdue := member(4, "REQUEST_KIND_ERASURE", "JURISDICTION_POLICY")
	m5, _ := member(5, "", "")
	opTok := c.must("POST", "/v1/operators:signIn", "", map[string]any{"email": op.Email, "password": op.Password, "totpCode": op.TOTPCode(time.Now().Add(-30 * time.Second))})["accessToken"].(string)
	c.must("POST", "/v1/"+m5+"/privacyRequests?requestId=console-by-operator", opTok, map[string]any{"kind": "REQUEST_KIND_ACCESS", "jurisdiction": "JURISDICTION_GDPR", "origin": "REQUEST_ORIGIN_OPERATOR"})

	// Deadlines cannot be waited for in a test: the read model's dates of two requests
	// are moved back, one to 36 hours before its due date (at risk, still extendable
	// under GDPR), one past it (overdue).
	db := s.Fulfillment.Activities.DB
	idOf := func(name string) string { return name[strings.LastIndex(name, "/")+1:] }
	now := time.Now().UTC()
	created := now.AddDate(0, -1, 0).Add(36 * time.Hour)
	if _, err := db.ExecContext(t.Context(), `UPDATE requests SET created_at = $1, due_at = $2 WHERE id = $3`, created.UnixMicro(), created.AddDate(0, 1, 0).UnixMicro(), idOf(atRisk)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(t.Context(), `UPDATE requests SET created_at = $1, due_at = $2 WHERE id = $3`, now.Add(-32*24*time.Hour).UnixMicro(), now.Add(-2*24*time.Hour).UnixMicro(), idOf(overdue)); err != nil {
		t.Fatal(err)
	}

	alloc, cancelAlloc := chromedp.NewExecAllocator(t.Context(), chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 800))
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(alloc)
	defer cancelCtx()
	ctx, cancelTimeout := context.WithTimeout(ctx, 8*time.Minute)
	defer cancelTimeout()
	// The first Run starts the browser, which lives as long as the context of that Run.
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	run := func(what string, actions ...chromedp.Action) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if err := chromedp.Run(sctx, actions...); err != nil {
			var loc, body string
			_ = chromedp.Run(ctx, chromedp.Location(&loc), chromedp.OuterHTML("body", &body, chromedp.ByQuery))
			t.Fatalf("%s: %v\nat %s\n%.3000s", what, err, loc, body)
		}
	}
	desktop := chromedp.EmulateViewport(1280, 800)
	phone := chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile)
	shot := func(name string) {
		t.Helper()
		var png []byte
		run("screenshot "+name, chromedp.FullScreenshot(&png, 100))
		if err := os.WriteFile(filepath.Join(out, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text := func() string {
		var s string
		run("read the page", chromedp.Text("body", &s, chromedp.ByQuery))
		return s
	}
	// checkA11y runs axe-core on the page; serious and critical violations fail.
	checkA11y := func(page string) {
		t.Helper()
		var loaded bool
		run("axe loaded?", chromedp.Evaluate(`typeof window.axe !== 'undefined'`, &loaded))
		if !loaded {
			run("inject axe-core", chromedp.Evaluate(axe, nil))
		}
		var raw string
		run("axe "+page, chromedp.Evaluate(`axe.run(document, {resultTypes: ['violations']}).then(r => JSON.stringify(r.violations))`, &raw,
			func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }))
		var vs []axeViolation
		if err := json.Unmarshal([]byte(raw), &vs); err != nil {
			t.Fatalf("axe %s: %v", page, err)
		}
		for _, v := range vs {
			if v.Impact == "serious" || v.Impact == "critical" {
				t.Errorf("axe on %s: %s (%s): %s at %v", page, v.ID, v.Impact, v.Help, v.Nodes)
			} else {
				t.Logf("axe on %s (minor): %s (%s)", page, v.ID, v.Impact)
			}
		}
	}

	// Sign in: the console sends an anonymous visitor to its sign-in form.
	run("open the console", desktop, chromedp.Navigate(base+"/console/"), chromedp.WaitVisible("#totp", chromedp.ByID))
	checkA11y("sign-in")
	run("sign in", chromedp.SendKeys("#email", op.Email, chromedp.ByID), chromedp.SendKeys("#password", op.Password, chromedp.ByID),
		chromedp.SendKeys("#totp", op.TOTPCode(time.Now()), chromedp.ByID), chromedp.Submit("#totp", chromedp.ByID),
		chromedp.WaitVisible("table.queue", chromedp.ByQuery))
	var cookies []*network.Cookie
	run("cookies", chromedp.ActionFunc(func(ctx context.Context) error {
		var err error
		cookies, err = network.GetCookies().Do(ctx)
		return err
	}))
	var session *network.Cookie
	for _, ck := range cookies {
		if ck.Name == "lethe_console" {
			session = ck
		}
	}
	if session == nil || !session.HTTPOnly || session.SameSite != network.CookieSameSiteStrict || session.Path != "/console/" {
		t.Fatalf("session cookie: %+v", session)
	}

	// The queue: every request, earliest due first, in several states, no personal data.
	run("whole queue", chromedp.Navigate(base+"/console/queue?filter="), chromedp.WaitVisible("table.queue", chromedp.ByQuery))
	q := text()
	for _, want := range []string{"completed", "cooling off", "awaiting verification", "overdue by", "at risk:", "Overdue 1", "At risk 1"} {
		if !strings.Contains(q, want) {
			t.Errorf("the queue does not show %q:\n%s", want, q)
		}
	}
	var html string
	run("queue html", chromedp.OuterHTML("html", &html, chromedp.ByQuery))
	for i := 1; i <= 5; i++ {
		for _, pii := range []string{fmt.Sprintf("console%d@example.com", i), fmt.Sprintf("Member%d", i)} {
			if strings.Contains(html, pii) {
				t.Errorf("the queue shows personal data %q", pii)
			}
		}
	}
	checkA11y("queue")
	shot("queue-desktop.png")
	run("phone", phone, chromedp.Reload(), chromedp.WaitVisible("table.queue", chromedp.ByQuery))
	checkA11y("queue (390 wide)")
	shot("queue-phone.png")
	var overflow bool
	run("no horizontal scrolling at 390", chromedp.Evaluate(`document.documentElement.scrollWidth > 391`, &overflow))
	if overflow {
		t.Error("the queue scrolls sideways at 390 px")
	}

	// Find the at-risk request from the queue's at-risk filter and open it.
	var riskLink string
	run("queue", desktop, chromedp.Navigate(base+"/console/queue"), chromedp.AttributeValue("a.count.due-risk", "href", &riskLink, nil, chromedp.ByQuery))
	run("at-risk filter", chromedp.Navigate(base+riskLink), chromedp.WaitVisible("table.queue", chromedp.ByQuery))
	if q := text(); !strings.Contains(q, idOf(atRisk)) || strings.Contains(q, idOf(overdue)) {
		t.Fatalf("the at-risk filter does not show exactly the at-risk request:\n%s", q)
	}
	run("open the request", chromedp.Click("table.queue tbody a", chromedp.ByQuery), chromedp.WaitVisible("ol.timeline", chromedp.ByQuery))
	checkA11y("request")
	if p := text(); !strings.Contains(p, "GDPR Art. 12(3)") || !strings.Contains(p, "Request received") || !strings.Contains(p, "at risk:") {
		t.Fatalf("request page:\n%s", p)
	}
	var temporalLink string
	run("workflow link", chromedp.AttributeValue(`a[href^="http://127.0.0.1:8233/"]`, "href", &temporalLink, nil, chromedp.ByQuery))
	if !strings.Contains(temporalLink, "/namespaces/lethe/workflows/privacy-request%2Ferasure%2F") {
		t.Errorf("Temporal link %q", temporalLink)
	}

	// A reason is required: an empty one is refused by the browser (required), a short
	// one by the server.
	run("extend with a too-short reason", chromedp.SetAttributeValue("#r-extend", "minlength", "0", chromedp.ByID), chromedp.SendKeys("#r-extend", "short", chromedp.ByID),
		chromedp.Submit("#r-extend", chromedp.ByID), chromedp.WaitVisible(".error", chromedp.ByQuery))
	run("extend", chromedp.SendKeys("#r-extend", "Case 2026-114: archive search across regions", chromedp.ByID),
		chromedp.Submit("#r-extend", chromedp.ByID), chromedp.WaitVisible(".flash", chromedp.ByQuery))
	if p := text(); !strings.Contains(p, "extended by two further months") || !strings.Contains(p, "Case 2026-114") || strings.Contains(p, "at risk:") {
		t.Fatalf("after the extension:\n%s", p)
	}
	run("hold", chromedp.SendKeys("#r-hold", "Litigation hold LH-77", chromedp.ByID), chromedp.Submit("#r-hold", chromedp.ByID), chromedp.WaitVisible("#r-release", chromedp.ByID))
	if p := text(); !strings.Contains(p, "Legal hold set") || !strings.Contains(p, "LH-77") {
		t.Fatalf("after the hold:\n%s", p)
	}
	run("release", chromedp.SendKeys("#r-release", "LH-77 closed by counsel", chromedp.ByID), chromedp.Submit("#r-release", chromedp.ByID), chromedp.WaitVisible("#r-hold", chromedp.ByID))
	p := text()
	for _, want := range []string{"Due date extended", "Legal hold set", "Reason: Litigation hold LH-77", "Legal hold released", "Reason: LH-77 closed by counsel", "cooling off"} {
		if !strings.Contains(p, want) {
			t.Errorf("the timeline lacks %q:\n%s", want, p)
		}
	}
	checkA11y("request after actions")
	shot("request-desktop.png")
	run("request on a phone", phone, chromedp.Reload(), chromedp.WaitVisible("ol.timeline", chromedp.ByQuery))
	checkA11y("request (390 wide)")
	shot("request-phone.png")
	run("no horizontal scrolling at 390", chromedp.Evaluate(`document.documentElement.scrollWidth > 391`, &overflow))
	if overflow {
		t.Error("the request page scrolls sideways at 390 px")
	}

	// A finished request's timeline: each step with its time and record count.
	run("completed requests", desktop, chromedp.Navigate(base+"/console/queue?filter=completed"), chromedp.WaitVisible("table.queue", chromedp.ByQuery))
	var doneLink string
	run("completed request link", chromedp.AttributeValue("table.queue tbody a", "href", &doneLink, nil, chromedp.ByQuery))
	run("completed request", chromedp.Navigate(base+doneLink), chromedp.WaitVisible("ol.timeline", chromedp.ByQuery))
	if p := text(); !strings.Contains(p, "export.identity") || !strings.Contains(p, "records") || !strings.Contains(p, "Request closed") {
		t.Errorf("a completed export's timeline:\n%s", p)
	}
	checkA11y("completed request")
	shot("request-completed-desktop.png")
	run("back to the at-risk request", chromedp.Navigate(base+"/console/requests/"+strings.TrimPrefix(atRisk, "members/")[:strings.Index(strings.TrimPrefix(atRisk, "members/"), "/")]+"/"+idOf(atRisk)),
		chromedp.WaitVisible("#r-view", chromedp.ByID))

	// Filters by jurisdiction and kind; re-send a code to the request awaiting
	// verification and cancel the CCPA erasure in its cooling-off period, with reasons.
	run("CCPA filter", chromedp.Navigate(base+"/console/queue?filter=&jurisdiction=CCPA"), chromedp.WaitVisible("table.queue", chromedp.ByQuery))
	if q := text(); !strings.Contains(q, "Requests 1–1 of 1") || !strings.Contains(q, "CCPA") {
		t.Errorf("CCPA filter:\n%s", q)
	}
	var ccpaLink, waitingLink string
	run("CCPA request", chromedp.AttributeValue("table.queue tbody a", "href", &ccpaLink, nil, chromedp.ByQuery))
	run("cancel", chromedp.Navigate(base+ccpaLink), chromedp.WaitVisible("#r-cancel", chromedp.ByID), chromedp.SendKeys("#r-cancel", "Member asked by post, ref P-12", chromedp.ByID),
		chromedp.Submit("#r-cancel", chromedp.ByID), chromedp.WaitVisible(".flash", chromedp.ByQuery))
	run("awaiting verification", chromedp.Navigate(base+"/console/queue?filter=awaiting_verification&kind=ACCESS"), chromedp.WaitVisible("table.queue", chromedp.ByQuery),
		chromedp.AttributeValue("table.queue tbody a", "href", &waitingLink, nil, chromedp.ByQuery))
	run("resend", chromedp.Navigate(base+waitingLink), chromedp.WaitVisible("#r-resend", chromedp.ByID), chromedp.SendKeys("#r-resend", "Member lost the email, ticket T-9", chromedp.ByID),
		chromedp.Submit("#r-resend", chromedp.ByID), chromedp.WaitVisible(".flash", chromedp.ByQuery))
	if p := text(); !strings.Contains(p, "Verification code re-sent") || !strings.Contains(p, "ticket T-9") {
		t.Errorf("after re-sending the code:\n%s", p)
	}
	run("back to the at-risk request", chromedp.Navigate(base+"/console/requests/"+strings.TrimPrefix(atRisk, "members/")[:strings.Index(strings.TrimPrefix(atRisk, "members/"), "/")]+"/"+idOf(atRisk)),
		chromedp.WaitVisible("#r-view", chromedp.ByID))

	// Viewing the member's data is an explicit, reasoned action.
	run("view data", desktop, chromedp.SendKeys("#r-view", "DSAR-88 identity check", chromedp.ByID), chromedp.Submit("#r-view", chromedp.ByID),
		chromedp.WaitVisible("#member-data", chromedp.ByID))
	if p := text(); !strings.Contains(p, "console3@example.com") {
		t.Fatalf("member data page:\n%s", p)
	}

	// The audit log shows each action with its reason.
	run("audit log", chromedp.Navigate(base+"/console/audit"), chromedp.WaitVisible("table.audit", chromedp.ByQuery))
	a := text()
	for _, want := range []string{"CancelPrivacyRequest", "ref P-12", "ResendVerification", "ticket T-9", "ExtendPrivacyRequest", "Case 2026-114", "SetLegalHold", "Litigation hold LH-77", "ReleaseLegalHold", "LH-77 closed by counsel", "GetMember", "DSAR-88 identity check"} {
		if !strings.Contains(a, want) {
			t.Errorf("the audit log lacks %q:\n%s", want, a)
		}
	}
	checkA11y("audit log")
	shot("audit-desktop.png")

	// Partners: register one with a purpose; the registry lists it.
	run("new partner", chromedp.Navigate(base+"/console/partners/new"), chromedp.WaitVisible("#p-id", chromedp.ByID))
	checkA11y("new partner")
	run("register", chromedp.SendKeys("#p-id", "acme-mail", chromedp.ByID), chromedp.SetValue("#p-kind", "MARKETING_PARTNER", chromedp.ByID),
		chromedp.SendKeys("#p-name", "Acme Mail Ltd", chromedp.ByID), chromedp.SendKeys("#p-purposes", "marketing", chromedp.ByID),
		chromedp.SendKeys("#p-cats", "user.contact.email", chromedp.ByID), chromedp.SendKeys("#p-agr", "DPA-2026-12", chromedp.ByID),
		chromedp.SendKeys("#p-reason", "New marketing contract MC-5", chromedp.ByID), chromedp.Submit("#p-reason", chromedp.ByID), chromedp.WaitVisible("#u-id", chromedp.ByID))
	run("purpose", chromedp.SendKeys("#u-id", "marketing", chromedp.ByID), chromedp.SendKeys("#u-desc", "Offers from Acme partners", chromedp.ByID),
		chromedp.SendKeys("#u-cats", "user.contact.email", chromedp.ByID), chromedp.SendKeys("#u-basis", "consent", chromedp.ByID),
		chromedp.SendKeys("#u-reason", "MC-5 purpose", chromedp.ByID), chromedp.Submit("#u-reason", chromedp.ByID), chromedp.WaitVisible("ul.plain", chromedp.ByQuery))
	run("partners", chromedp.Navigate(base+"/console/partners"), chromedp.WaitVisible("table", chromedp.ByQuery))
	if p := text(); !strings.Contains(p, "Acme Mail Ltd") || !strings.Contains(p, "marketing: 30 d") {
		t.Errorf("partners page:\n%s", p)
	}
	checkA11y("partners")

	// Regulator figures: table, chart, CSV.
	run("figures", chromedp.Navigate(base+"/console/figures"), chromedp.WaitVisible("svg.chart", chromedp.ByQuery))
	checkA11y("figures")
	shot("figures-desktop.png")
	req, _ := http.NewRequest("GET", fmt.Sprintf("%s/console/figures.csv?year=%d", base, now.Year()), nil)
	req.AddCookie(&http.Cookie{Name: session.Name, Value: session.Value})
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	csvBody, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(string(csvBody), "year,kind,received,completed,denied,median_days_to_respond,p90_days_to_respond\n") ||
		!strings.Contains(string(csvBody), fmt.Sprintf("%d,erasure,", now.Year())) {
		t.Errorf("figures CSV: %d\n%s", res.StatusCode, csvBody)
	}
	// A form posted without the page's CSRF token is refused.
	form, _ := http.NewRequest("POST", base+"/console/requests/"+strings.TrimPrefix(atRisk, "members/")[:strings.Index(strings.TrimPrefix(atRisk, "members/"), "/")]+"/"+idOf(atRisk)+"/hold",
		strings.NewReader("reason=forged+hold"))
	form.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	form.AddCookie(&http.Cookie{Name: session.Name, Value: session.Value})
	if res, err := http.DefaultClient.Do(form); err != nil || res.StatusCode != http.StatusForbidden {
		t.Errorf("a form without the CSRF token: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	t.Logf("screenshots in %s", out)
}
