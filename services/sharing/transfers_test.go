package sharing_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/services/sharing/internal/notice"
	impl "lethe.dev/services/sharing/internal/sharing"
)

// pagedMembers is identity's member list, two per page, newest first, with sign-up times.
type pagedMembers struct {
	ids     []string
	signUps map[string]time.Time
}

func (p pagedMembers) MemberSignUps(ctx context.Context, token string) ([]impl.MemberSignUp, string, error) {
	ids, next, err := p.MemberPage(ctx, token)
	var out []impl.MemberSignUp
	for _, id := range ids {
		out = append(out, impl.MemberSignUp{ID: id, SignedUp: p.signUps[id]})
	}
	return out, next, err
}

func (p pagedMembers) MemberPage(_ context.Context, token string) ([]string, string, error) {
	start, _ := strconv.Atoi(token)
	end := min(start+2, len(p.ids))
	next := ""
	if end < len(p.ids) {
		next = strconv.Itoa(end)
	}
	return p.ids[start:end], next, nil
}

// startedTransfers records the transfer workflows started.
type startedTransfers struct {
	mu  sync.Mutex
	ids []string
}

func (s *startedTransfers) StartTransfer(_ context.Context, id string, _ time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids = append(s.ids, id)
	return nil
}

// TestBusinessTransfer: a transfer to an acquirer gives every member one notice (across
// pages, once however often a page is retried), and members who sign up later one each
// (the workflow's sweeps before the date; their first disclosure after it); before the
// date nothing flows to the acquirer; after it, data flows for a member who did not
// object and is refused for one who did, and for a newcomer only once their own notice
// has run. Bad transfers are refused and store nothing.
func TestBusinessTransfer(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		now := time.Now().UTC()
		h.svc.Server.Now = func() time.Time { return now }
		h.ads.set(impl.AdChoice{}, nil)
		started := &startedTransfers{}
		h.svc.Server.Transfers = started
		other := "members/member000002"
		members := pagedMembers{ids: []string{"member000001", "member000002", "member000003"}, signUps: map[string]time.Time{}}
		for _, id := range members.ids {
			members.signUps[id] = now.Add(-time.Hour)
		}
		h.svc.Server.Members = members
		if _, err := h.client.CreatePartner(ctx, &sharingv1.CreatePartnerRequest{PartnerId: "newco", Partner: &sharingv1.Partner{DisplayName: "NewCo Holdings", Kind: sharingv1.PartnerKind_PARTNER_KIND_ACQUIRER,
			Purposes: []string{"acquisition"}, DataCategories: []string{"user.contact.email", "user.behavior.media_consumption"}, AgreementRef: "SPA-2026"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.client.CreatePurpose(ctx, &sharingv1.CreatePurposeRequest{Parent: "partners/newco", PurposeId: "acquisition",
			Purpose: &sharingv1.Purpose{Description: "NewCo runs the service after buying it", DataCategories: []string{"user.contact.email", "user.behavior.media_consumption"},
				LegalBasis: "legitimate_interest", NoticePeriod: durationpb.New(30 * 24 * time.Hour)}}); err != nil {
			t.Fatal(err)
		}
		setup(t, h, "https://acme.example.com/erase") // a processor (acme-pay), not an acquirer
		eff := now.Add(30 * 24 * time.Hour)
		create := func(id, acquirer string, at time.Time, cats ...string) (*sharingv1.BusinessTransfer, error) {
			return h.client.CreateBusinessTransfer(ctx, &sharingv1.CreateBusinessTransferRequest{BusinessTransferId: id, BusinessTransfer: &sharingv1.BusinessTransfer{
				Acquirer: acquirer, Purpose: "acquisition", DataCategories: cats, EffectiveTime: timestamppb.New(at)}})
		}
		for name, err := range map[string]error{
			"past date": func() error {
				_, err := create("bad-1", "partners/newco", now.Add(-time.Hour), "user.contact.email")
				return err
			}(),
			"not an acquirer":   func() error { _, err := create("bad-2", "partners/acme-pay", eff, "user.contact.email"); return err }(),
			"category too wide": func() error { _, err := create("bad-3", "partners/newco", eff, "user.financial"); return err }(),
		} {
			if c, _ := reason(err); c != codes.InvalidArgument {
				t.Errorf("%s: %v, want INVALID_ARGUMENT", name, err)
			}
		}
		tr, err := create("newco-merger", "partners/newco", eff, "user.contact.email", "user.behavior.media_consumption")
		if err != nil || tr.GetState() != sharingv1.BusinessTransferState_BUSINESS_TRANSFER_STATE_NOTIFYING {
			t.Fatalf("create: %v %v", tr, err)
		}
		if _, err := create("newco-merger", "partners/newco", eff, "user.contact.email", "user.behavior.media_consumption"); err != nil {
			t.Fatalf("retry: %v", err)
		}
		if _, err := create("newco-merger", "partners/newco", eff.Add(time.Hour), "user.contact.email"); !isCode(err, codes.AlreadyExists) {
			t.Fatalf("other terms under the same id: %v", err)
		}
		if len(started.ids) != 2 {
			t.Fatalf("workflow starts: %v (one per successful call; Temporal joins the running one)", started.ids)
		}

		// The workflow's fan-out: two pages, the first retried.
		for _, want := range []struct {
			n    int
			done bool
		}{{2, false}, {1, true}, {0, true}} {
			n, done, err := h.svc.Server.NotifyTransferPage(ctx, "newco-merger")
			if err != nil || n != want.n || done != want.done {
				t.Fatalf("page: %d %v %v, want %d %v", n, done, err, want.n, want.done)
			}
		}
		if len(h.notifier.started) != 3 {
			t.Fatalf("notices started: %v, want one per member", h.notifier.started)
		}
		got, err := h.client.GetBusinessTransfer(ctx, &sharingv1.GetBusinessTransferRequest{Name: "businessTransfers/newco-merger"})
		if err != nil || got.GetNotifiedCount() != 3 || got.GetState() != sharingv1.BusinessTransferState_BUSINESS_TRANSFER_STATE_NOTIFIED {
			t.Fatalf("after the fan-out: %v %v", got, err)
		}

		// A member signs up after the fan-out began: the next sweep tells them (and only
		// them), with a notice lasting at least the purpose's 30 days; a repeated sweep
		// tells nobody again.
		now = now.Add(time.Hour)
		members.ids = append([]string{"member000004"}, members.ids...)
		members.signUps["member000004"] = now
		h.svc.Server.Members = members
		for i, want := range []int{1, 0} {
			if n, err := h.svc.Server.NotifyTransferNewcomers(ctx, "newco-merger", now.Add(-2*time.Hour)); err != nil || n != want {
				t.Fatalf("sweep %d: %d %v, want %d", i, n, err, want)
			}
		}
		if len(h.notifier.started) != 4 {
			t.Fatalf("notices after the sweeps: %v", h.notifier.started)
		}
		if got, _ := h.client.GetBusinessTransfer(ctx, &sharingv1.GetBusinessTransferRequest{Name: "businessTransfers/newco-merger"}); got.GetNotifiedCount() != 4 {
			t.Fatalf("notified count after a newcomer: %v", got)
		}

		// The second member objects (their notice's link records this objection).
		if _, err := h.client.CreateObjection(ctx, &sharingv1.CreateObjectionRequest{Parent: other, Objection: &sharingv1.Objection{Partner: "partners/newco"}}); err != nil {
			t.Fatal(err)
		}
		disclose := func(m, id string) string {
			t.Helper()
			res, err := h.client.AuthorizeDisclosure(ctx, &sharingv1.AuthorizeDisclosureRequest{Member: m, Partner: "partners/newco", Purpose: "acquisition",
				DataCategories: []string{"user.contact.email"}, RequestId: id})
			if err != nil {
				t.Fatal(err)
			}
			return res.GetReason()
		}
		if r := disclose(member, "before"); r != "TRANSFER_NOT_EFFECTIVE" {
			t.Fatalf("before the date: %s", r)
		}
		// The date comes: the notices end (their workflows' timers), the transfer is effective.
		now = eff.Add(time.Minute)
		a := &notice.Activities{DB: h.svc.Server.DB, Now: func() time.Time { return now }}
		for _, id := range h.notifier.started {
			if _, err := a.Resolve(ctx, notice.ResolveInput{NoticeID: id}); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.svc.Server.MakeTransferEffective(ctx, "newco-merger"); err != nil {
			t.Fatal(err)
		}
		if r := disclose(member, "after"); r != "ALLOWED" {
			t.Fatalf("after the date, a member who did not object: %s", r)
		}
		if r := disclose(other, "after"); r != "OBJECTED" {
			t.Fatalf("after the date, the member who objected: %s", r)
		}
		// A member who signed up after the fan-out is told at their first disclosure, and
		// nothing flows for them until their own notice period (30 days) has run.
		late := "members/member000009"
		if r := disclose(late, "late-1"); r != "NOTICE_PENDING" {
			t.Fatalf("a member who joined after the notices went out: %s", r)
		}
		if len(h.notifier.started) != 5 {
			t.Fatalf("notices started: %v, want the newcomer's too", h.notifier.started)
		}
		if r := disclose(late, "late-2"); r != "NOTICE_PENDING" || len(h.notifier.started) != 5 {
			t.Fatalf("asked again during their notice: %s, %d notices (want one)", r, len(h.notifier.started))
		}
		now = now.Add(30*24*time.Hour + time.Minute)
		if _, err := a.Resolve(ctx, notice.ResolveInput{NoticeID: h.notifier.started[4]}); err != nil {
			t.Fatal(err)
		}
		if r := disclose(late, "late-3"); r != "ALLOWED" {
			t.Fatalf("after the newcomer's notice ran its course: %s", r)
		}
	})
}

func isCode(err error, c codes.Code) bool {
	got, _ := reason(err)
	return err != nil && got == c
}
