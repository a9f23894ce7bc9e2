package preferences_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	subjectv1 "lethe.dev/gen/lethe/subject/v1"
	"lethe.dev/platform/grpcserver/grpctest"
	"lethe.dev/platform/ids"
	"lethe.dev/platform/storage/storagetest"
	"lethe.dev/services/preferences"
)

type harness struct {
	svc     *preferences.Service
	client  preferencesv1.PreferencesServiceClient
	subject subjectv1.DataSubjectServiceClient
}

func start(t testing.TB, dbURL string) *harness {
	t.Helper()
	cfg := preferences.Config{ListenAddr: "127.0.0.1:0", DatabaseURL: dbURL, TokenKeyPath: filepath.Join(t.TempDir(), "k.json"), UnsubscribeTTL: 24 * time.Hour}
	svc, err := preferences.New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	conn := grpctest.Dial(t, svc.Register, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	return &harness{svc: svc, client: preferencesv1.NewPreferencesServiceClient(conn), subject: subjectv1.NewDataSubjectServiceClient(conn)}
}

func engines(t *testing.T, fn func(t *testing.T, h *harness)) {
	for name, url := range storagetest.URLs(t) {
		t.Run(name, func(t *testing.T) { fn(t, start(t, url)) })
	}
}

const alice = "members/alice0000001"

func reason(err error) (codes.Code, string) {
	s := status.Convert(err)
	for _, d := range s.Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			return s.Code(), i.GetReason()
		}
	}
	return s.Code(), ""
}

func subscribed(p *preferencesv1.CommunicationPreferences, c preferencesv1.Channel, tp preferencesv1.Topic) bool {
	for _, s := range p.GetSubscriptions() {
		if s.GetChannel() == c && s.GetTopic() == tp {
			return s.GetSubscribed()
		}
	}
	panic("missing pair")
}

func TestCommunicationChoicesAndConsentHistory(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		name := alice + "/communicationPreferences"
		p, err := h.client.GetCommunicationPreferences(ctx, &preferencesv1.GetCommunicationPreferencesRequest{Name: name})
		if err != nil || len(p.GetSubscriptions()) != 18 {
			t.Fatalf("defaults: %v %v", p, err)
		}
		if subscribed(p, preferencesv1.Channel_CHANNEL_EMAIL, preferencesv1.Topic_TOPIC_NEWSLETTER) || !subscribed(p, preferencesv1.Channel_CHANNEL_EMAIL, preferencesv1.Topic_TOPIC_TRANSACTIONAL) {
			t.Fatal("defaults must be marketing off, transactional on")
		}
		p, err = h.client.UpdateCommunicationPreferences(ctx, &preferencesv1.UpdateCommunicationPreferencesRequest{Name: name, PolicyVersion: "2018-05-25", RequestId: "r1",
			Changes: []*preferencesv1.SubscriptionChange{{Channel: preferencesv1.Channel_CHANNEL_EMAIL, Topic: preferencesv1.Topic_TOPIC_NEWSLETTER, Subscribed: true}, {Channel: preferencesv1.Channel_CHANNEL_POSTAL, Topic: preferencesv1.Topic_TOPIC_PARTNER_OFFERS, Subscribed: true}}})
		if err != nil || !subscribed(p, preferencesv1.Channel_CHANNEL_EMAIL, preferencesv1.Topic_TOPIC_NEWSLETTER) {
			t.Fatalf("subscribe: %v", err)
		}
		// A batch that tries to turn off transactional mail changes nothing at all.
		_, err = h.client.UpdateCommunicationPreferences(ctx, &preferencesv1.UpdateCommunicationPreferencesRequest{Name: name,
			Changes: []*preferencesv1.SubscriptionChange{{Channel: preferencesv1.Channel_CHANNEL_EMAIL, Topic: preferencesv1.Topic_TOPIC_NEWSLETTER}, {Channel: preferencesv1.Channel_CHANNEL_EMAIL, Topic: preferencesv1.Topic_TOPIC_TRANSACTIONAL}}})
		if c, r := reason(err); c != codes.FailedPrecondition || r != "TRANSACTIONAL_LOCKED" {
			t.Fatalf("transactional off: %v %v", c, r)
		}
		_, err = h.client.UpdateCommunicationPreferences(ctx, &preferencesv1.UpdateCommunicationPreferencesRequest{Name: name,
			Changes: []*preferencesv1.SubscriptionChange{{Channel: preferencesv1.Channel(9), Topic: preferencesv1.Topic_TOPIC_NEWSLETTER}}})
		if c, _ := reason(err); c != codes.InvalidArgument {
			t.Fatalf("unknown channel: %v", c)
		}
		p, _ = h.client.GetCommunicationPreferences(ctx, &preferencesv1.GetCommunicationPreferencesRequest{Name: name})
		if !subscribed(p, preferencesv1.Channel_CHANNEL_EMAIL, preferencesv1.Topic_TOPIC_NEWSLETTER) {
			t.Fatal("a rejected batch changed the newsletter choice")
		}
		for range 2 { // idempotent by request id
			p, err = h.client.StopAllMarketing(ctx, &preferencesv1.StopAllMarketingRequest{Name: name, RequestId: "stop-1"})
			if err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range p.GetSubscriptions() {
			if s.GetSubscribed() != (s.GetTopic() == preferencesv1.Topic_TOPIC_TRANSACTIONAL) {
				t.Fatalf("after StopAllMarketing: %v", s)
			}
		}
		recs, err := h.client.ListConsentRecords(ctx, &preferencesv1.ListConsentRecordsRequest{Parent: alice, PageSize: 100})
		if err != nil {
			t.Fatal(err)
		}
		// 2 opt-ins + 15 opt-outs, once (the retried StopAllMarketing wrote nothing).
		if n := len(recs.GetConsentRecords()); n != 17 {
			t.Fatalf("consent records = %d, want 17", n)
		}
		last := recs.GetConsentRecords()[len(recs.GetConsentRecords())-1]
		if last.GetPolicyVersion() != "2018-05-25" || last.GetSource() != preferencesv1.ConsentSource_CONSENT_SOURCE_MEMBER {
			t.Fatalf("oldest record = %v", last)
		}
	})
}

