package sharing_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	subjectv1 "lethe.dev/gen/lethe/subject/v1"
	"lethe.dev/platform/grpcserver/grpctest"
	"lethe.dev/platform/storage/storagetest"
	"lethe.dev/services/sharing"
	"lethe.dev/services/sharing/internal/notice"
	impl "lethe.dev/services/sharing/internal/sharing"
)

// recordingNotifier stands in for Temporal in gRPC-level tests (the workflow itself is
// tested in Temporal's test environment below): it runs the notify activity at once.
type recordingNotifier struct {
	mu       sync.Mutex
	started  []string
	signals  []string
	activity *notice.Activities
}

func (r *recordingNotifier) StartNotice(ctx context.Context, id string, period time.Duration) error {
	r.mu.Lock()
	r.started = append(r.started, id)
	r.mu.Unlock()
	return r.activity.MarkNotified(ctx, notice.Input{NoticeID: id, NoticePeriod: period})
}

func (r *recordingNotifier) SignalObjection(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.signals = append(r.signals, id)
	return nil
}

// choices stands in for preferences in gRPC-level tests (the dev-stack test reads the
// real service over gRPC): what the member chose, or an outage.
type choices struct {
	mu  sync.Mutex
	c   impl.AdChoice
	err error
	// unaccepted maps a purpose to the policy versions lowering it the member has not
	// accepted (preferences' CheckPolicyConsent).
	unaccepted map[string][]string
}

func (c *choices) MissingPolicyVersions(_ context.Context, _, purpose string) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unaccepted[purpose], c.err
}

func (c *choices) set(a impl.AdChoice, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.c, c.err = a, err
}

func (c *choices) AdChoice(context.Context, string) (impl.AdChoice, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.c, c.err
}

type harness struct {
	ads      *choices
	svc      *sharing.Service
	client   sharingv1.SharingServiceClient
	subject  subjectv1.DataSubjectServiceClient
	notifier *recordingNotifier
}

func start(t testing.TB, dbURL string) *harness {
	t.Helper()
	cfg := sharing.Config{ListenAddr: "127.0.0.1:0", DatabaseURL: dbURL, DataDir: t.TempDir(), AllowLoopbackHTTP: true, PublicURL: "http://127.0.0.1:8080", WebhookTimeout: 300 * time.Millisecond}
	svc, err := sharing.New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := &recordingNotifier{activity: &notice.Activities{DB: svc.Server.DB, Now: time.Now}}
	svc.Server.Notifier = n
	ads := &choices{}
	svc.Server.AdChoices = ads
	svc.Server.PolicyConsent = ads
	t.Cleanup(func() { svc.Close() })
	conn := grpctest.Dial(t, svc.Register)
	return &harness{ads: ads, svc: svc, client: sharingv1.NewSharingServiceClient(conn), subject: subjectv1.NewDataSubjectServiceClient(conn), notifier: n}
}

func engines(t *testing.T, fn func(t *testing.T, h *harness)) {
	for name, url := range storagetest.URLs(t) {
		t.Run(name, func(t *testing.T) { fn(t, start(t, url)) })
	}
}

const (
	member = "members/member000001"
	secret = "0123456789abcdef0123456789abcdef-secret"
)

func reason(err error) (codes.Code, string) {
	s := status.Convert(err)
	for _, d := range s.Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			return s.Code(), i.GetReason()
		}
	}
	return s.Code(), ""
}

func processor(url string) *sharingv1.Partner {
	return &sharingv1.Partner{DisplayName: "Acme Payments Ltd", Kind: sharingv1.PartnerKind_PARTNER_KIND_PROCESSOR, Purposes: []string{"payment_processing"},
		DataCategories: []string{"user.financial", "user.contact.email"}, AgreementRef: "DPA-2024-17", ErasureWebhookUrl: url, WebhookSecret: secret,
		AckDeadline: durationpb.New(72 * time.Hour)}
}

