package preferences_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	"lethe.dev/services/preferences/internal/prefs"
)

// fakeMembers is identity as the policy notifier sees it: members in pages, and a
// mailbox that keeps one message per request id (identity's outbox does the same).
type fakeMembers struct {
	mu      sync.Mutex
	members []prefs.PageMember
	mails   map[string]string // request id → member
	perMem  map[string]int
}

func (f *fakeMembers) MemberPage(_ context.Context, token string) ([]prefs.PageMember, string, error) {
	start, _ := strconv.Atoi(token)
	end := min(start+100, len(f.members))
	next := ""
	if end < len(f.members) {
		next = strconv.Itoa(end)
	}
	return f.members[start:end], next, nil
}

// fakeNotices records the change-notice workflows publishing starts (Temporal's part is
// tested in internal/policychange and over HTTP in devstack).
type fakeNotices struct {
	mu      sync.Mutex
	started []string
}

func (f *fakeNotices) StartPolicyNotice(_ context.Context, policy, version string, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = append(f.started, policy+"/"+version)
	return nil
}

func (f *fakeMembers) MailPolicyChange(_ context.Context, memberID, reference, detail, requestID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.mails[requestID]; !ok {
		f.mails[requestID] = memberID
		f.perMem[memberID]++
	}
	return nil
}

