package devstack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/fieldmaskpb"

	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/platform/transport"
)

// Demo is what SeedDemo put into a stack (and keeps in DATA/demo.json, mode 0600, so a
// restarted lethe-dev -demo finds it instead of seeding again). Every name is invented.
type Demo struct {
	// Members are the demo members, who can sign in with their email and password.
	Members []DemoMember `json:"members"`
	// Partners are the partner resource names: a processor whose erasure webhook
	// lethe-dev serves on loopback, and a marketing partner.
	Partners []string `json:"partners"`
	// Requests are the privacy requests filed, each in the state it was brought to.
	Requests []DemoRequest `json:"requests"`
	// WebhookSecret is the processor's webhook secret, shared with its loopback webhook.
	WebhookSecret string `json:"webhookSecret"`
	// HeldPseudonyms are the processor's subjects whose erasure it does not acknowledge.
	HeldPseudonyms []string `json:"heldPseudonyms"`
	// WebhookURL is where the processor's loopback webhook listens (this run's).
	WebhookURL string `json:"-"`
	// OperatorToken is an access token of the bootstrap operator from SeedDemo's own
	// sign-in (a TOTP code is accepted once, so a caller that wants to act as the
	// operator right away uses this one); empty when demo.json existed. Not saved.
	OperatorToken string `json:"-"`
}

// DemoMember is a demo member's sign-in.
type DemoMember struct {
	Name     string `json:"name"` // members/{id}
	Email    string `json:"email"`
	Password string `json:"password"`
}

// DemoRequest is one demo privacy request.
type DemoRequest struct {
	Name  string `json:"name"`  // members/{member}/privacyRequests/{id}
	State string `json:"state"` // the state SeedDemo brought it to, e.g. REQUEST_STATE_ON_HOLD
	// Extended is true for the request SeedDemo extended (an extension is a flag on an
	// open request, not a state).
	Extended bool   `json:"extended,omitempty"`
	Note     string `json:"note"` // what the request shows
}

// Demo partner ids.
const (
	DemoProcessor = "demo-payments" // processor with a loopback erasure webhook
	DemoMarketing = "demo-ads"      // marketing partner (no webhook)
)