func setup(t testing.TB, h *harness, webhook string) {
	t.Helper()
	ctx := context.Background()
	if _, err := h.client.CreatePartner(ctx, &sharingv1.CreatePartnerRequest{PartnerId: "acme-pay", Partner: processor(webhook)}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.CreatePartner(ctx, &sharingv1.CreatePartnerRequest{PartnerId: "promo-co", Partner: &sharingv1.Partner{DisplayName: "Promo Co", Kind: sharingv1.PartnerKind_PARTNER_KIND_MARKETING_PARTNER,
		Purposes: []string{"joint_promotion"}, DataCategories: []string{"user.contact.email", "user.name"}, AgreementRef: "MKT-9"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.CreatePurpose(ctx, &sharingv1.CreatePurposeRequest{Parent: "partners/promo-co", PurposeId: "joint_promotion",
		Purpose: &sharingv1.Purpose{Description: "A joint promotion you take part in", DataCategories: []string{"user.contact.email"}, LegalBasis: "consent", NoticePeriod: durationpb.New(30 * 24 * time.Hour)}}); err != nil {
		t.Fatal(err)
	}
}

func TestPartnerRegistryRejectsBadInput(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		cases := []struct {
			name  string
			edit  func(p *sharingv1.Partner)
			field string
		}{
			{"plain http to a public host", func(p *sharingv1.Partner) { p.ErasureWebhookUrl = "http://partner.example.com/erase" }, "partner.erasure_webhook_url"},
			{"unknown category", func(p *sharingv1.Partner) { p.DataCategories = []string{"user.favourite_colour"} }, "partner.data_categories"},
			{"processor without secret", func(p *sharingv1.Partner) { p.WebhookSecret = "" }, "partner.webhook_secret"},
			{"no agreement", func(p *sharingv1.Partner) { p.AgreementRef = "" }, "partner.agreement_ref"},
		}
		for _, tc := range cases {
			p := processor("https://partner.example.com/erase")
			tc.edit(p)
			_, err := h.client.CreatePartner(ctx, &sharingv1.CreatePartnerRequest{PartnerId: "bad-partner", Partner: p})
			var fields []string
			for _, d := range status.Convert(err).Details() {
				if br, ok := d.(*errdetails.BadRequest); ok {
					for _, v := range br.GetFieldViolations() {
						fields = append(fields, v.GetField())
					}
				}
			}
			if status.Code(err) != codes.InvalidArgument || len(fields) != 1 || fields[0] != tc.field {
				t.Errorf("%s: %v %v", tc.name, status.Code(err), fields)
			}
		}
		list, _ := h.client.ListPartners(ctx, &sharingv1.ListPartnersRequest{})
		if len(list.GetPartners()) != 0 {
			t.Fatal("a rejected partner was stored")
		}
		p, err := h.client.CreatePartner(ctx, &sharingv1.CreatePartnerRequest{PartnerId: "acme-pay", Partner: processor("http://127.0.0.1:9/erase")})
		if err != nil || p.GetWebhookSecret() != "" {
			t.Fatalf("loopback http in dev: %v; the secret must never be returned (%q)", err, p.GetWebhookSecret())
		}
	})
}

func authorize(h *harness, partner, purpose, reqID string, cats ...string) (*sharingv1.AuthorizeDisclosureResponse, error) {
	return h.client.AuthorizeDisclosure(context.Background(), &sharingv1.AuthorizeDisclosureRequest{Member: member, Partner: partner, Purpose: purpose, DataCategories: cats, RequestId: reqID})
}

func TestAuthorizationMatrix(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		setup(t, h, "https://acme.example.com/erase")
		expect := func(name, partner, purpose, want string, cats ...string) {
			t.Helper()
			got, err := authorize(h, partner, purpose, name, cats...)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if got.GetReason() != want || got.GetAllowed() != (want == "ALLOWED") {
				t.Errorf("%s: %v %s, want %s", name, got.GetAllowed(), got.GetReason(), want)
			}
		}
		expect("unknown partner", "partners/nobody-inc", "x", "PARTNER_UNKNOWN", "user.name")
		expect("undeclared purpose", "partners/acme-pay", "marketing", "PURPOSE_NOT_DECLARED", "user.financial")
		expect("undeclared category", "partners/acme-pay", "payment_processing", "CATEGORY_NOT_DECLARED", "user.behavior.media_consumption")
		expect("processor, declared", "partners/acme-pay", "payment_processing", "ALLOWED", "user.financial")
		expect("marketing without notice", "partners/promo-co", "joint_promotion", "NO_NOTICE", "user.contact.email")
		if _, err := h.client.NotifyMembers(ctx, &sharingv1.NotifyMembersRequest{Purpose: "partners/promo-co/purposes/joint_promotion", Members: []string{member}}); err != nil {
			t.Fatal(err)
		}
		expect("notice pending", "partners/promo-co", "joint_promotion", "NOTICE_PENDING", "user.contact.email")
		if _, err := h.notifier.activity.Resolve(ctx, notice.ResolveInput{NoticeID: h.notifier.started[0]}); err != nil {
			t.Fatal(err)
		}
		expect("notice ended without objection", "partners/promo-co", "joint_promotion", "ALLOWED", "user.contact.email")
		expect("beyond the purpose's categories", "partners/promo-co", "joint_promotion", "CATEGORY_NOT_DECLARED", "user.name")
		if _, err := h.client.CreateObjection(ctx, &sharingv1.CreateObjectionRequest{Parent: member, Objection: &sharingv1.Objection{Partner: "partners/promo-co"}}); err != nil {
			t.Fatal(err)
		}
		expect("objected", "partners/promo-co", "joint_promotion", "OBJECTED", "user.contact.email")
		if _, err := h.client.BlockSharing(ctx, &sharingv1.BlockSharingRequest{Member: member, RequestId: "erase-1"}); err != nil {
			t.Fatal(err)
		}
		expect("blocked by erasure", "partners/acme-pay", "payment_processing", "SHARING_BLOCKED", "user.financial")
		if _, err := authorize(h, "partners/acme-pay", "payment_processing", "bad", "user.nonsense"); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("unknown category: %v", err)
		}
		log, _ := h.client.ListDisclosures(ctx, &sharingv1.ListDisclosuresRequest{Parent: member})
		if len(log.GetDisclosures()) != 2 {
			t.Fatalf("log has %d entries, want exactly the 2 allowed disclosures", len(log.GetDisclosures()))
		}
		again, err := authorize(h, "partners/acme-pay", "payment_processing", "processor, declared", "user.financial")
		if err != nil || again.GetDisclosure().GetName() != log.GetDisclosures()[0].GetName() {
			t.Fatalf("retry of a logged request: %v %v", again, err)
		}
		var denials int
		h.svc.Server.DB.QueryRow(`SELECT COUNT(*) FROM denials`).Scan(&denials)
		if denials != 8 {
			t.Fatalf("denials recorded = %d, want 8", denials)
		}
	})
}