func TestGlobalPrivacyControl(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		name := alice + "/adPreferences"
		if _, err := h.client.UpdateAdPreferences(ctx, &preferencesv1.UpdateAdPreferencesRequest{AdPreferences: &preferencesv1.AdPreferences{Name: name, PersonalizedAds: true}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"personalized_ads"}}}); err != nil {
			t.Fatal(err)
		}
		a, err := h.client.RecordGlobalPrivacyControl(ctx, &preferencesv1.RecordGlobalPrivacyControlRequest{Name: name})
		if err != nil || a.GetPersonalizedAds() || !a.GetSaleSharingOptOut() || a.GetGpcSignalTime() == nil {
			t.Fatalf("after GPC: %v %v", a, err)
		}
		_, err = h.client.UpdateAdPreferences(ctx, &preferencesv1.UpdateAdPreferencesRequest{AdPreferences: &preferencesv1.AdPreferences{Name: name, PersonalizedAds: true},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"personalized_ads"}}, Source: preferencesv1.ConsentSource_CONSENT_SOURCE_SUPPORT_AGENT})
		if _, r := reason(err); r != "GPC_ACTIVE" {
			t.Fatalf("agent re-enabling after GPC: %v", err)
		}
		_, err = h.client.UpdateAdPreferences(ctx, &preferencesv1.UpdateAdPreferencesRequest{AdPreferences: &preferencesv1.AdPreferences{Name: name}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"gpc_signal_time"}}})
		if c, _ := reason(err); c != codes.InvalidArgument {
			t.Fatalf("read-only mask: %v", err)
		}
	})
}