// SeedDemo fills a running stack with demo data through its public APIs (the gateway's
// JSON API as members and as the bootstrap operator; the sharing service's gRPC API with
// the service credential for the disclosures a streaming platform would report), so the
// Temporal UI, the metrics and the console have something to show:
//
//   - six members with viewing history and ratings;
//   - two partners: DemoProcessor, a processor whose erasure webhook SeedDemo serves on
//     loopback until ctx ends (it acknowledges by signed callback after a second, except
//     for the member it is told to keep waiting), and DemoMarketing;
//   - privacy requests AWAITING_VERIFICATION (filed by an operator), COOLING_OFF and
//     extended (GDPR), ON_HOLD (legal hold), IN_PROGRESS (an erasure waiting for the
//     processor), COMPLETED (an export, and a child's erasure acknowledged by the
//     processor) and CANCELLED.
//
// It returns when every request is in its state (about 30 s). With DATA/demo.json
// present it only serves the webhook again (and points the processor at it).
func SeedDemo(ctx context.Context, s *Stack) (*Demo, error) {
	d := &Demo{}
	path := filepath.Join(filepath.Dir(filepath.Dir(s.OperatorFile)), "demo.json")
	api := &demoAPI{base: "http://" + s.Addresses["gateway"], mailbox: filepath.Join(filepath.Dir(s.OperatorFile), "mailbox.jsonl")}
	conn, err := transport.FromEnv().Dial(s.Addresses["sharing"])
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	sharing := sharingv1.NewSharingServiceClient(conn)
	if raw, err := os.ReadFile(path); err == nil {
		// Seeded before: serve the webhook again and point the processor at it (with the
		// service credential, so no operator code is spent).
		if err := json.Unmarshal(raw, d); err != nil {
			return nil, fmt.Errorf("demo: %s: %w", path, err)
		}
		hook, err := serveDemoWebhook(ctx, d.WebhookSecret, d.HeldPseudonyms)
		if err != nil {
			return nil, err
		}
		d.WebhookURL = hook.url
		_, err = sharing.UpdatePartner(ctx, &sharingv1.UpdatePartnerRequest{
			Partner:    &sharingv1.Partner{Name: "partners/" + DemoProcessor, ErasureWebhookUrl: hook.url, WebhookSecret: d.WebhookSecret},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"erasure_webhook_url", "webhook_secret"}}})
		if err != nil {
			return nil, fmt.Errorf("demo: pointing %s at its webhook: %w", DemoProcessor, err)
		}
		return d, nil
	}
	op, err := api.operatorToken(ctx, s.Operator)
	if err != nil {
		return nil, err
	}
	d.OperatorToken = op

	d.WebhookSecret = randomHex(24)
	hook, err := serveDemoWebhook(ctx, d.WebhookSecret, nil)
	if err != nil {
		return nil, err
	}
	d.WebhookURL = hook.url
	for _, p := range []struct {
		id   string
		body map[string]any
	}{
		{DemoProcessor, map[string]any{"displayName": "Demo Payments Ltd", "kind": "PARTNER_KIND_PROCESSOR", "purposes": []string{"payment_processing"},
			"dataCategories": []string{"user.financial"}, "agreementRef": "DPA-2026-001", "erasureWebhookUrl": hook.url,
			"webhookSecret": d.WebhookSecret, "ackDeadline": "259200s"}},
		{DemoMarketing, map[string]any{"displayName": "Demo Ads Network", "kind": "PARTNER_KIND_MARKETING_PARTNER", "purposes": []string{"ad_measurement"},
			"dataCategories": []string{"user.behavior.media_consumption"}, "agreementRef": "DSA-2026-002"}},
	} {
		if _, err := api.call(ctx, "POST", "/v1/partners?partnerId="+p.id, op, p.body); err != nil {
			return nil, err
		}
		d.Partners = append(d.Partners, "partners/"+p.id)
	}
	type member struct {
		DemoMember
		token string
	}
	titles := []string{"the-long-winter", "quiet-harbour", "northern-lights", "paper-moons", "salt-and-stone", "the-last-lighthouse"}
	people := []struct{ full, email, birth string }{
		{"Ada Demo", "ada.demo@example.com", "1985-12-10"},
		{"Grace Demo", "grace.demo@example.com", "1976-12-09"},
		{"Alan Demo", "alan.demo@example.com", "1982-06-23"},
		{"Hedy Demo", "hedy.demo@example.com", "1990-11-09"},
		{"Katherine Demo", "katherine.demo@example.com", "1988-08-26"},
		{"Sam Demo", "sam.demo@example.com", "2000-03-14"},     // signed up as an adult; reported as a child
		{"Robin Demo", "robin.demo@example.com", "2001-07-01"}, // reported as a child too
	}
	ms := make([]*member, len(people))
	for i, p := range people {
		m := &member{DemoMember: DemoMember{Email: p.email, Password: "demo password " + strconv.Itoa(i+1)}}
		res, err := api.call(ctx, "POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": p.full, "email": p.email, "birthDate": p.birth},
			"password": m.Password, "requestId": "demo-signup-" + strconv.Itoa(i)})
		if err != nil {
			return nil, err
		}
		m.Name, _ = res["name"].(string)
		if m.token, err = api.signIn(ctx, m.Email, m.Password); err != nil {
			return nil, err
		}
		for j := range 3 + i%3 {
			t := titles[(i+j)%len(titles)]
			if _, err := api.call(ctx, "POST", "/v1/"+m.Name+"/viewingEvents?requestId=demo-view-"+strconv.Itoa(j), m.token,
				map[string]any{"titleId": t, "durationSeconds": 600 + 300*j, "deviceType": []string{"tv", "phone", "web"}[j%3]}); err != nil {
				return nil, err
			}
			if j < 2 {
				if _, err := api.call(ctx, "PUT", "/v1/"+m.Name+"/ratings/"+t, m.token, map[string]any{"stars": 1 + (i+j)%5}); err != nil {
					return nil, err
				}
			}
		}
		for _, p := range []struct{ partner, purpose, cat string }{{DemoProcessor, "payment_processing", "user.financial"}, {DemoMarketing, "ad_measurement", "user.behavior.media_consumption"}} {
			res, err := sharing.AuthorizeDisclosure(ctx, &sharingv1.AuthorizeDisclosureRequest{Member: m.Name, Partner: "partners/" + p.partner, Purpose: p.purpose,
				DataCategories: []string{p.cat}, RequestId: "demo-" + p.partner})
			if err != nil {
				return nil, fmt.Errorf("demo: disclosure to %s: %w", p.partner, err)
			}
			if i == 6 && p.partner == DemoProcessor {
				// Robin's erasure waits for the processor (until its 3-day deadline).
				d.HeldPseudonyms = append(d.HeldPseudonyms, res.GetPartnerSubjectId())
				hook.hold(res.GetPartnerSubjectId())
			}
		}
		ms[i] = m
		d.Members = append(d.Members, m.DemoMember)
	}
	ada, grace, alan, hedy, katherine, sam, robin := ms[0], ms[1], ms[2], ms[3], ms[4], ms[5], ms[6]

	file := func(m *member, token, id string, body map[string]any) (string, error) {
		res, err := api.call(ctx, "POST", "/v1/"+m.Name+"/privacyRequests?requestId="+id, token, body)
		if err != nil {
			return "", err
		}
		name, _ := res["name"].(string)
		return name, nil
	}
	add := func(name, state string, extended bool, note string) {
		d.Requests = append(d.Requests, DemoRequest{Name: name, State: state, Extended: extended, Note: note})
	}

	// COMPLETED: Ada's export.
	export, err := file(ada, ada.token, "demo-export", map[string]any{"kind": "REQUEST_KIND_ACCESS"})
	if err != nil {
		return nil, err
	}
	// COOLING_OFF, extended: Grace's erasure under the GDPR.
	graceErase, err := file(grace, grace.token, "demo-erase", map[string]any{"kind": "REQUEST_KIND_ERASURE", "jurisdiction": "JURISDICTION_GDPR"})
	if err != nil {
		return nil, err
	}
	// CANCELLED: Alan's erasure, cancelled during its cooling-off.
	alanErase, err := file(alan, alan.token, "demo-erase", map[string]any{"kind": "REQUEST_KIND_ERASURE"})
	if err != nil {
		return nil, err
	}
	// AWAITING_VERIFICATION: an export an operator filed for Hedy (on the phone); she has
	// been emailed a code.
	hedyExport, err := file(hedy, op, "demo-export-by-operator", map[string]any{"kind": "REQUEST_KIND_ACCESS", "origin": "REQUEST_ORIGIN_OPERATOR"})
	if err != nil {
		return nil, err
	}
	// ON_HOLD: another operator-filed export, for Katherine, held before she verifies it.
	katherineExport, err := file(katherine, op, "demo-export-by-operator", map[string]any{"kind": "REQUEST_KIND_ACCESS", "origin": "REQUEST_ORIGIN_OPERATOR"})
	if err != nil {
		return nil, err
	}
	// Children's accounts are erased at once (no cooling-off): Sam's completes when the
	// processor acknowledges; Robin's stays IN_PROGRESS, waiting for it.
	for _, m := range []*member{sam, robin} {
		if _, err := api.call(ctx, "POST", "/v1/"+m.Name+":reportChild", op, map[string]any{"reporter": "CHILD_REPORTER_PARENT", "requestId": "demo-child"}); err != nil {
			return nil, err
		}
	}

	if _, err := api.await(ctx, export, op, "REQUEST_STATE_COMPLETED"); err != nil {
		return nil, err
	}
	add(export, "REQUEST_STATE_COMPLETED", false, "Ada's data export, ready to download")

	if _, err := api.await(ctx, graceErase, op, "REQUEST_STATE_COOLING_OFF"); err != nil {
		return nil, err
	}
	if _, err := api.call(ctx, "POST", "/v1/"+graceErase+":extend", op, map[string]any{"reason": "Demo: records held by a payment provider must be traced first"}); err != nil {
		return nil, err
	}
	add(graceErase, "REQUEST_STATE_COOLING_OFF", true, "Grace's erasure in its cooling-off period, extended under the GDPR")

	if _, err := api.await(ctx, alanErase, alan.token, "REQUEST_STATE_COOLING_OFF"); err != nil {
		return nil, err
	}
	if _, err := api.call(ctx, "POST", "/v1/"+alanErase+":cancel", alan.token, map[string]any{}); err != nil {
		return nil, err
	}
	if _, err := api.await(ctx, alanErase, op, "REQUEST_STATE_CANCELLED"); err != nil {
		return nil, err
	}
	add(alanErase, "REQUEST_STATE_CANCELLED", false, "Alan's erasure, cancelled by Alan during the cooling-off")

	if _, err := api.await(ctx, hedyExport, op, "REQUEST_STATE_AWAITING_VERIFICATION"); err != nil {
		return nil, err
	}
	add(hedyExport, "REQUEST_STATE_AWAITING_VERIFICATION", false, "an export an operator filed for Hedy; she was emailed a code")

	if _, err := api.await(ctx, katherineExport, op, "REQUEST_STATE_AWAITING_VERIFICATION"); err != nil {
		return nil, err
	}
	if _, err := api.call(ctx, "POST", "/v1/"+katherineExport+":setLegalHold", op, map[string]any{"reason": "DEMO-CASE-42"}); err != nil {
		return nil, err
	}
	code, err := api.mailedCode(ctx, katherine.Email)
	if err != nil {
		return nil, err
	}
	if _, err := api.call(ctx, "POST", "/v1/"+katherineExport+":verify", katherine.token, map[string]any{"code": code}); err != nil {
		return nil, err
	}
	if _, err := api.await(ctx, katherineExport, op, "REQUEST_STATE_ON_HOLD"); err != nil {
		return nil, err
	}
	add(katherineExport, "REQUEST_STATE_ON_HOLD", false, "Katherine's export under a legal hold (case DEMO-CASE-42)")

	samErase, err := api.latest(ctx, sam.Name, op, "REQUEST_KIND_CHILD_ERASURE")
	if err != nil {
		return nil, err
	}
	if _, err := api.await(ctx, samErase, op, "REQUEST_STATE_COMPLETED"); err != nil {
		return nil, err
	}
	add(samErase, "REQUEST_STATE_COMPLETED", false, "a child's account erased at once; the processor acknowledged")

	robinErase, err := api.latest(ctx, robin.Name, op, "REQUEST_KIND_CHILD_ERASURE")
	if err != nil {
		return nil, err
	}
	if err := hook.awaitHeld(ctx); err != nil {
		return nil, fmt.Errorf("demo: %s: %w", robinErase, err)
	}
	if _, err := api.await(ctx, robinErase, op, "REQUEST_STATE_IN_PROGRESS"); err != nil {
		return nil, err
	}
	add(robinErase, "REQUEST_STATE_IN_PROGRESS", false, "a child's erasure waiting for the processor's acknowledgement (due in 3 days)")

	if err := writeDemo(path, d); err != nil {
		return nil, err
	}
	return d, nil
}