// TestSaleAndSharingFollowAdChoices: advertising and marketing disclosures (a "sale" or
// "sharing") are refused for a member who opted out or whose browser sent Global Privacy
// Control, from the moment preferences records it; processors are unaffected; and when
// the choices cannot be read nothing flows.
func TestSaleAndSharingFollowAdChoices(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		setup(t, h, "https://acme.example.com/erase")
		if _, err := h.client.CreatePartner(ctx, &sharingv1.CreatePartnerRequest{PartnerId: "adnet", Partner: &sharingv1.Partner{DisplayName: "Ad Network Inc", Kind: sharingv1.PartnerKind_PARTNER_KIND_ADVERTISER,
			Purposes: []string{"ads"}, DataCategories: []string{"user.behavior.media_consumption"}, AgreementRef: "ADV-1"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.client.CreatePurpose(ctx, &sharingv1.CreatePurposeRequest{Parent: "partners/adnet", PurposeId: "ads",
			Purpose: &sharingv1.Purpose{Description: "Ads chosen from what you watch", DataCategories: []string{"user.behavior.media_consumption"}, LegalBasis: "consent"}}); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"partners/promo-co/purposes/joint_promotion", "partners/adnet/purposes/ads"} {
			if _, err := h.client.NotifyMembers(ctx, &sharingv1.NotifyMembersRequest{Purpose: p, Members: []string{member}}); err != nil {
				t.Fatal(err)
			}
		}
		for _, id := range h.notifier.started {
			if _, err := h.notifier.activity.Resolve(ctx, notice.ResolveInput{NoticeID: id}); err != nil {
				t.Fatal(err)
			}
		}
		n := 0
		expect := func(choice impl.AdChoice, partner, purpose, cat, want string) {
			t.Helper()
			h.ads.set(choice, nil)
			n++
			got, err := authorize(h, partner, purpose, "ads-"+strconv.Itoa(n), cat)
			if err != nil || got.GetReason() != want || got.GetAllowed() != (want == "ALLOWED") {
				t.Errorf("%+v to %s: %v %v, want %s", choice, partner, got, err, want)
			}
		}
		allowed := impl.AdChoice{PersonalizedAds: true}
		expect(allowed, "partners/adnet", "ads", "user.behavior.media_consumption", "ALLOWED")
		expect(allowed, "partners/promo-co", "joint_promotion", "user.contact.email", "ALLOWED")
		expect(impl.AdChoice{}, "partners/adnet", "ads", "user.behavior.media_consumption", "ADS_NOT_ALLOWED")
		expect(impl.AdChoice{}, "partners/promo-co", "joint_promotion", "user.contact.email", "ALLOWED")
		expect(impl.AdChoice{PersonalizedAds: true, SaleSharingOptOut: true}, "partners/adnet", "ads", "user.behavior.media_consumption", "SALE_SHARING_OPTED_OUT")
		expect(impl.AdChoice{SaleSharingOptOut: true}, "partners/promo-co", "joint_promotion", "user.contact.email", "SALE_SHARING_OPTED_OUT")
		gpc := impl.AdChoice{SaleSharingOptOut: true, GPC: true}
		expect(gpc, "partners/adnet", "ads", "user.behavior.media_consumption", "GLOBAL_PRIVACY_CONTROL")
		expect(gpc, "partners/promo-co", "joint_promotion", "user.contact.email", "GLOBAL_PRIVACY_CONTROL")
		expect(gpc, "partners/acme-pay", "payment_processing", "user.financial", "ALLOWED")

		h.ads.set(allowed, status.Error(codes.Unavailable, "down"))
		if _, err := authorize(h, "partners/adnet", "ads", "ads-outage", "user.behavior.media_consumption"); status.Code(err) != codes.Unavailable {
			t.Fatalf("preferences down: %v, want UNAVAILABLE (nothing flows on a guess)", err)
		}
		h.svc.Server.AdChoices = nil
		if _, err := authorize(h, "partners/promo-co", "joint_promotion", "ads-unwired", "user.contact.email"); status.Code(err) != codes.Unavailable {
			t.Fatalf("no preferences connection: %v, want UNAVAILABLE", err)
		}
		log, _ := h.client.ListDisclosures(ctx, &sharingv1.ListDisclosuresRequest{Parent: member})
		if len(log.GetDisclosures()) != 4 {
			t.Fatalf("log has %d entries, want the 4 allowed", len(log.GetDisclosures()))
		}
	})
}

