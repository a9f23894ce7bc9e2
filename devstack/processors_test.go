package devstack_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"lethe.dev/devstack"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/platform/ids"
	"lethe.dev/platform/transport"
)

// processor is a real HTTP processor on loopback, as a partner would run it: it checks
// the signature of every erasure request, answers 202 and, if it is a good one, calls
// back through the public gateway once per erasure.
type processor struct {
	t        *testing.T
	secret   string
	callback bool
	srv      *httptest.Server

	mu        sync.Mutex
	subjects  []string // partner_subject_id of each request received
	badSig    int
	callbacks map[string]int // erasure name → HTTP status of the callback
	first     time.Time
}

func sign(secret, msg string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

func newProcessor(t *testing.T, callback bool) *processor {
	p := &processor{t: t, secret: ids.New() + ids.New(), callback: callback, callbacks: map[string]int{}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req struct {
			ErasureID        string `json:"erasure_id"`
			PartnerSubjectID string `json:"partner_subject_id"`
			CallbackURL      string `json:"callback_url"`
		}
		_ = json.Unmarshal(body, &req)
		p.mu.Lock()
		if !hmac.Equal([]byte(sign(p.secret, r.Header.Get("X-Lethe-Timestamp")+"."+string(body))), []byte(r.Header.Get("X-Lethe-Signature"))) {
			p.badSig++
		}
		if p.first.IsZero() {
			p.first = time.Now()
		}
		p.subjects = append(p.subjects, req.PartnerSubjectID)
		_, called := p.callbacks[req.CallbackURL]
		if p.callback && !called {
			p.callbacks[req.CallbackURL] = 0
		}
		p.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		if p.callback && !called {
			go p.acknowledge(req.CallbackURL)
		}
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// acknowledge calls back the way the partner guide says: a signature over
// "name.timestamp.nonce".
func (p *processor) acknowledge(callbackURL string) {
	time.Sleep(200 * time.Millisecond) // the erasure takes the partner a moment
	u, err := url.Parse(callbackURL)
	if err != nil {
		return
	}
	name := strings.TrimSuffix(strings.TrimPrefix(u.Path, "/v1/"), ":acknowledge")
	ts := time.Now().Unix()
	nonce := ids.New() + ids.New()
	body, _ := json.Marshal(map[string]any{"timestamp": ts, "nonce": nonce, "signature": sign(p.secret, name+"."+strconv.FormatInt(ts, 10)+"."+nonce)})
	resp, err := http.Post(callbackURL, "application/json", bytes.NewReader(body))
	code := 0
	if err == nil {
		code = resp.StatusCode
		resp.Body.Close()
	}
	p.mu.Lock()
	p.callbacks[callbackURL] = code
	p.mu.Unlock()
}

// TestOnwardErasureReachesProcessors: a member's data went to two processors; the
// erasure sends each the pseudonym it got with the data, the one that calls back is
// acknowledged, the one that never does is recorded as a breach at its contractual
// deadline, and the signed receipt names both.
func TestOnwardErasureReachesProcessors(t *testing.T) {
	dir := t.TempDir()
	s, err := devstack.Start(t.Context(), devstack.Options{DataDir: dir, UIPort: -1, Env: map[string]string{
		"FULFILLMENT_COOLING_OFF": "0s", "FULFILLMENT_ONWARD_POLL_INTERVAL": "500ms",
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
	sh := sharingv1.NewSharingServiceClient(conn)

	good, silent := newProcessor(t, true), newProcessor(t, false)
	const silentDeadline = 3 * time.Second
	for _, pr := range []struct {
		id       string
		p        *processor
		deadline time.Duration
	}{{"acme-pay", good, 72 * time.Hour}, {"silent-ads", silent, silentDeadline}} {
		if _, err := sh.CreatePartner(t.Context(), &sharingv1.CreatePartnerRequest{PartnerId: pr.id, Partner: &sharingv1.Partner{
			DisplayName: pr.id, Kind: sharingv1.PartnerKind_PARTNER_KIND_PROCESSOR, Purposes: []string{"payment_processing"},
			DataCategories: []string{"user.financial"}, AgreementRef: "DPA-" + pr.id, ErasureWebhookUrl: pr.p.srv.URL + "/erase",
			WebhookSecret: pr.p.secret, AckDeadline: durationpb.New(pr.deadline)}}); err != nil {
			t.Fatal(err)
		}
	}

	m := c.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": "Katherine Johnson", "email": "katherine@example.com", "birthDate": "1978-08-26"},
		"password": "trajectories all the way", "requestId": "signup-kj"})
	name := m["name"].(string)
	tok := c.must("POST", "/v1/auth:signIn", "", map[string]any{"email": "katherine@example.com", "password": "trajectories all the way"})["accessToken"].(string)
	pseudonyms := map[string]string{}
	for _, p := range []string{"acme-pay", "silent-ads"} {
		res, err := sh.AuthorizeDisclosure(t.Context(), &sharingv1.AuthorizeDisclosureRequest{Member: name, Partner: "partners/" + p, Purpose: "payment_processing",
			DataCategories: []string{"user.financial"}, RequestId: "pay-" + p})
		if err != nil || !res.GetAllowed() {
			t.Fatalf("disclosure to %s: %v %v", p, res, err)
		}
		pseudonyms[p] = res.GetPartnerSubjectId()
	}

	er := c.must("POST", "/v1/"+name+"/privacyRequests?requestId=erase-kj", tok, map[string]any{"kind": "REQUEST_KIND_ERASURE"})
	// The erasure ends the member's sessions (the gateway refuses their token within
	// seconds): an operator watches it finish.
	opTok := c.must("POST", "/v1/operators:signIn", "", map[string]any{"email": s.Operator.Email, "password": s.Operator.Password, "totpCode": s.Operator.TOTPCode(time.Now())})["accessToken"].(string)
	done := c.awaitState(er["name"].(string), opTok, "REQUEST_STATE_COMPLETED")
	reqID := er["name"].(string)[strings.LastIndex(er["name"].(string), "/")+1:]

	for id, p := range map[string]*processor{"acme-pay": good, "silent-ads": silent} {
		p.mu.Lock()
		if len(p.subjects) == 0 {
			t.Errorf("%s never received the erasure", id)
		}
		for _, got := range p.subjects {
			if got != pseudonyms[id] {
				t.Errorf("%s got subject %q, want the pseudonym it received with the data %q", id, got, pseudonyms[id])
			}
		}
		if p.badSig > 0 {
			t.Errorf("%s: %d requests with a bad signature", id, p.badSig)
		}
		p.mu.Unlock()
	}
	good.mu.Lock()
	for u, code := range good.callbacks {
		if code != http.StatusOK {
			t.Errorf("callback %s through the gateway answered %d", u, code)
		}
	}
	good.mu.Unlock()

	// The receipt names both processors and says which acknowledged.
	var receipt struct {
		Processors []struct {
			Partner      string
			Acknowledged bool
		}
	}
	var payload []byte
	if err := s.Fulfillment.Activities.DB.QueryRowContext(t.Context(), `SELECT receipt_payload FROM requests WHERE id = $1`, reqID).Scan(&payload); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(payload, &receipt)
	acked := map[string]bool{}
	for _, p := range receipt.Processors {
		acked[p.Partner] = p.Acknowledged
	}
	if len(acked) != 2 || !acked["partners/acme-pay"] || acked["partners/silent-ads"] {
		t.Fatalf("receipt processors = %+v (payload %s)", receipt.Processors, payload)
	}
	steps := map[string]string{}
	for _, st := range done["progress"].([]any) {
		st := st.(map[string]any)
		steps[st["step"].(string)] = st["state"].(string)
	}
	if steps["onward.partners/acme-pay"] != "acknowledged" || steps["onward.partners/silent-ads"] != "unacknowledged" {
		t.Errorf("progress = %v", steps)
	}

	// The silent processor's breach is recorded at its contractual deadline.
	var at int64
	if err := s.Fulfillment.Activities.DB.QueryRowContext(t.Context(), `SELECT created_at FROM escalations WHERE request_id = $1 AND level = $2`,
		reqID, "onward-breach:partners/silent-ads").Scan(&at); err != nil {
		t.Fatalf("no breach recorded for the silent processor: %v", err)
	}
	silent.mu.Lock()
	sent := silent.first
	silent.mu.Unlock()
	if late := time.UnixMicro(at).Sub(sent); late < silentDeadline-time.Second || late > silentDeadline+5*time.Second {
		t.Errorf("breach recorded %v after the first delivery, want about the %v deadline", late, silentDeadline)
	}
}