// seedHistory writes n events for member, many sharing a timestamp to exercise the
// keyset tie-breaker.
func seedHistory(t testing.TB, h *harness, member string, n int) {
	t.Helper()
	db := h.svc.Server.DB
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	prefix := ids.New() // event ids must not embed the member id, or erasure could not unlink them
	for i := range n {
		if _, err := tx.Exec(`INSERT INTO viewing_events (id, owner, title_id, view_time, duration_seconds, device_type) VALUES ($1, $2, $3, $4, $5, $6)`,
			fmt.Sprintf("%s-%07d", prefix, i), strings.TrimPrefix(member, "members/"), fmt.Sprintf("title-%d", i%37), base+int64(i/3)*1e6, 60+i%3000, "tv"); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	// A bulk load leaves PostgreSQL without statistics until autovacuum runs; without
	// them the planner sorts the whole history instead of walking the index.
	if _, err := db.Exec(`ANALYZE viewing_events`); err != nil {
		t.Fatal(err)
	}
}

func TestViewingHistoryPagination(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		seedHistory(t, h, alice, 250)
		seen := map[string]bool{}
		var prev time.Time
		token := ""
		for {
			page, err := h.client.ListViewingEvents(ctx, &preferencesv1.ListViewingEventsRequest{Parent: alice, PageSize: 40, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page.GetViewingEvents() {
				if seen[e.GetName()] {
					t.Fatalf("%s returned twice", e.GetName())
				}
				seen[e.GetName()] = true
				if !prev.IsZero() && e.GetViewTime().AsTime().After(prev) {
					t.Fatal("not newest first")
				}
				prev = e.GetViewTime().AsTime()
			}
			if token = page.GetNextPageToken(); token == "" {
				break
			}
		}
		if len(seen) != 250 {
			t.Fatalf("paged through %d events, want 250", len(seen))
		}
		if _, err := h.client.ListViewingEvents(ctx, &preferencesv1.ListViewingEventsRequest{Parent: alice, PageSize: 1001}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("oversized page: %v", err)
		}
		if _, err := h.client.ListViewingEvents(ctx, &preferencesv1.ListViewingEventsRequest{Parent: alice, PageToken: "garbage!"}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("bad token: %v", err)
		}
		e, err := h.client.CreateViewingEvent(ctx, &preferencesv1.CreateViewingEventRequest{Parent: alice, RequestId: "v1", ViewingEvent: &preferencesv1.ViewingEvent{TitleId: "stranger-things", DurationSeconds: 3000}})
		if err != nil {
			t.Fatal(err)
		}
		again, _ := h.client.CreateViewingEvent(ctx, &preferencesv1.CreateViewingEventRequest{Parent: alice, RequestId: "v1", ViewingEvent: &preferencesv1.ViewingEvent{TitleId: "stranger-things", DurationSeconds: 3000}})
		if again.GetName() != e.GetName() {
			t.Fatal("retry appended twice")
		}
		if _, err := h.client.DeleteViewingEvent(ctx, &preferencesv1.DeleteViewingEventRequest{Name: e.GetName()}); err != nil {
			t.Fatal(err)
		}
		cleared, err := h.client.ClearViewingHistory(ctx, &preferencesv1.ClearViewingHistoryRequest{Parent: alice})
		if err != nil || cleared.GetDeletedCount() != 250 {
			t.Fatalf("clear: %v %v", cleared, err)
		}
	})
}

func TestRatingsRejectBadStars(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		for _, stars := range []int32{0, 6, -1} {
			if _, err := h.client.SetRating(ctx, &preferencesv1.SetRatingRequest{Rating: &preferencesv1.Rating{Name: alice + "/ratings/dark", Stars: stars}}); status.Code(err) != codes.InvalidArgument {
				t.Errorf("stars %d: %v", stars, err)
			}
		}
		for _, stars := range []int32{2, 5} {
			if _, err := h.client.SetRating(ctx, &preferencesv1.SetRatingRequest{Rating: &preferencesv1.Rating{Name: alice + "/ratings/dark", Stars: stars}}); err != nil {
				t.Fatal(err)
			}
		}
		list, _ := h.client.ListRatings(ctx, &preferencesv1.ListRatingsRequest{Parent: alice})
		if len(list.GetRatings()) != 1 || list.GetRatings()[0].GetStars() != 5 {
			t.Fatalf("ratings = %v", list)
		}
	})
}