// TestNoticeLinkObjects: the one-click link in a notice email records the member's
// objection without sign-in, once however often it is opened, and data stops flowing;
// a forged or altered token is refused.
func TestNoticeLinkObjects(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		setup(t, h, "https://acme.example.com/erase")
		h.ads.set(impl.AdChoice{}, nil)
		if _, err := h.client.NotifyMembers(ctx, &sharingv1.NotifyMembersRequest{Purpose: "partners/promo-co/purposes/joint_promotion", Members: []string{member}}); err != nil {
			t.Fatal(err)
		}
		id := h.notifier.started[0]
		link := h.svc.Server.NoticeObjectionURL(id)
		if want := "http://127.0.0.1:8080/v1/notices:object?token=" + id + "."; !strings.HasPrefix(link, want) {
			t.Fatalf("link = %s, want %s...", link, want)
		}
		tok := h.svc.Server.NoticeToken(id)
		other := "x" // an altered first character (ids are random: one in 32 starts with x)
		if tok[0] == 'x' {
			other = "y"
		}
		for _, bad := range []string{"", id, id + ".00", other + tok[1:], tok + "0"} {
			if _, err := h.client.ObjectToNotice(ctx, &sharingv1.ObjectToNoticeRequest{Token: bad}); status.Code(err) != codes.InvalidArgument {
				t.Errorf("token %q: %v, want INVALID_ARGUMENT", bad, err)
			}
		}
		for range 2 {
			res, err := h.client.ObjectToNotice(ctx, &sharingv1.ObjectToNoticeRequest{Token: tok})
			if err != nil || res.GetPartner() != "partners/promo-co" || res.GetPartnerDisplayName() != "Promo Co" || res.GetPurpose() != "joint_promotion" {
				t.Fatalf("objection by link: %v %v", res, err)
			}
		}
		objs, _ := h.client.ListObjections(ctx, &sharingv1.ListObjectionsRequest{Parent: member})
		if len(objs.GetObjections()) != 1 || objs.GetObjections()[0].GetPurpose() != "joint_promotion" {
			t.Fatalf("objections = %v, want exactly one, to the notice's purpose", objs)
		}
		if len(h.notifier.signals) == 0 || h.notifier.signals[0] != id {
			t.Fatalf("the pending notice was not signalled: %v", h.notifier.signals)
		}
		if _, err := h.notifier.activity.Resolve(ctx, notice.ResolveInput{NoticeID: id}); err != nil {
			t.Fatal(err)
		}
		if got, _ := authorize(h, "partners/promo-co", "joint_promotion", "after-link", "user.contact.email"); got.GetReason() != "OBJECTED" {
			t.Fatalf("after the objection link: %v", got)
		}
	})
}

