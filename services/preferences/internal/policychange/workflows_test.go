package policychange_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/types/known/timestamppb"

	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	"lethe.dev/platform/ids"
	"lethe.dev/platform/storage"
	"lethe.dev/platform/storage/storagetest"
	"lethe.dev/services/preferences/internal/policychange"
	"lethe.dev/services/preferences/internal/prefs"
	"lethe.dev/services/preferences/internal/store"
)

// identity is identity as the activity sees it: members (with the personal data identity
// alone holds) listed newest first in pages of 100, and an outbox keeping one message per
// request id, as identity's does. failAt makes one mail call fail, once.
type identity struct {
	mu      sync.Mutex
	members []member
	outbox  map[string]string // request id → member id
	calls   int
	failAt  int
	failed  bool
}

type member struct {
	id, email, name string
	signedUp        time.Time
}

func (f *identity) MemberPage(_ context.Context, token string) ([]prefs.PageMember, string, error) {
	start, _ := strconv.Atoi(token)
	end := min(start+100, len(f.members))
	next := ""
	if end < len(f.members) {
		next = strconv.Itoa(end)
	}
	var out []prefs.PageMember
	for _, m := range f.members[start:end] {
		out = append(out, prefs.PageMember{ID: m.id, SignedUp: m.signedUp})
	}
	return out, next, nil
}

func (f *identity) MailPolicyChange(_ context.Context, memberID, _, _, requestID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls == f.failAt && !f.failed {
		f.failed = true
		return errors.New("identity unavailable")
	}
	if _, ok := f.outbox[requestID]; !ok {
		f.outbox[requestID] = memberID
	}
	return nil
}

func (f *identity) mailsPerMember() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for _, m := range f.outbox {
		out[m]++
	}
	return out
}

// starts records the workflow starts publishing asks for; the test runs them itself.
type starts struct{ in []policychange.Input }

func (s *starts) StartPolicyNotice(_ context.Context, policy, version string, effective time.Time) error {
	s.in = append(s.in, policychange.Input{Policy: policy, Version: version, EffectiveTime: effective})
	return nil
}

// recordingConverter keeps every payload that crosses into Temporal: workflow and
// activity inputs and results, query answers.
type recordingConverter struct {
	converter.DataConverter
	mu       sync.Mutex
	payloads [][]byte
}

func (r *recordingConverter) keep(ps ...*commonpb.Payload) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range ps {
		r.payloads = append(r.payloads, p.GetData())
	}
}

func (r *recordingConverter) ToPayload(v any) (*commonpb.Payload, error) {
	p, err := r.DataConverter.ToPayload(v)
	r.keep(p)
	return p, err
}

func (r *recordingConverter) ToPayloads(v ...any) (*commonpb.Payloads, error) {
	ps, err := r.DataConverter.ToPayloads(v...)
	r.keep(ps.GetPayloads()...)
	return ps, err
}

// world is preferences with a real database and the activity body, behind a fake
// identity of 250 members who signed up yesterday and one who signed up after the
// version was published.
type world struct {
	srv      *prefs.Server
	identity *identity
	starts   *starts
}

func newWorld(t *testing.T) *world {
	t.Helper()
	db, err := storage.Open(context.Background(), storagetest.SQLiteURL(t), store.Migrations)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &identity{outbox: map[string]string{}}
	yesterday := time.Now().Add(-24 * time.Hour)
	f.members = append(f.members, member{id: ids.New(), email: "late.comer@example.com", name: "Late Comer", signedUp: time.Now().Add(time.Hour)})
	for i := range 250 {
		f.members = append(f.members, member{id: ids.New(), email: fmt.Sprintf("member%d@example.com", i), name: fmt.Sprintf("Ada Lovelace %d", i), signedUp: yesterday})
	}
	w := &world{identity: f, starts: &starts{}}
	w.srv = &prefs.Server{DB: db, Now: time.Now, PolicyMailer: f, PolicyNotices: w.starts}
	return w
}

func (w *world) publish(t *testing.T, version string, effective time.Time) policychange.Input {
	t.Helper()
	_, err := w.srv.CreatePolicyVersion(context.Background(), &preferencesv1.CreatePolicyVersionRequest{Parent: "policies/trakt", PolicyVersionId: version,
		PolicyVersion: &preferencesv1.PolicyVersion{Summary: "Viewing data goes to an audience measurement processor.", EffectiveTime: timestamppb.New(effective),
			LowersProtection: true, AffectedPurposes: []string{"audience_measurement"}}})
	if err != nil {
		t.Fatal(err)
	}
	return w.starts.in[len(w.starts.in)-1]
}