func writeDemo(path string, d *Demo) error {
	raw, _ := json.MarshalIndent(d, "", "  ")
	return os.WriteFile(path, raw, 0o600)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// demoAPI calls the gateway's JSON API.
type demoAPI struct {
	base, mailbox string
}

// call sends body as JSON and decodes the answer; a status other than 200 is an error
// naming the call and the answer's reason. The gateway rate-limits sign-ups, sign-ins
// and filings per address (10 a minute by default): a 429 is waited out and retried.
func (a *demoAPI) call(ctx context.Context, method, path, token string, body any) (map[string]any, error) {
	var payload []byte
	if body != nil {
		payload, _ = json.Marshal(body)
	}
	for {
		req, err := http.NewRequestWithContext(ctx, method, a.base+path, bytes.NewReader(payload))
		if err != nil {
			return nil, err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(2 * time.Second):
			}
			continue
		}
		return decodeAnswer(method, path, resp.StatusCode, raw)
	}
}

func decodeAnswer(method, path string, status int, raw []byte) (map[string]any, error) {
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	if status != http.StatusOK {
		return out, fmt.Errorf("demo: %s %s: %d %s", method, strings.SplitN(path, "?", 2)[0], status, bytes.TrimSpace(raw))
	}
	return out, nil
}

func (a *demoAPI) signIn(ctx context.Context, email, password string) (string, error) {
	res, err := a.call(ctx, "POST", "/v1/auth:signIn", "", map[string]any{"email": email, "password": password})
	if err != nil {
		return "", err
	}
	tok, _ := res["accessToken"].(string)
	return tok, nil
}