func TestDisclosureChainCatchesAnEditedRow(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		setup(t, h, "https://acme.example.com/erase")
		for i := range 3 {
			if r, err := authorize(h, "partners/acme-pay", "payment_processing", "d"+strconv.Itoa(i), "user.financial"); err != nil || !r.GetAllowed() {
				t.Fatal(r, err)
			}
		}
		v, err := h.client.VerifyDisclosureLog(ctx, &sharingv1.VerifyDisclosureLogRequest{Parent: member})
		if err != nil || !v.GetValid() || v.GetEntriesChecked() != 3 {
			t.Fatalf("intact log: %v %v", v, err)
		}
		if _, err := h.svc.Server.DB.Exec(`UPDATE disclosures SET data_categories = '["user.contact.email"]' WHERE seq = 2`); err != nil {
			t.Fatal(err)
		}
		v, _ = h.client.VerifyDisclosureLog(ctx, &sharingv1.VerifyDisclosureLogRequest{Parent: member})
		if v.GetValid() || v.GetFirstInvalid() != member+"/disclosures/2" {
			t.Fatalf("edited log: %v", v)
		}
	})
}

// partnerServer is a real HTTP partner on loopback that behaves as told per request.
type partnerServer struct {
	*httptest.Server
	mode     string // "fail", "slow", "accept", "erase"
	mu       sync.Mutex
	requests []map[string]any
	badSigs  int
}

func newPartner(t *testing.T) *partnerServer {
	p := &partnerServer{mode: "erase"}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		p.mu.Lock()
		mode := p.mode
		if impl.Sign(secret, r.Header.Get("X-Lethe-Timestamp")+"."+string(body)) != r.Header.Get("X-Lethe-Signature") {
			p.badSigs++
		}
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		p.requests = append(p.requests, m)
		p.mu.Unlock()
		switch mode {
		case "fail":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "slow":
			time.Sleep(time.Second)
		case "accept":
			w.WriteHeader(http.StatusAccepted)
		default:
			w.Write([]byte(`{"status":"erased"}`))
		}
	}))
	t.Cleanup(p.Close)
	return p
}