// TestPolicyVersionsConsentAndNotice: a version lowering protection for "ads" keeps ads
// off for a member from its effective date until they accept it (or a later version),
// every acceptance is a consent record with the version, and every member is emailed
// each version once, across pages.
func TestPolicyVersionsConsentAndNotice(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
		h.svc.Server.Now = func() time.Time { return now }
		fm := &fakeMembers{mails: map[string]string{}, perMem: map[string]int{}}
		for i := range 250 {
			fm.members = append(fm.members, prefs.PageMember{ID: fmt.Sprintf("member%08d", i), SignedUp: now.Add(-time.Hour)})
		}
		h.svc.Server.PolicyMailer = fm
		if _, err := h.client.CreatePolicyVersion(ctx, &preferencesv1.CreatePolicyVersionRequest{Parent: "policies/trakt", PolicyVersionId: "2026-10-01",
			PolicyVersion: &preferencesv1.PolicyVersion{Summary: "s", EffectiveTime: timestamppb.New(now)}}); !isCode(err, codes.FailedPrecondition) {
			t.Fatalf("publishing without Temporal, so nobody would be told: %v", err)
		}
		notices := &fakeNotices{}
		h.svc.Server.PolicyNotices = notices
		publish := func(id string, lowers bool, eff time.Time, purposes ...string) (*preferencesv1.PolicyVersion, error) {
			return h.client.CreatePolicyVersion(ctx, &preferencesv1.CreatePolicyVersionRequest{Parent: "policies/trakt", PolicyVersionId: id,
				PolicyVersion: &preferencesv1.PolicyVersion{Summary: "summary of " + id, EffectiveTime: timestamppb.New(eff), LowersProtection: lowers, AffectedPurposes: purposes}})
		}
		if _, err := publish("2026-11-01", false, now.Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Minute)
		v2, err := publish("2026-12-08", true, now.Add(7*24*time.Hour), "ads", "ads")
		if err != nil || len(v2.GetAffectedPurposes()) != 1 {
			t.Fatalf("lowering version: %v %v", v2, err)
		}
		if _, err := publish("2026-12-08", true, now.Add(7*24*time.Hour), "ads"); err != nil {
			t.Fatalf("same version again: %v", err)
		}
		if _, err := publish("2026-12-08", false, now.Add(7*24*time.Hour)); !isCode(err, codes.AlreadyExists) {
			t.Fatalf("rewriting a published version: %v", err)
		}
		if _, err := publish("bad", true, now); !isCode(err, codes.InvalidArgument) {
			t.Fatalf("lowering without purposes: %v", err)
		}

		check := func(purpose string) *preferencesv1.CheckPolicyConsentResponse {
			t.Helper()
			res, err := h.client.CheckPolicyConsent(ctx, &preferencesv1.CheckPolicyConsentRequest{Member: alice, Purpose: purpose})
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		if !check("ads").GetAllowed() {
			t.Fatal("before its effective date the previous terms apply")
		}
		now = now.Add(8 * 24 * time.Hour)
		if res := check("ads"); res.GetAllowed() || len(res.GetMissingVersions()) != 1 || res.GetMissingVersions()[0] != "policies/trakt/versions/2026-12-08" {
			t.Fatalf("ads after a lowering change without consent: %v", res)
		}
		if !check("analytics").GetAllowed() {
			t.Fatal("a purpose the change does not name stays allowed")
		}

		acceptName := alice + "/policyAcceptances/trakt"
		accept := func(v string) *preferencesv1.PolicyAcceptance {
			t.Helper()
			a, err := h.client.AcceptPolicyVersion(ctx, &preferencesv1.AcceptPolicyVersionRequest{Name: acceptName, Version: "policies/trakt/versions/" + v, RequestId: "accept-" + v})
			if err != nil {
				t.Fatal(err)
			}
			return a
		}
		a := accept("2026-11-01") // the older version does not cover the newer change
		if a.GetAcceptedVersion() != "policies/trakt/versions/2026-11-01" || len(a.GetPendingVersions()) != 1 || check("ads").GetAllowed() {
			t.Fatalf("after accepting the older version: %v", a)
		}
		now = now.Add(time.Second)
		accept("2026-12-08")
		a = accept("2026-12-08") // again: idempotent
		if a.GetAcceptedVersion() != "policies/trakt/versions/2026-12-08" || len(a.GetPendingVersions()) != 0 || a.GetCurrentVersion() != "policies/trakt/versions/2026-12-08" {
			t.Fatalf("after accepting the change: %v", a)
		}
		if !check("ads").GetAllowed() {
			t.Fatal("ads stay off after the member accepted the change")
		}
		got, err := h.client.GetPolicyAcceptance(ctx, &preferencesv1.GetPolicyAcceptanceRequest{Name: acceptName})
		if err != nil || got.GetAcceptedVersion() != a.GetAcceptedVersion() || got.GetAcceptTime() == nil {
			t.Fatalf("get acceptance: %v %v", got, err)
		}
		recs, err := h.client.ListConsentRecords(ctx, &preferencesv1.ListConsentRecordsRequest{Parent: alice})
		if err != nil {
			t.Fatal(err)
		}
		var versions []string
		for _, r := range recs.GetConsentRecords() {
			if r.GetSetting() == "policy/trakt" && r.GetValue() == "accepted" && r.GetSource() == preferencesv1.ConsentSource_CONSENT_SOURCE_POLICY_ACCEPTANCE {
				versions = append(versions, r.GetPolicyVersion())
			}
		}
		if len(versions) != 2 || versions[0] != "2026-12-08" || versions[1] != "2026-11-01" {
			t.Fatalf("consent records of acceptances: %v", versions)
		}
		if _, err := h.client.AcceptPolicyVersion(ctx, &preferencesv1.AcceptPolicyVersionRequest{Name: alice + "/policyAcceptances/netflix", Version: "policies/trakt/versions/2026-12-08"}); !isCode(err, codes.InvalidArgument) {
			t.Fatalf("accepting another policy's version: %v", err)
		}

		// Publishing started one workflow per version (the repeat joined it); its
		// activity emails every member each version once, a page at a time.
		if len(notices.started) != 3 || notices.started[0] != "trakt/2026-11-01" || notices.started[2] != "trakt/2026-12-08" {
			t.Fatalf("workflows started: %v", notices.started)
		}
		for _, v := range []string{"2026-11-01", "2026-12-08"} {
			for pages := 0; ; pages++ {
				n, done, err := h.svc.Server.NotifyPolicyPage(ctx, "trakt", v)
				if err != nil || pages > 3 {
					t.Fatalf("page %d of %s: %v", pages, v, err)
				}
				if done {
					break
				}
				if n != 100 {
					t.Fatalf("page %d of %s emailed %d", pages, v, n)
				}
			}
			if n, done, err := h.svc.Server.NotifyPolicyPage(ctx, "trakt", v); n != 0 || !done || err != nil {
				t.Fatalf("a page after the last: %d %v %v", n, done, err)
			}
		}
		if len(fm.mails) != 500 {
			t.Fatalf("%d emails, want 250 members × 2 versions", len(fm.mails))
		}
		for m, n := range fm.perMem {
			if n != 2 {
				t.Fatalf("member %s got %d emails", m, n)
			}
		}
		list, err := h.client.ListPolicyVersions(ctx, &preferencesv1.ListPolicyVersionsRequest{Parent: "policies/trakt"})
		if err != nil || len(list.GetPolicyVersions()) != 2 || list.GetPolicyVersions()[0].GetName() != v2.GetName() {
			t.Fatalf("list: %v %v", list, err)
		}
		for _, v := range list.GetPolicyVersions() {
			if v.GetNotifiedCount() != 250 || !v.GetNotificationComplete() {
				t.Fatalf("notice progress: %v", v)
			}
		}
	})
}

func isCode(err error, c codes.Code) bool {
	got, _ := reason(err)
	return err != nil && got == c
}