// operatorToken signs the bootstrap operator in. A TOTP code is accepted once, so when
// this step's code was used already it waits for the next step.
func (a *demoAPI) operatorToken(ctx context.Context, c OperatorCredentials) (string, error) {
	var last error
	for range 3 {
		res, err := a.call(ctx, "POST", "/v1/operators:signIn", "", map[string]any{"email": c.Email, "password": c.Password, "totpCode": c.TOTPCode(time.Now())})
		if err == nil {
			tok, _ := res["accessToken"].(string)
			return tok, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(time.Until(time.Now().Truncate(30 * time.Second).Add(31 * time.Second))):
		}
	}
	return "", last
}

// await polls a request until it is in state (a minute at most).
func (a *demoAPI) await(ctx context.Context, name, token, state string) (map[string]any, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		res, err := a.call(ctx, "GET", "/v1/"+name, token, nil)
		if err == nil && res["state"] == state {
			return res, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("demo: %s is %v, not %s, after a minute (%v)", name, res["state"], state, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// latest waits for the member's newest request of kind and returns its name.
func (a *demoAPI) latest(ctx context.Context, member, token, kind string) (string, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		res, err := a.call(ctx, "GET", "/v1/"+member+"/privacyRequests", token, nil)
		if err == nil {
			reqs, _ := res["privacyRequests"].([]any)
			for _, r := range reqs {
				if r, ok := r.(map[string]any); ok && r["kind"] == kind {
					name, _ := r["name"].(string)
					return name, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("demo: no %s request for %s after a minute (%v)", kind, member, err)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

var sixDigits = regexp.MustCompile(`\b[0-9]{6}\b`)

// mailedCode reads the newest verification code mailed to email from the dev mailbox,
// as the member would read their email.
func (a *demoAPI) mailedCode(ctx context.Context, email string) (string, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if f, err := os.Open(a.mailbox); err == nil {
			var code string
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				var m struct{ Kind, To, Body string }
				if json.Unmarshal(sc.Bytes(), &m) == nil && m.Kind == "verification_code" && strings.EqualFold(m.To, email) {
					if c := sixDigits.FindString(m.Body); c != "" {
						code = c
					}
				}
			}
			f.Close()
			if code != "" {
				return code, nil
			}
		}
		if time.Now().After(deadline) {
			return "", errors.New("demo: no verification code in the dev mailbox (lethe-dev -demo needs the file mailbox, not IDENTITY_SMTP_ADDR)")
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// demoWebhook is the demo processor's erasure webhook: it checks the signature, answers
// 202 and acknowledges by signed callback a second later, except for the pseudonyms it
// holds (those wait, as a slow processor's would).
type demoWebhook struct {
	url    string
	secret string
	mu     sync.Mutex
	held   map[string]bool
	done   map[string]bool
	// heldSent is closed when a held subject's erasure first arrives.
	heldSent chan struct{}
	heldOnce sync.Once
}

// awaitHeld waits (a minute at most) until a held subject's erasure arrived.
func (h *demoWebhook) awaitHeld(ctx context.Context) error {
	select {
	case <-h.heldSent:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Minute):
		return errors.New("the processor was not sent the erasure within a minute")
	}
}

func (h *demoWebhook) hold(pseudonym string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held[pseudonym] = true
}

func serveDemoWebhook(ctx context.Context, secret string, held []string) (*demoWebhook, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &demoWebhook{url: "http://" + lis.Addr().String() + "/erase", secret: secret, held: map[string]bool{}, done: map[string]bool{}, heldSent: make(chan struct{})}
	for _, p := range held {
		h.held[p] = true
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	return h, nil
}

func demoSign(secret, msg string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

func (h *demoWebhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if r.Method != http.MethodPost || !hmac.Equal([]byte(demoSign(h.secret, r.Header.Get("X-Lethe-Timestamp")+"."+string(body))), []byte(r.Header.Get("X-Lethe-Signature"))) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var req struct {
		PartnerSubjectID string `json:"partner_subject_id"`
		CallbackURL      string `json:"callback_url"`
	}
	if json.Unmarshal(body, &req) != nil || req.CallbackURL == "" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	if h.held[req.PartnerSubjectID] {
		h.heldOnce.Do(func() { close(h.heldSent) })
	}
	skip := h.held[req.PartnerSubjectID] || h.done[req.CallbackURL]
	h.done[req.CallbackURL] = true
	h.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
	if !skip {
		go h.acknowledge(req.CallbackURL)
	}
}

// acknowledge calls back as the partner guide says: a signature over
// "name.timestamp.nonce".
func (h *demoWebhook) acknowledge(callbackURL string) {
	time.Sleep(time.Second)
	u, err := url.Parse(callbackURL)
	if err != nil {
		return
	}
	name := strings.TrimSuffix(strings.TrimPrefix(u.Path, "/v1/"), ":acknowledge")
	ts := time.Now().Unix()
	nonce := randomHex(16)
	body, _ := json.Marshal(map[string]any{"timestamp": ts, "nonce": nonce, "signature": demoSign(h.secret, name+"."+strconv.FormatInt(ts, 10)+"."+nonce)})
	resp, err := http.Post(callbackURL, "application/json", bytes.NewReader(body))
	if err == nil {
		resp.Body.Close()
	}
	if err != nil || resp.StatusCode != http.StatusOK {
		h.mu.Lock()
		delete(h.done, callbackURL) // acknowledged at the next resend
		h.mu.Unlock()
	}
}