func TestOnwardErasureAgainstARealPartner(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		partner := newPartner(t)
		setup(t, h, partner.URL+"/erase")
		disclosed, err := authorize(h, "partners/acme-pay", "payment_processing", "d1", "user.financial")
		if err != nil || !disclosed.GetAllowed() {
			t.Fatalf("disclosure: %v %v", disclosed, err)
		}
		rec, err := h.client.ListErasureRecipients(ctx, &sharingv1.ListErasureRecipientsRequest{Member: member})
		if err != nil || len(rec.GetPartners()) != 1 || rec.GetPartners()[0] != "partners/acme-pay" {
			t.Fatalf("recipients = %v %v", rec, err)
		}
		send := func() *sharingv1.OnwardErasure {
			t.Helper()
			o, err := h.client.SendOnwardErasure(ctx, &sharingv1.SendOnwardErasureRequest{Member: member, Partner: "partners/acme-pay", RequestId: "erase-1"})
			if err != nil {
				t.Fatal(err)
			}
			return o
		}
		partner.mode = "fail"
		if o := send(); o.GetState() != sharingv1.OnwardErasureState_ONWARD_ERASURE_STATE_FAILED || o.GetLastError() != "HTTP_503" {
			t.Fatalf("503: %v", o)
		}
		partner.mode = "slow"
		if o := send(); o.GetState() != sharingv1.OnwardErasureState_ONWARD_ERASURE_STATE_FAILED || o.GetLastError() != "TIMEOUT" || o.GetAttemptCount() != 2 {
			t.Fatalf("timeout: %v", o)
		}
		partner.mode = "accept"
		o := send()
		if o.GetState() != sharingv1.OnwardErasureState_ONWARD_ERASURE_STATE_SENT {
			t.Fatalf("202: %v", o)
		}
		partner.mu.Lock()
		last := partner.requests[len(partner.requests)-1]
		bad := partner.badSigs
		partner.mu.Unlock()
		if bad != 0 {
			t.Fatalf("%d requests had a bad signature", bad)
		}
		pseudonym, _ := last["partner_subject_id"].(string)
		if len(pseudonym) != 64 || pseudonym != disclosed.GetPartnerSubjectId() {
			t.Fatalf("partner must get the pseudonym it got with the data (%q), got %q", disclosed.GetPartnerSubjectId(), pseudonym)
		}
		for k := range last {
			if k != "erasure_id" && k != "partner_subject_id" && k != "request_time" && k != "callback_url" {
				t.Errorf("erasure request carries unexpected field %q", k)
			}
		}
		ack := func(ts int64, nonce, sig string) error {
			_, err := h.client.AcknowledgeErasure(ctx, &sharingv1.AcknowledgeErasureRequest{Name: o.GetName(), Timestamp: ts, Nonce: nonce, Signature: sig})
			return err
		}
		now := time.Now().Unix()
		sign := func(ts int64, nonce string) string {
			return impl.Sign(secret, o.GetName()+"."+strconv.FormatInt(ts, 10)+"."+nonce)
		}
		if _, r := reason(ack(now, "nonce-forged-000001", impl.Sign("wrong secret", o.GetName()+"."+strconv.FormatInt(now, 10)+".nonce-forged-000001"))); r != "BAD_SIGNATURE" {
			t.Fatalf("forged: %s", r)
		}
		if _, r := reason(ack(now-3600, "nonce-stale-0000001", sign(now-3600, "nonce-stale-0000001"))); r != "STALE_TIMESTAMP" {
			t.Fatalf("stale: %s", r)
		}
		if err := ack(now, "nonce-good-00000001", sign(now, "nonce-good-00000001")); err != nil {
			t.Fatalf("late callback: %v", err)
		}
		if _, r := reason(ack(now, "nonce-good-00000001", sign(now, "nonce-good-00000001"))); r != "REPLAYED_NONCE" {
			t.Fatalf("replay: %s", r)
		}
		got, _ := h.client.GetOnwardErasure(ctx, &sharingv1.GetOnwardErasureRequest{Name: o.GetName()})
		if got.GetState() != sharingv1.OnwardErasureState_ONWARD_ERASURE_STATE_ACKNOWLEDGED || got.GetAcknowledgeTime() == nil {
			t.Fatalf("after callback: %v", got)
		}
		partner.mu.Lock()
		before := len(partner.requests)
		partner.mu.Unlock()
		if again := send(); again.GetState() != sharingv1.OnwardErasureState_ONWARD_ERASURE_STATE_ACKNOWLEDGED {
			t.Fatalf("repeat after ack: %v", again)
		}
		partner.mu.Lock()
		after := len(partner.requests)
		partner.mu.Unlock()
		if after != before {
			t.Fatal("an acknowledged erasure was sent again")
		}
		var rejected int
		h.svc.Server.DB.QueryRow(`SELECT COUNT(*) FROM rejected_callbacks`).Scan(&rejected)
		if rejected != 3 {
			t.Fatalf("rejected callbacks recorded = %d, want 3", rejected)
		}
	})
}