func (w *world) version(t *testing.T, version string) *preferencesv1.PolicyVersion {
	t.Helper()
	res, err := w.srv.ListPolicyVersions(context.Background(), &preferencesv1.ListPolicyVersionsRequest{Parent: "policies/trakt"})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range res.GetPolicyVersions() {
		if v.GetName() == "policies/trakt/versions/"+version {
			return v
		}
	}
	t.Fatalf("version %s not listed", version)
	return nil
}

// run executes the workflow in a fresh time-skipping environment with the real activity.
func (w *world) run(t *testing.T, in policychange.Input, dc converter.DataConverter, during func(env *testsuite.TestWorkflowEnvironment)) (policychange.Result, *testsuite.TestWorkflowEnvironment) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	if dc != nil {
		env.SetDataConverter(dc)
	}
	env.RegisterActivity(&policychange.Activities{Versions: w.srv})
	if during != nil {
		during(env)
	}
	env.ExecuteWorkflow(policychange.PolicyChangeNotice, in)
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("workflow: completed=%v err=%v", env.IsWorkflowCompleted(), env.GetWorkflowError())
	}
	var res policychange.Result
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	return res, env
}

// TestNoticeMailsEveryPageRetriesAndWaitsForTheDate: a lowering version effective 30
// days ahead is mailed at once (in advance) to the 250 members who signed up before it,
// in three pages of identity's members; a mail call failing mid-page is retried without
// mailing anyone twice; the member who signed up after publication is not mailed; the
// workflow then waits the 30 days on a timer (skipped) and reports the version in
// effect. The version's notifiedCount and notificationComplete show the progress.
func TestNoticeMailsEveryPageRetriesAndWaitsForTheDate(t *testing.T) {
	w := newWorld(t)
	w.identity.failAt = 150 // mid second page
	effective := time.Now().Add(30 * 24 * time.Hour)
	in := w.publish(t, "2027-01-01", effective)
	if in.Policy != "trakt" || in.Version != "2027-01-01" || !in.EffectiveTime.Equal(effective.Truncate(time.Microsecond)) {
		t.Fatalf("publishing started %+v", in)
	}
	begin := time.Now()
	var start time.Time
	res, env := w.run(t, in, nil, func(env *testsuite.TestWorkflowEnvironment) {
		start = env.Now()
		env.RegisterDelayedCallback(func() {
			var state string
			if v, err := env.QueryWorkflow(policychange.StateQuery); err != nil || v.Get(&state) != nil || state != policychange.StateAnnounced {
				t.Errorf("state on day 29 = %q, %v; want %q", state, err, policychange.StateAnnounced)
			}
			if n := len(w.identity.mailsPerMember()); n != 250 {
				t.Errorf("on day 29, %d members were mailed; want all 250 (in advance of the date)", n)
			}
		}, 29*24*time.Hour)
	})
	if res.Notified != 250 {
		t.Fatalf("result %+v, want 250 notified", res)
	}
	if waited := env.Now().Sub(start); waited < 30*24*time.Hour-time.Minute {
		t.Fatalf("the workflow ended after %v of workflow time, before the effective date", waited)
	}
	var state string
	if v, err := env.QueryWorkflow(policychange.StateQuery); err != nil || v.Get(&state) != nil || state != policychange.StateInEffect {
		t.Fatalf("final state %q %v", state, err)
	}
	per := w.identity.mailsPerMember()
	if len(per) != 250 || !w.identity.failed || w.identity.calls <= 250 {
		t.Fatalf("%d members mailed, failure injected=%v, %d mail calls; want 250 members and a retried page", len(per), w.identity.failed, w.identity.calls)
	}
	for m, n := range per {
		if n != 1 {
			t.Fatalf("member %s got %d emails", m, n)
		}
	}
	if _, ok := per[w.identity.members[0].id]; ok {
		t.Fatal("the member who signed up after the version was published was mailed about it")
	}
	if v := w.version(t, "2027-01-01"); v.GetNotifiedCount() != 250 || !v.GetNotificationComplete() {
		t.Fatalf("version progress: %v", v)
	}
	t.Logf("30 days skipped in %v of wall time; %d mail calls for 250 members", time.Since(begin).Round(time.Millisecond), w.identity.calls)
}