func TestUnsubscribeLinks(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		name := alice + "/communicationPreferences"
		h.client.UpdateCommunicationPreferences(ctx, &preferencesv1.UpdateCommunicationPreferencesRequest{Name: name,
			Changes: []*preferencesv1.SubscriptionChange{{Channel: preferencesv1.Channel_CHANNEL_EMAIL, Topic: preferencesv1.Topic_TOPIC_PROMOTIONS, Subscribed: true}, {Channel: preferencesv1.Channel_CHANNEL_EMAIL, Topic: preferencesv1.Topic_TOPIC_SURVEYS, Subscribed: true}}})
		tok, err := h.client.CreateUnsubscribeToken(ctx, &preferencesv1.CreateUnsubscribeTokenRequest{Name: name, Channel: preferencesv1.Channel_CHANNEL_EMAIL, Topic: preferencesv1.Topic_TOPIC_PROMOTIONS})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(tok.GetToken(), "alice") {
			t.Fatal("token carries the member id in clear")
		}
		raw, _ := base64.RawURLEncoding.DecodeString(tok.GetToken())
		raw[len(raw)-1] ^= 1
		if _, err := h.client.Unsubscribe(ctx, &preferencesv1.UnsubscribeRequest{Token: base64.RawURLEncoding.EncodeToString(raw)}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("forged token: %v", err)
		}
		for range 2 { // a replayed link is harmless
			if _, err := h.client.Unsubscribe(ctx, &preferencesv1.UnsubscribeRequest{Token: tok.GetToken()}); err != nil {
				t.Fatal(err)
			}
		}
		p, _ := h.client.GetCommunicationPreferences(ctx, &preferencesv1.GetCommunicationPreferencesRequest{Name: name})
		if subscribed(p, preferencesv1.Channel_CHANNEL_EMAIL, preferencesv1.Topic_TOPIC_PROMOTIONS) || !subscribed(p, preferencesv1.Channel_CHANNEL_EMAIL, preferencesv1.Topic_TOPIC_SURVEYS) {
			t.Fatal("the link must unsubscribe exactly one topic")
		}
		h.svc.Server.Now = func() time.Time { return time.Now().Add(25 * time.Hour) }
		if _, r := reason(func() error {
			_, err := h.client.Unsubscribe(ctx, &preferencesv1.UnsubscribeRequest{Token: tok.GetToken()})
			return err
		}()); r != "TOKEN_EXPIRED" {
			t.Fatalf("expired token: %q", r)
		}
	})
}

// export drains an export stream, returning records per dataset and the cursors seen.
func export(t *testing.T, h *harness, cursor string) (map[string]int, []string) {
	t.Helper()
	stream, err := h.subject.ExportSubjectData(context.Background(), &subjectv1.ExportSubjectDataRequest{Subject: alice, Cursor: cursor})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	var cursors []string
	for {
		c, err := stream.Recv()
		if err == io.EOF {
			return counts, cursors
		}
		if err != nil {
			t.Fatal(err)
		}
		counts[c.GetDataset()] += len(c.GetRecords())
		cursors = append(cursors, c.GetCursor())
	}
}

func TestExportIsCompleteAndResumable(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		seedHistory(t, h, alice, 2500) // more than one 2,000-event chunk
		h.client.SetRating(ctx, &preferencesv1.SetRatingRequest{Rating: &preferencesv1.Rating{Name: alice + "/ratings/dark", Stars: 4}})
		h.client.CreateSocialConnection(ctx, &preferencesv1.CreateSocialConnectionRequest{Parent: alice, SocialConnection: &preferencesv1.SocialConnection{Network: "facebook", ExternalAccountRef: "fb-123"}})
		h.client.RecordGlobalPrivacyControl(ctx, &preferencesv1.RecordGlobalPrivacyControlRequest{Name: alice + "/adPreferences"})
		counts, cursors := export(t, h, "")
		want := map[string]int{"communication_preferences": 1, "consent_records": 1, "ad_preferences": 1, "profile_visibility": 1, "social_connections": 1, "viewing_history": 2500, "ratings": 1}
		for k, v := range want {
			if counts[k] != v {
				t.Errorf("%s: %d records, want %d (all: %v)", k, counts[k], v, counts)
			}
		}
		// Resume after the first viewing-history chunk: the rest of the history and the
		// datasets after it, nothing before.
		var resume string
		for _, c := range cursors {
			if strings.HasPrefix(c, "5.") && len(c) > 2 {
				resume = c
				break
			}
		}
		if resume == "" {
			t.Fatalf("no mid-history cursor in %v", cursors)
		}
		rest, _ := export(t, h, resume)
		if rest["viewing_history"] != 500 || rest["ratings"] != 1 || rest["consent_records"] != 0 {
			t.Fatalf("resumed export = %v", rest)
		}
	})
}