func TestErasureKeepsTheLogUnderTheTombstone(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		setup(t, h, "https://acme.example.com/erase")
		for i := range 3 {
			authorize(h, "partners/acme-pay", "payment_processing", "d"+strconv.Itoa(i), "user.financial")
		}
		h.client.CreateObjection(ctx, &sharingv1.CreateObjectionRequest{Parent: member, Objection: &sharingv1.Objection{Purpose: "marketing"}})
		res, err := h.subject.EraseSubjectData(ctx, &subjectv1.EraseSubjectDataRequest{Subject: member, RequestId: "erase-1", TombstoneId: "tomb0000001"})
		if err != nil {
			t.Fatal(err)
		}
		counts := map[string]int64{}
		for _, r := range res.GetResults() {
			counts[r.GetDataset()] = r.GetCount()
		}
		if counts["objections"] != 1 || counts["disclosures"] != 3 {
			t.Fatalf("results = %v", counts)
		}
		rep, _ := h.subject.ReportSubjectData(ctx, &subjectv1.ReportSubjectDataRequest{Subject: member, TombstoneId: "tomb0000001"})
		if len(rep.GetHeld()) != 1 || rep.GetHeld()[0].GetLegalBasis() == "" || rep.GetHeld()[0].GetCount() != 3 {
			t.Fatalf("held after erasure = %v", rep.GetHeld())
		}
		v, err := h.svc.Server.VerifyTombstoneLog(ctx, "tomb0000001")
		if err != nil || !v.GetValid() || v.GetEntriesChecked() != 3 {
			t.Fatalf("chain under the tombstone: %v %v", v, err)
		}
		if r, _ := authorize(h, "partners/acme-pay", "payment_processing", "late", "user.financial"); r.GetAllowed() {
			t.Fatal("data flowed for an erased member")
		}
		again, err := h.subject.EraseSubjectData(ctx, &subjectv1.EraseSubjectDataRequest{Subject: member, RequestId: "erase-1", TombstoneId: "tomb0000001"})
		if err != nil || !again.GetReplayed() {
			t.Fatalf("replay: %v %v", again, err)
		}
	})
}

// BenchmarkAuthorizeDisclosure measures the sharing check over loopback gRPC: an allowed
// disclosure (appended to the hash-chained log) and a refusal (recorded as a denial).
func BenchmarkAuthorizeDisclosure(b *testing.B) {
	for name, url := range storagetest.URLs(b) {
		b.Run(name, func(b *testing.B) {
			h := start(b, url)
			setup(b, h, "https://acme.example.com/erase")
			ctx := context.Background()
			b.Run("allowed", func(b *testing.B) {
				i := 0
				for b.Loop() {
					i++
					res, err := h.client.AuthorizeDisclosure(ctx, &sharingv1.AuthorizeDisclosureRequest{Member: member, Partner: "partners/acme-pay",
						Purpose: "payment_processing", DataCategories: []string{"user.financial"}, RequestId: name + "-bench-" + strconv.Itoa(i)})
					if err != nil || !res.GetAllowed() {
						b.Fatalf("%v %v", res, err)
					}
				}
			})
			b.Run("denied", func(b *testing.B) {
				for b.Loop() {
					res, err := h.client.AuthorizeDisclosure(ctx, &sharingv1.AuthorizeDisclosureRequest{Member: member, Partner: "partners/promo-co",
						Purpose: "joint_promotion", DataCategories: []string{"user.contact.email"}, RequestId: "bench-denied"})
					if err != nil || res.GetReason() != "NO_NOTICE" {
						b.Fatalf("%v %v", res, err)
					}
				}
			})
		})
	}
}