// TestNoticeRestartMailsNobodyTwice: publishing the same version again starts the same
// workflow id (Temporal joins it or refuses a duplicate); even a second run of the
// workflow to completion, as after a lost result, mails nobody again.
func TestNoticeRestartMailsNobodyTwice(t *testing.T) {
	w := newWorld(t)
	in := w.publish(t, "2026-12-01", time.Now().Add(-time.Minute))
	if again := w.publish(t, "2026-12-01", in.EffectiveTime); again != in || policychange.WorkflowID(again.Policy, again.Version) != "policy-change/trakt/2026-12-01" {
		t.Fatalf("a repeated publish asked for %+v (%s), want the same workflow as %+v", again, policychange.WorkflowID(again.Policy, again.Version), in)
	}
	if res, _ := w.run(t, in, nil, nil); res.Notified != 250 {
		t.Fatalf("first run: %+v", res)
	}
	calls := w.identity.calls
	if res, _ := w.run(t, in, nil, nil); res.Notified != 0 {
		t.Fatalf("second run notified %d", res.Notified)
	}
	if w.identity.calls != calls || len(w.identity.outbox) != 250 {
		t.Fatalf("second run: %d more mail calls, %d messages", w.identity.calls-calls, len(w.identity.outbox))
	}
	if err := w.srv.ResumePolicyNotices(context.Background()); err != nil || len(w.starts.in) != 2 {
		t.Fatalf("resume after completion restarted %d workflows (%v), want none", len(w.starts.in)-2, err)
	}
}

// TestNoticeHistoryHoldsNoPersonalData: everything the workflow puts into Temporal
// (its input and result, the activity's inputs and results, query answers) holds the
// policy and version ids and counts only: no member's email, name or even id.
func TestNoticeHistoryHoldsNoPersonalData(t *testing.T) {
	w := newWorld(t)
	in := w.publish(t, "2026-12-01", time.Now().Add(7*24*time.Hour))
	rec := &recordingConverter{DataConverter: converter.GetDefaultDataConverter()}
	if res, _ := w.run(t, in, rec, nil); res.Notified != 250 {
		t.Fatalf("run: %+v", res)
	}
	if len(rec.payloads) < 4 {
		t.Fatalf("only %d payloads recorded: the converter was not used", len(rec.payloads))
	}
	all := bytes.Join(rec.payloads, []byte("\n"))
	if !bytes.Contains(all, []byte("2026-12-01")) {
		t.Fatalf("payloads do not even name the version: %s", all)
	}
	for _, m := range w.identity.members {
		for _, pd := range []string{m.email, m.name, m.id} {
			if bytes.Contains(all, []byte(pd)) {
				t.Fatalf("%q crossed into Temporal: %s", pd, all)
			}
		}
	}
	if bytes.Contains(all, []byte("@")) {
		t.Fatalf("an address crossed into Temporal: %s", all)
	}
}

// pages is a store of n pages of 100 members, for the length of a run.
type pages struct{ served, n int }

func (p *pages) NotifyPolicyPage(context.Context, string, string) (int, bool, error) {
	p.served++
	return 100, p.served == p.n, nil
}

// TestNoticeContinuesAsNewForMillionsOfMembers: after PagesPerRun pages (50,000
// members) the run continues as new, carrying the count, so history stays bounded.
func TestNoticeContinuesAsNewForMillionsOfMembers(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	p := &pages{n: 3 * policychange.PagesPerRun}
	env.RegisterActivity(&policychange.Activities{Versions: p})
	env.ExecuteWorkflow(policychange.PolicyChangeNotice, policychange.Input{Policy: "trakt", Version: "big", EffectiveTime: env.Now()})
	err := env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("after %d pages: %v, want continue-as-new", policychange.PagesPerRun, err)
	}
	if p.served != policychange.PagesPerRun {
		t.Fatalf("%d pages in one run", p.served)
	}
	var next policychange.Input
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil || next.NotifiedBefore != 100*policychange.PagesPerRun || next.Version != "big" {
		t.Fatalf("next run's input %+v %v", next, err)
	}
}