func TestErasureKeepsAggregatesAndUnlinksTheMember(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		const bob = "members/bob000000001"
		seedHistory(t, h, alice, 300)
		seedHistory(t, h, bob, 100)
		// Eight more members, so every title has the ten behind it that statistics need.
		others := []string{alice, bob}
		for i := range 8 {
			m := fmt.Sprintf("members/filler%08d", i)
			seedHistory(t, h, m, 37)
			others = append(others, m)
		}
		for i, m := range others {
			for _, title := range []string{"title-1", "title-2"} {
				h.client.SetRating(ctx, &preferencesv1.SetRatingRequest{Rating: &preferencesv1.Rating{Name: m + "/ratings/" + title, Stars: int32(2 + i%2*3)}})
			}
		}
		h.client.UpdateCommunicationPreferences(ctx, &preferencesv1.UpdateCommunicationPreferencesRequest{Name: alice + "/communicationPreferences",
			Changes: []*preferencesv1.SubscriptionChange{{Channel: preferencesv1.Channel_CHANNEL_EMAIL, Topic: preferencesv1.Topic_TOPIC_NEWSLETTER, Subscribed: true}}})
		h.client.CreateSocialConnection(ctx, &preferencesv1.CreateSocialConnectionRequest{Parent: alice, RequestId: "sc-1", SocialConnection: &preferencesv1.SocialConnection{Network: "facebook", ExternalAccountRef: "fb-123"}})
		h.client.CreateViewingEvent(ctx, &preferencesv1.CreateViewingEventRequest{Parent: alice, RequestId: "v-1", ViewingEvent: &preferencesv1.ViewingEvent{TitleId: "title-1", ViewTime: timestamppb.New(time.Now().Add(-time.Hour))}})
		stats := func() []string {
			var out []string
			for i := range 37 {
				s, err := h.client.GetTitleStatistics(ctx, &preferencesv1.GetTitleStatisticsRequest{Name: fmt.Sprintf("titles/title-%d/statistics", i)})
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, fmt.Sprintf("%d/%d/%.4f", s.GetViewCount(), s.GetRatingCount(), s.GetAverageRating()))
			}
			return out
		}
		before := stats()
		var aliceIDs []string
		if rows, err := h.svc.Server.DB.Query(`SELECT id FROM viewing_events WHERE owner = $1`, strings.TrimPrefix(alice, "members/")); err == nil {
			for rows.Next() {
				var x string
				rows.Scan(&x)
				aliceIDs = append(aliceIDs, x)
			}
			rows.Close()
		}
		var rawRef string
		if err := h.svc.Server.DB.QueryRow(`SELECT external_account_ref FROM social_connections`).Scan(&rawRef); err != nil || strings.Contains(rawRef, "fb-123") {
			t.Fatalf("the social account ref is stored in plaintext: %q %v", rawRef, err)
		}
		res, err := h.subject.EraseSubjectData(ctx, &subjectv1.EraseSubjectDataRequest{Subject: alice, RequestId: "erase-1", TombstoneId: "tomb-1"})
		if err != nil {
			t.Fatal(err)
		}
		counts := map[string]int64{}
		for _, r := range res.GetResults() {
			counts[r.GetDataset()] = r.GetCount()
		}
		if counts["viewing_history"] != 301 || counts["ratings"] != 2 || counts["social_connections"] != 1 {
			t.Fatalf("erase counts = %v", counts)
		}
		if after := stats(); strings.Join(after, ",") != strings.Join(before, ",") {
			t.Fatalf("aggregates changed:\nbefore %v\nafter  %v", before, after)
		}
		// No row anywhere still carries the member id.
		id := strings.TrimPrefix(alice, "members/")
		for _, table := range []string{"subscriptions", "consent_records", "ad_preferences", "profile_visibility", "social_connections", "viewing_events", "ratings", "request_log"} {
			var n int
			q := `SELECT COUNT(*) FROM ` + table + ` WHERE CAST(` + map[bool]string{true: "owner", false: "member_id"}[table == "viewing_events" || table == "ratings"] + ` AS TEXT) = $1`
			if err := h.svc.Server.DB.QueryRow(q, id).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("%s still has %d rows for the member", table, n)
			}
		}
		var embedded int
		if err := h.svc.Server.DB.QueryRow(`SELECT COUNT(*) FROM viewing_events WHERE id LIKE $1 OR owner LIKE $1`, "%"+id+"%").Scan(&embedded); err != nil || embedded != 0 {
			t.Errorf("%d events still embed the member id (%v)", embedded, err)
		}
		// Anonymized, not pseudonymized: no owner shared between the erased rows, no row
		// id the member's export named, and times coarsened to the day.
		var rows, owners, unaligned int
		if err := h.svc.Server.DB.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT owner), SUM(CASE WHEN view_time % 86400000000 = 0 THEN 0 ELSE 1 END) FROM viewing_events WHERE owner LIKE 'anon_%'`).Scan(&rows, &owners, &unaligned); err != nil {
			t.Fatal(err)
		}
		if rows != 301 || owners != 301 || unaligned != 0 {
			t.Errorf("erased history: %d rows, %d distinct owners (want one each), %d times finer than a day", rows, owners, unaligned)
		}
		if err := h.svc.Server.DB.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT owner), SUM(CASE WHEN updated_at % 86400000000 = 0 THEN 0 ELSE 1 END) FROM ratings WHERE owner LIKE 'anon_%'`).Scan(&rows, &owners, &unaligned); err != nil {
			t.Fatal(err)
		}
		if rows != 2 || owners != 2 || unaligned != 0 {
			t.Errorf("erased ratings: %d rows, %d distinct owners, %d times finer than a day", rows, owners, unaligned)
		}
		for _, old := range aliceIDs {
			var n int
			h.svc.Server.DB.QueryRow(`SELECT COUNT(*) FROM viewing_events WHERE id = $1`, old).Scan(&n)
			if n != 0 {
				t.Fatalf("event id %s from the member's export still names a row", old)
			}
		}
		if len(aliceIDs) != 301 {
			t.Fatalf("seeded %d events", len(aliceIDs))
		}
		if has, err := h.svc.Server.Keys.Has(ctx, strings.TrimPrefix(alice, "members/")); err != nil || has {
			t.Errorf("the member's data key survived the erasure (%v)", err)
		}
		var linked int
		h.svc.Server.DB.QueryRow(`SELECT COUNT(*) FROM viewing_events WHERE request_id = 'v-1'`).Scan(&linked)
		if linked != 0 {
			t.Error("an idempotency key still links an event to the member's request")
		}
		rep, err := h.subject.ReportSubjectData(ctx, &subjectv1.ReportSubjectDataRequest{Subject: alice})
		if err != nil || len(rep.GetHeld()) != 0 {
			t.Fatalf("held after erasure: %v %v", rep, err)
		}
		again, err := h.subject.EraseSubjectData(ctx, &subjectv1.EraseSubjectDataRequest{Subject: alice, RequestId: "erase-1", TombstoneId: "tomb-1"})
		if err != nil || !again.GetReplayed() || len(again.GetResults()) != len(res.GetResults()) {
			t.Fatalf("replay: %v %v", again, err)
		}
		bobPage, _ := h.client.ListViewingEvents(ctx, &preferencesv1.ListViewingEventsRequest{Parent: bob, PageSize: 1000})
		if len(bobPage.GetViewingEvents()) != 100 {
			t.Fatalf("another member's history changed: %d", len(bobPage.GetViewingEvents()))
		}
	})
}