// TestPolicyChangeGatesMarketing: a version lowering protection for partner offers
// ("marketing_partner_offers") stops that mail to a subscribed member until they accept
// it; other topics go on.
func TestPolicyChangeGatesMarketing(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		h.svc.Server.PolicyNotices = &fakeNotices{}
		email := preferencesv1.Channel_CHANNEL_EMAIL
		if _, err := h.client.UpdateCommunicationPreferences(ctx, &preferencesv1.UpdateCommunicationPreferencesRequest{Name: alice + "/communicationPreferences", RequestId: "sub",
			Changes: []*preferencesv1.SubscriptionChange{{Channel: email, Topic: preferencesv1.Topic_TOPIC_PARTNER_OFFERS, Subscribed: true}, {Channel: email, Topic: preferencesv1.Topic_TOPIC_NEWSLETTER, Subscribed: true}}}); err != nil {
			t.Fatal(err)
		}
		send := func(topic preferencesv1.Topic) string {
			t.Helper()
			res, err := h.client.AuthorizeMarketing(ctx, &preferencesv1.AuthorizeMarketingRequest{Member: alice, Channel: email, Topic: topic})
			if err != nil {
				t.Fatal(err)
			}
			return res.GetReason()
		}
		if _, err := h.client.CreatePolicyVersion(ctx, &preferencesv1.CreatePolicyVersionRequest{Parent: "policies/netflix", PolicyVersionId: "2026-12-01",
			PolicyVersion: &preferencesv1.PolicyVersion{Summary: "Partner offers use your viewing history.", EffectiveTime: timestamppb.New(time.Now().Add(-time.Minute)),
				LowersProtection: true, AffectedPurposes: []string{"marketing_partner_offers"}}}); err != nil {
			t.Fatal(err)
		}
		if r := send(preferencesv1.Topic_TOPIC_PARTNER_OFFERS); r != "POLICY_CONSENT_REQUIRED" {
			t.Fatalf("partner offers before consent: %s", r)
		}
		if r := send(preferencesv1.Topic_TOPIC_NEWSLETTER); r != "ALLOWED" {
			t.Fatalf("newsletter: %s", r)
		}
		if _, err := h.client.AcceptPolicyVersion(ctx, &preferencesv1.AcceptPolicyVersionRequest{Name: alice + "/policyAcceptances/netflix", Version: "policies/netflix/versions/2026-12-01"}); err != nil {
			t.Fatal(err)
		}
		if r := send(preferencesv1.Topic_TOPIC_PARTNER_OFFERS); r != "ALLOWED" {
			t.Fatalf("partner offers after consent: %s", r)
		}
	})
}

// signUps is identity's sign-up times.
type signUps map[string]time.Time

func (f signUps) SignedUp(_ context.Context, memberID string) (time.Time, bool, error) {
	at, ok := f[memberID]
	return at, ok, nil
}

// TestNewMemberAcceptsTheCurrentVersionAtSignUp: a member who signs up after a lowering
// version was published accepted it at sign-up (a consent record of source SIGN_UP,
// dated at the sign-up, naming that version), so its gate does not stop them; a member
// who signed up before it is asked; a version published after the sign-up gates the
// newcomer like everyone else.
func TestNewMemberAcceptsTheCurrentVersionAtSignUp(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
		h.svc.Server.Now = func() time.Time { return now }
		h.svc.Server.PolicyNotices = &fakeNotices{}
		const bob = "members/bob000000001"
		h.svc.Server.SignUps = signUps{"alice0000001": now.Add(-24 * time.Hour), "bob000000001": now.Add(time.Hour)}
		publish := func(id string) {
			t.Helper()
			if _, err := h.client.CreatePolicyVersion(ctx, &preferencesv1.CreatePolicyVersionRequest{Parent: "policies/trakt", PolicyVersionId: id,
				PolicyVersion: &preferencesv1.PolicyVersion{Summary: "ads use viewing history", EffectiveTime: timestamppb.New(now), LowersProtection: true, AffectedPurposes: []string{"ads"}}}); err != nil {
				t.Fatal(err)
			}
		}
		check := func(m string) bool {
			t.Helper()
			res, err := h.client.CheckPolicyConsent(ctx, &preferencesv1.CheckPolicyConsentRequest{Member: m, Purpose: "ads"})
			if err != nil {
				t.Fatal(err)
			}
			return res.GetAllowed()
		}
		publish("2026-12-01")
		now = now.Add(2 * time.Hour) // bob signed up an hour after the version
		if check(alice) {
			t.Fatal("a member who signed up before the version is not asked")
		}
		if !check(bob) || !check(bob) {
			t.Fatal("a member who signed up after the version is refused")
		}
		a, err := h.client.GetPolicyAcceptance(ctx, &preferencesv1.GetPolicyAcceptanceRequest{Name: bob + "/policyAcceptances/trakt"})
		if err != nil || a.GetAcceptedVersion() != "policies/trakt/versions/2026-12-01" || len(a.GetPendingVersions()) != 0 || !a.GetAcceptTime().AsTime().Equal(now.Add(-time.Hour)) {
			t.Fatalf("the newcomer's acceptance: %v %v", a, err)
		}
		recs, err := h.client.ListConsentRecords(ctx, &preferencesv1.ListConsentRecordsRequest{Parent: bob})
		if err != nil || len(recs.GetConsentRecords()) != 1 {
			t.Fatalf("the newcomer's consent records (one, however often asked): %v %v", recs, err)
		}
		if r := recs.GetConsentRecords()[0]; r.GetSetting() != "policy/trakt" || r.GetPolicyVersion() != "2026-12-01" || r.GetSource() != preferencesv1.ConsentSource_CONSENT_SOURCE_SIGN_UP {
			t.Fatalf("the sign-up acceptance: %v", r)
		}
		publish("2027-01-01") // after bob's sign-up: he is asked like everyone
		now = now.Add(time.Minute)
		if check(bob) {
			t.Fatal("a version published after the sign-up does not ask the newcomer")
		}
		if check("members/carol0000001") { // identity does not know them
			t.Fatal("a member identity does not know is allowed")
		}
	})
}