func TestPartnerUpdateAndList(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		setup(t, h, "https://acme.example.com/erase")
		if _, err := h.client.CreatePartner(ctx, &sharingv1.CreatePartnerRequest{PartnerId: "zeta-ads", Partner: &sharingv1.Partner{DisplayName: "Zeta Ads",
			Kind: sharingv1.PartnerKind_PARTNER_KIND_ADVERTISER, Purposes: []string{"ads"}, DataCategories: []string{"user.contact.email"}, AgreementRef: "ADV-1"}}); err != nil {
			t.Fatal(err)
		}
		var names []string
		token := ""
		for pages := 0; ; pages++ {
			page, err := h.client.ListPartners(ctx, &sharingv1.ListPartnersRequest{PageSize: 2, PageToken: token})
			if err != nil || pages > 3 {
				t.Fatalf("list: %v (pages %d)", err, pages)
			}
			for _, p := range page.GetPartners() {
				names = append(names, p.GetName())
				if p.GetWebhookSecret() != "" {
					t.Errorf("%s: webhook secret returned", p.GetName())
				}
			}
			if token = page.GetNextPageToken(); token == "" {
				break
			}
		}
		if want := []string{"partners/acme-pay", "partners/promo-co", "partners/zeta-ads"}; !slices.Equal(names, want) {
			t.Fatalf("listed %v, want %v", names, want)
		}

		cur, err := h.client.GetPartner(ctx, &sharingv1.GetPartnerRequest{Name: "partners/acme-pay"})
		if err != nil {
			t.Fatal(err)
		}
		update := func(p *sharingv1.Partner, paths ...string) (*sharingv1.Partner, error) {
			return h.client.UpdatePartner(ctx, &sharingv1.UpdatePartnerRequest{Partner: p, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}})
		}
		if _, err := update(&sharingv1.Partner{Name: cur.GetName(), Etag: cur.GetEtag(), DataCategories: []string{"user.nonsense"}}, "data_categories"); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("unknown category: %v", err)
		}
		if _, err := update(&sharingv1.Partner{Name: cur.GetName(), Etag: cur.GetEtag(), ErasureWebhookUrl: "http://acme.example.com/erase"}, "erasure_webhook_url"); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("plain http webhook off loopback: %v", err)
		}
		got, err := update(&sharingv1.Partner{Name: cur.GetName(), Etag: cur.GetEtag(), DisplayName: "Acme Payments plc"}, "display_name")
		if err != nil || got.GetDisplayName() != "Acme Payments plc" || got.GetEtag() == cur.GetEtag() || got.GetErasureWebhookUrl() != cur.GetErasureWebhookUrl() {
			t.Fatalf("update: %v %v", got, err)
		}
		if _, err := update(&sharingv1.Partner{Name: cur.GetName(), Etag: cur.GetEtag(), DisplayName: "Stale"}, "display_name"); status.Code(err) != codes.Aborted {
			t.Fatalf("stale etag: %v", err)
		}
		final, _ := h.client.GetPartner(ctx, &sharingv1.GetPartnerRequest{Name: "partners/acme-pay"})
		if final.GetDisplayName() != "Acme Payments plc" || !slices.Equal(final.GetDataCategories(), cur.GetDataCategories()) {
			t.Fatalf("rejected updates changed the partner: %v", final)
		}
	})
}

// TestPolicyChangeWaitsForConsent: while a policy change lowering protection for a
// purpose waits for the member's consent, disclosures for that purpose are refused
// POLICY_CONSENT_REQUIRED (even to a processor); other purposes flow; after the member
// accepts, it flows; without an answer from preferences nothing flows.
func TestPolicyChangeWaitsForConsent(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		setup(t, h, "https://acme.example.com/erase")
		h.ads.mu.Lock()
		h.ads.unaccepted = map[string][]string{"payment_processing": {"policies/trakt/versions/2026-12-08"}}
		h.ads.mu.Unlock()
		got, err := authorize(h, "partners/acme-pay", "payment_processing", "pc-1", "user.financial")
		if err != nil || got.GetAllowed() || got.GetReason() != "POLICY_CONSENT_REQUIRED" {
			t.Fatalf("before consent: %v %v", got, err)
		}
		h.ads.mu.Lock()
		h.ads.unaccepted = nil
		h.ads.mu.Unlock()
		if got, err = authorize(h, "partners/acme-pay", "payment_processing", "pc-2", "user.financial"); err != nil || !got.GetAllowed() {
			t.Fatalf("after consent: %v %v", got, err)
		}
		h.ads.set(impl.AdChoice{}, status.Error(codes.Unavailable, "down"))
		if _, err := authorize(h, "partners/acme-pay", "payment_processing", "pc-3", "user.financial"); status.Code(err) != codes.Unavailable {
			t.Fatalf("preferences down: %v, want UNAVAILABLE", err)
		}
		h.svc.Server.PolicyConsent = nil
		h.ads.set(impl.AdChoice{}, nil)
		if _, err := authorize(h, "partners/acme-pay", "payment_processing", "pc-4", "user.financial"); status.Code(err) != codes.Unavailable {
			t.Fatalf("no preferences connection: %v, want UNAVAILABLE", err)
		}
	})
}
