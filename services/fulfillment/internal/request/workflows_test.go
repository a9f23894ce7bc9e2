package request_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"lethe.dev/services/fulfillment/internal/request"
)

// rec records which activities ran, in order, with their notable arguments.
type rec struct {
	mu    sync.Mutex
	calls []string
	at    map[string]time.Time // workflow time of each call
	now   func() time.Time
	// erase, when set, answers EraseService instead of succeeding at once.
	erase func(request.EraseInput) (request.ServiceErasure, error)
	// holdUntil, when set, is the expiry of the member's legal hold (released: zero again).
	holdUntil time.Time
	released  bool // an operator released the hold
	// onward, when set, answers SendOnward's error first.
	onward func() error
}

func (r *rec) add(s string) {
	r.mu.Lock()
	r.calls = append(r.calls, s)
	if r.at == nil {
		r.at = map[string]time.Time{}
	}
	r.at[s] = r.now()
	r.mu.Unlock()
}

func (r *rec) has(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.calls, s)
}

func (r *rec) index(s string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Index(r.calls, s)
}

// env returns a test environment whose activities record their calls; onward tells
// whether processors acknowledge.
func env(t *testing.T, recipients []request.Recipient, onwardAcks bool) (*testsuite.TestWorkflowEnvironment, *rec) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	e := s.NewTestWorkflowEnvironment()
	e.RegisterWorkflow(request.OnwardErasure)
	e.RegisterWorkflow(request.ArchiveExpiry)
	a := &request.Activities{}
	e.RegisterActivity(a)
	r := &rec{now: e.Now}
	e.OnActivity(a.SetState, mock.Anything, mock.Anything).Return(func(_ context.Context, in request.SetStateInput) error { r.add("state:" + in.State); return nil })
	e.OnActivity(a.SaveProgress, mock.Anything, mock.Anything).Return(nil)
	e.OnActivity(a.RecordEscalation, mock.Anything, mock.Anything).Return(func(_ context.Context, in request.EscalationInput) error { r.add("escalation:" + in.Level); return nil })
	e.OnActivity(a.SendVerification, mock.Anything, mock.Anything).Return(func(context.Context, request.RequestRef) error { r.add("send-code"); return nil })
	e.OnActivity(a.ExportService, mock.Anything, mock.Anything).Return(func(_ context.Context, in request.ExportInput) (request.ExportResult, error) {
		r.add("export:" + in.Service)
		return request.ExportResult{Service: in.Service, Records: 10}, nil
	})
	e.OnActivity(a.ExportAll, mock.Anything, mock.Anything).Return(func(_ context.Context, in request.ExportAllInput) (request.ExportAllResult, error) {
		var out request.ExportAllResult
		for _, svc := range in.Services {
			r.add("export:" + svc)
			out.Exports = append(out.Exports, request.ExportResult{Service: svc, Records: 10})
		}
		if in.Archive != nil { // export-all runs: the archive step follows the exports
			r.add("archive")
			if in.Archive.DeleteParts {
				r.add("delete-parts")
			}
			if in.Archive.NotifyMember != "" {
				r.add("NotifyExportReady")
			}
			out.Archive = request.ArchiveResult{Records: 30}
		}
		return out, nil
	})
	e.OnActivity(a.ArchiveExpiresAt, mock.Anything, mock.Anything).Return(func(context.Context, request.RequestRef) (request.ArchiveExpiryTime, error) {
		return request.ArchiveExpiryTime{At: e.Now()}, nil // already due when the timer fires
	})
	e.OnActivity(a.BuildArchive, mock.Anything, mock.Anything).Return(func(_ context.Context, in request.ArchiveInput) (request.ArchiveResult, error) {
		r.add("archive")
		if in.DeleteParts { // lean-bookkeeping runs: the archive step deletes its parts
			r.add("delete-parts")
		}
		if in.NotifyMember != "" { // export-tail runs: the archive step tells the member
			r.add("NotifyExportReady")
		}
		return request.ArchiveResult{Records: 30}, nil
	})
	e.OnActivity(a.DeleteArchive, mock.Anything, mock.Anything).Return(func(context.Context, request.RequestRef) error { r.add("delete-archive"); return nil })
	e.OnActivity(a.DeleteParts, mock.Anything, mock.Anything).Return(func(context.Context, request.RequestRef) error { r.add("delete-parts"); return nil })
	e.OnActivity(a.EraseArchives, mock.Anything, mock.Anything).Return(func(context.Context, request.RequestRef) (request.ServiceErasure, error) {
		r.add("erase:archives")
		return request.ServiceErasure{Service: "fulfillment"}, nil
	})
	for _, name := range []string{"RevokeSessions", "StopMarketing", "BlockSharing", "QueueConfirmation", "VerifyErased", "NotifyExportReady"} {
		n := name
		e.OnActivity(n, mock.Anything, mock.Anything).Return(func(context.Context, request.RequestRef) error { r.add(n); return nil })
	}
	e.OnActivity(a.EraseService, mock.Anything, mock.Anything).Return(func(_ context.Context, in request.EraseInput) (request.ServiceErasure, error) {
		if r.erase != nil {
			if res, err := r.erase(in); err != nil {
				return res, err
			}
		}
		r.add("erase:" + in.Service)
		return request.ServiceErasure{Service: in.Service}, nil
	})
	e.OnActivity(a.MemberHold, mock.Anything, mock.Anything).Return(func(context.Context, request.RequestRef) (request.MemberHoldResult, error) {
		r.mu.Lock()
		until := r.holdUntil
		r.mu.Unlock()
		if e.Now().Before(until) {
			r.add("member-held")
			return request.MemberHoldResult{Held: true, Until: until}, nil
		}
		return request.MemberHoldResult{}, nil
	})
	e.OnActivity(a.ErasureRecipients, mock.Anything, mock.Anything).Return(func(context.Context, request.RequestRef) ([]request.Recipient, error) {
		r.add("recipients")
		return recipients, nil
	})
	e.OnActivity(a.SendOnward, mock.Anything, mock.Anything).Return(func(_ context.Context, in request.OnwardInput) (request.OnwardState, error) {
		if r.onward != nil {
			if err := r.onward(); err != nil {
				return request.OnwardState{}, err
			}
		}
		r.add("onward:" + in.Partner)
		return request.OnwardState{Acknowledged: onwardAcks}, nil
	})
	e.OnActivity(a.SignReceipt, mock.Anything, mock.Anything).Return(func(_ context.Context, in request.ReceiptInput) error {
		r.add("receipt")
		return nil
	})
	return e, r
}

func input(kind string, verified bool) request.Input {
	return request.Input{
		RequestID: "req00000001", MemberID: "member000001", Kind: kind, Verified: verified,
		DueTime: time.Now().Add(30 * 24 * time.Hour), CoolingOff: 7 * 24 * time.Hour,
		VerificationWindow: 48 * time.Hour, ArchiveTTL: 7 * 24 * time.Hour, Revision: request.CurrentRevision,
	}
}

func result(t *testing.T, e *testsuite.TestWorkflowEnvironment) request.Result {
	t.Helper()
	if !e.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	var res request.Result
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatalf("workflow failed: %v", err)
	}
	return res
}

// TestExportFansOutBuildsTheArchiveAndHandsItsLifetimeOn: the staging parts go as soon
// as the archive is written, and the request's workflow ends at once — the archive's
// 7-day lifetime runs in ArchiveExpiry — so the workflow id is free for another export.
func TestExportFansOutBuildsTheArchiveAndHandsItsLifetimeOn(t *testing.T) {
	e, r := env(t, nil, true)
	start := e.Now()
	var expiry request.ArchiveExpiryInput
	e.SetOnChildWorkflowStartedListener(func(info *workflow.Info, _ workflow.Context, args converter.EncodedValues) {
		if info.WorkflowType.Name == "ArchiveExpiry" {
			_ = args.Get(&expiry)
			r.add("expiry-started")
		}
	})
	e.ExecuteWorkflow(request.PrivacyRequest, input(request.KindAccess, true))
	if res := result(t, e); res.State != "completed" {
		t.Fatalf("state %s", res.State)
	}
	// The expiry workflow starts beside the exports (export-all), before the request
	// completes, and sleeps on until the expiry the archive step records.
	for _, order := range [][]string{
		{"export:identity", "archive", "delete-parts", "NotifyExportReady", "state:completed"},
		{"state:in_progress", "expiry-started", "state:completed"},
	} {
		last := -1
		for _, step := range order {
			i := r.index(step)
			if i < 0 || i < last {
				t.Fatalf("step %s out of order in %v", step, r.calls)
			}
			last = i
		}
	}
	if expiry.RequestID != "req00000001" || expiry.TTL != 7*24*time.Hour || !expiry.UntilRecorded {
		t.Errorf("expiry input = %+v", expiry)
	}
	if got := r.at["expiry-started"].Sub(start); got >= 24*time.Hour {
		t.Errorf("the request's workflow stayed open %v after the archive was ready", got)
	}
	if r.has("state:cooling_off") {
		t.Error("exports have no cooling-off")
	}
}

func TestArchiveExpiryDeletesTheArchiveAfterItsLifetime(t *testing.T) {
	e, r := env(t, nil, true)
	start := e.Now()
	e.ExecuteWorkflow(request.ArchiveExpiry, request.ArchiveExpiryInput{RequestID: "req00000001", TTL: 7 * 24 * time.Hour})
	if !e.IsWorkflowCompleted() || e.GetWorkflowError() != nil {
		t.Fatalf("expiry: %v", e.GetWorkflowError())
	}
	if !r.has("delete-archive") {
		t.Fatalf("archive not deleted: %v", r.calls)
	}
	if got := r.at["delete-archive"].Sub(start); got < 7*24*time.Hour {
		t.Errorf("archive deleted after %v, want its 7-day lifetime", got)
	}
}

// TestFailedExportDeletesWhatItWrote: no staging part outlives a failed export.
func TestFailedExportDeletesWhatItWrote(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	e := s.NewTestWorkflowEnvironment()
	a := &request.Activities{}
	e.RegisterActivity(a)
	r := &rec{now: e.Now}
	e.OnActivity(a.SetState, mock.Anything, mock.Anything).Return(func(_ context.Context, in request.SetStateInput) error { r.add("state:" + in.State); return nil })
	e.OnActivity(a.SaveProgress, mock.Anything, mock.Anything).Return(nil)
	e.OnActivity(a.RecordEscalation, mock.Anything, mock.Anything).Return(nil)
	e.OnActivity(a.ExportService, mock.Anything, mock.Anything).Return(request.ExportResult{}, temporal.NewNonRetryableApplicationError("gone", request.ErrPermanent, nil))
	e.OnActivity(a.ExportAll, mock.Anything, mock.Anything).Return(request.ExportAllResult{}, temporal.NewNonRetryableApplicationError("gone", request.ErrPermanent, nil))
	e.OnActivity(a.ArchiveExpiresAt, mock.Anything, mock.Anything).Return(request.ArchiveExpiryTime{}, nil)
	e.RegisterWorkflow(request.ArchiveExpiry)
	e.OnActivity(a.DeleteArchive, mock.Anything, mock.Anything).Return(func(context.Context, request.RequestRef) error { r.add("delete-archive"); return nil })
	e.ExecuteWorkflow(request.PrivacyRequest, input(request.KindAccess, true))
	if !e.IsWorkflowCompleted() || e.GetWorkflowError() == nil {
		t.Fatal("the export should have failed")
	}
	if !r.has("delete-archive") || r.index("delete-archive") > r.index("state:failed") {
		t.Fatalf("the failed export's parts were not deleted first: %v", r.calls)
	}
}

func TestErasureRunsEveryStepInOrder(t *testing.T) {
	e, r := env(t, []request.Recipient{{Partner: "partners/acme-pay", AckDeadline: 72 * time.Hour}}, true)
	e.ExecuteWorkflow(request.PrivacyRequest, input(request.KindErasure, true))
	if res := result(t, e); res.State != "completed" {
		t.Fatalf("state %s", res.State)
	}
	// Preferences and sharing are erased side by side (lean bookkeeping): either order,
	// both after the archives and recipients and before anything downstream.
	order := [][]string{{"state:cooling_off"}, {"RevokeSessions"}, {"erase:archives", "recipients"}, {"erase:preferences", "erase:sharing"},
		{"onward:partners/acme-pay"}, {"QueueConfirmation"}, {"erase:identity"}, {"VerifyErased"}, {"receipt"}, {"state:completed"}}
	last := -1
	for _, group := range order {
		end := last
		for _, step := range group {
			i := r.index(step)
			if i < 0 || i < last {
				t.Fatalf("step %s out of order in %v", step, r.calls)
			}
			end = max(end, i)
		}
		last = end
	}
}

// TestRecipientsAreTakenBeforeSharingIsErased: erasing sharing re-keys its disclosure
// log to the tombstone, so the processors to tell must be known before that.
func TestRecipientsAreTakenBeforeSharingIsErased(t *testing.T) {
	e, r := env(t, []request.Recipient{{Partner: "partners/acme-pay", AckDeadline: 72 * time.Hour}}, true)
	e.ExecuteWorkflow(request.PrivacyRequest, input(request.KindErasure, true))
	if res := result(t, e); res.State != "completed" {
		t.Fatalf("state %s", res.State)
	}
	if i, j := r.index("recipients"), r.index("erase:sharing"); i < 0 || i > j {
		t.Fatalf("recipients listed after sharing was erased: %v", r.calls)
	}
	if countOf(r.calls, "recipients") != 1 {
		t.Fatalf("recipients listed %d times: %v", countOf(r.calls, "recipients"), r.calls)
	}
}

func countOf(calls []string, s string) int {
	n := 0
	for _, c := range calls {
		if c == s {
			n++
		}
	}
	return n
}

func TestCancelDuringCoolingOffErasesNothing(t *testing.T) {
	e, r := env(t, nil, true)
	e.RegisterDelayedCallback(func() { e.SignalWorkflow(request.CancelSignal, nil) }, 2*24*time.Hour)
	e.ExecuteWorkflow(request.PrivacyRequest, input(request.KindErasure, true))
	if res := result(t, e); res.State != "cancelled" {
		t.Fatalf("state %s", res.State)
	}
	if r.has("RevokeSessions") || r.has("erase:identity") {
		t.Fatalf("a cancelled erasure erased: %v", r.calls)
	}
	if !r.has("state:cancelled") {
		t.Fatal("the cancellation was not recorded")
	}
}

func TestChildErasureSkipsCoolingOff(t *testing.T) {
	e, r := env(t, nil, true)
	in := input(request.KindChildErasure, true)
	in.CoolingOff = 0
	start := e.Now()
	e.ExecuteWorkflow(request.PrivacyRequest, in)
	if res := result(t, e); res.State != "completed" || r.has("state:cooling_off") {
		t.Fatalf("state %s, calls %v", res.State, r.calls)
	}
	if e.Now().Sub(start) > time.Hour {
		t.Fatalf("child erasure took %v of workflow time", e.Now().Sub(start))
	}
}

func TestLegalHoldPausesUntilReleased(t *testing.T) {
	e, r := env(t, nil, true)
	start := e.Now()
	e.RegisterDelayedCallback(func() { e.SignalWorkflow(request.HoldSignal, nil) }, 24*time.Hour)
	var erasedBeforeRelease bool
	e.RegisterDelayedCallback(func() {
		erasedBeforeRelease = r.has("erase:preferences")
		e.SignalWorkflow(request.ReleaseSignal, nil)
	}, 20*24*time.Hour)
	e.ExecuteWorkflow(request.PrivacyRequest, input(request.KindErasure, true))
	if res := result(t, e); res.State != "completed" {
		t.Fatalf("state %s", res.State)
	}
	if erasedBeforeRelease || !r.has("state:on_hold") {
		t.Fatalf("hold not honoured: %v", r.calls)
	}
	if e.Now().Sub(start) < 20*24*time.Hour {
		t.Fatal("finished before the hold was released")
	}
}

func TestUnverifiedRequestExpires(t *testing.T) {
	e, r := env(t, nil, true)
	e.ExecuteWorkflow(request.PrivacyRequest, input(request.KindAccess, false))
	if res := result(t, e); res.State != "expired" {
		t.Fatalf("state %s", res.State)
	}
	if !r.has("send-code") || r.has("export:identity") {
		t.Fatalf("calls %v", r.calls)
	}
}

func TestVerificationSignalContinues(t *testing.T) {
	e, r := env(t, nil, true)
	e.RegisterDelayedCallback(func() { e.SignalWorkflow(request.VerifySignal, nil) }, 3*time.Hour)
	e.ExecuteWorkflow(request.PrivacyRequest, input(request.KindAccess, false))
	if res := result(t, e); res.State != "completed" || !r.has("archive") {
		t.Fatalf("state %s calls %v", res.State, r.calls)
	}
}

func TestProcessorThatNeverAcknowledgesEscalatesAndIsRecorded(t *testing.T) {
	e, r := env(t, []request.Recipient{{Partner: "partners/silent-co", AckDeadline: 72 * time.Hour}}, false)
	start := e.Now()
	e.ExecuteWorkflow(request.PrivacyRequest, input(request.KindErasure, true))
	if res := result(t, e); res.State != "completed" {
		t.Fatalf("state %s", res.State)
	}
	if !r.has("escalation:onward-breach:partners/silent-co") || r.has("escalation:50%") {
		t.Errorf("escalations: %v", r.calls)
	}
	if !r.has("erase:identity") || !r.has("receipt") {
		t.Fatalf("the erasure must still finish: %v", r.calls)
	}
	// The processor's 72-hour contractual deadline (after the 7-day cooling-off), not
	// the request's 30 days, decides when its silence is a breach.
	breachAt := r.at["escalation:onward-breach:partners/silent-co"].Sub(start)
	if want := 7*24*time.Hour + 72*time.Hour; breachAt < want || breachAt > want+2*time.Hour {
		t.Fatalf("onward breach recorded after %v, want about %v", breachAt, want)
	}
}

func TestServiceDownForHoursIsRetried(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	e := s.NewTestWorkflowEnvironment()
	a := &request.Activities{}
	e.RegisterActivity(a)
	e.RegisterWorkflow(request.OnwardErasure)
	attempts := 0
	e.OnActivity(a.SetState, mock.Anything, mock.Anything).Return(nil)
	e.OnActivity(a.SaveProgress, mock.Anything, mock.Anything).Return(nil)
	e.OnActivity(a.RecordEscalation, mock.Anything, mock.Anything).Return(nil)
	e.OnActivity(a.ExportService, mock.Anything, mock.Anything).Return(func(_ context.Context, in request.ExportInput) (request.ExportResult, error) {
		if in.Service == "preferences" {
			attempts++
			if attempts < 8 { // down for the first ~hours of backoff
				return request.ExportResult{}, errors.New("unavailable: connection refused")
			}
		}
		return request.ExportResult{Service: in.Service, Records: 1}, nil
	})
	e.OnActivity(a.ExportAll, mock.Anything, mock.Anything).Return(func(_ context.Context, in request.ExportAllInput) (request.ExportAllResult, error) {
		attempts++
		if attempts < 8 { // preferences is down for the first ~hours of backoff
			return request.ExportAllResult{}, errors.New("unavailable: connection refused")
		}
		var out request.ExportAllResult
		for _, svc := range in.Services {
			out.Exports = append(out.Exports, request.ExportResult{Service: svc, Records: 1})
		}
		return out, nil
	})
	e.OnActivity(a.ArchiveExpiresAt, mock.Anything, mock.Anything).Return(request.ArchiveExpiryTime{}, nil)
	e.OnActivity(a.BuildArchive, mock.Anything, mock.Anything).Return(request.ArchiveResult{}, nil)
	e.OnActivity(a.DeleteArchive, mock.Anything, mock.Anything).Return(nil)
	e.OnActivity(a.DeleteParts, mock.Anything, mock.Anything).Return(nil)
	e.RegisterWorkflow(request.ArchiveExpiry)
	e.OnActivity(a.NotifyExportReady, mock.Anything, mock.Anything).Return(nil)
	e.ExecuteWorkflow(request.PrivacyRequest, input(request.KindAccess, true))
	if res := result(t, e); res.State != "completed" || attempts != 8 {
		t.Fatalf("state %s after %d attempts", res.State, attempts)
	}
}

func TestEscalationsAtHalfAndEightyPercentOfTheDueDate(t *testing.T) {
	// A processor without a contractual deadline is waited for until the request's due
	// date: the request escalates at 50% and 80%, and the processor's silence is a breach.
	e, r := env(t, []request.Recipient{{Partner: "partners/slow-co"}}, false)
	start := e.Now()
	e.ExecuteWorkflow(request.PrivacyRequest, input(request.KindErasure, true))
	if res := result(t, e); res.State != "completed" {
		t.Fatalf("state %s", res.State)
	}
	for level, want := range map[string]time.Duration{"escalation:50%": 15 * 24 * time.Hour, "escalation:80%": 24 * 24 * time.Hour, "escalation:onward-breach:partners/slow-co": 30 * 24 * time.Hour} {
		got := r.at[level].Sub(start)
		if !r.has(level) || got < want-2*time.Hour || got > want+2*time.Hour {
			t.Errorf("%s at %v, want about %v", level, got, want)
		}
	}
}

func TestExtensionMovesTheEscalations(t *testing.T) {
	e, r := env(t, []request.Recipient{{Partner: "partners/slow-co"}}, false)
	start := e.Now()
	in := input(request.KindErasure, true)
	extended := in.DueTime.Add(60 * 24 * time.Hour) // GDPR: one month becomes three
	e.RegisterDelayedCallback(func() { e.SignalWorkflow(request.ExtendSignal, extended) }, 2*24*time.Hour)
	e.ExecuteWorkflow(request.PrivacyRequest, in)
	if res := result(t, e); res.State != "completed" {
		t.Fatalf("state %s", res.State)
	}
	for level, want := range map[string]time.Duration{"escalation:50%": 45 * 24 * time.Hour, "escalation:80%": 72 * 24 * time.Hour, "escalation:onward-breach:partners/slow-co": 90 * 24 * time.Hour} {
		got := r.at[level].Sub(start)
		if !r.has(level) || got < want-2*time.Hour || got > want+2*time.Hour {
			t.Errorf("%s at %v, want about %v after the extension", level, got, want)
		}
	}
}

func TestRetentionRunsThePurge(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	e := s.NewTestWorkflowEnvironment()
	a := &request.Activities{}
	e.RegisterActivity(a)
	e.OnActivity(a.PurgeExpired, mock.Anything).Return(request.PurgeResult{Downloads: 3, FailedExports: 1}, nil)
	e.ExecuteWorkflow(request.Retention)
	var res request.PurgeResult
	if !e.IsWorkflowCompleted() || e.GetWorkflowResult(&res) != nil || res.Downloads != 3 || res.FailedExports != 1 {
		t.Fatalf("retention: %+v %v", res, e.GetWorkflowError())
	}
}

// TestErasurePastItsDueDateStillFinishes: a legal hold keeps an erasure waiting from day 1
// to day 40, ten days past its due date; then identity is down for two hours. The
// erasure must still finish — activity budgets do not shrink to nothing past the due
// date — and never stop half done after preferences and sharing were wiped.
func TestErasurePastItsDueDateStillFinishes(t *testing.T) {
	e, r := env(t, nil, true)
	var down time.Time
	r.erase = func(in request.EraseInput) (request.ServiceErasure, error) {
		if in.Service == "identity" {
			if down.IsZero() {
				down = e.Now()
			}
			if e.Now().Sub(down) < 2*time.Hour {
				return request.ServiceErasure{}, errors.New("unavailable: connection refused")
			}
		}
		return request.ServiceErasure{}, nil
	}
	e.RegisterDelayedCallback(func() { e.SignalWorkflow(request.HoldSignal, nil) }, 24*time.Hour)
	e.RegisterDelayedCallback(func() { e.SignalWorkflow(request.ReleaseSignal, nil) }, 40*24*time.Hour)
	e.ExecuteWorkflow(request.PrivacyRequest, input(request.KindErasure, true))
	if res := result(t, e); res.State != "completed" {
		t.Fatalf("state %s; calls %v", res.State, r.calls)
	}
	for _, want := range []string{"erase:preferences", "erase:sharing", "erase:identity", "VerifyErased", "receipt", "escalation:breach"} {
		if !r.has(want) {
			t.Errorf("%s never happened: %v", want, r.calls)
		}
	}
}

// TestFailedErasureResumes: identity refuses for longer than any activity budget (three
// days); the erasure is not left half done but resumes, after a pause, from its
// idempotent steps until it finishes.
func TestFailedErasureResumes(t *testing.T) {
	e, r := env(t, nil, true)
	var down time.Time
	r.erase = func(in request.EraseInput) (request.ServiceErasure, error) {
		if in.Service == "identity" {
			if down.IsZero() {
				down = e.Now()
			}
			if e.Now().Sub(down) < 3*24*time.Hour {
				return request.ServiceErasure{}, errors.New("unavailable: connection refused")
			}
		}
		return request.ServiceErasure{}, nil
	}
	in := input(request.KindErasure, true)
	in.DueTime = e.Now().Add(8 * 24 * time.Hour) // one day after the cooling-off
	e.ExecuteWorkflow(request.PrivacyRequest, in)
	if res := result(t, e); res.State != "completed" {
		t.Fatalf("state %s; calls %v", res.State, r.calls)
	}
	if !r.has("erase:identity") || !r.has("receipt") || !r.has("escalation:erasure-resumed") {
		t.Fatalf("calls %v", r.calls)
	}
}

// TestChildReportUpgradesAnOpenErasure: an ordinary erasure waits for its code; a child
// report about the member arrives two hours in (the child-erasure signal). The erasure
// goes ahead at once — verified by the report, no seven-day cooling-off — and cannot be
// cancelled any more.
func TestChildReportUpgradesAnOpenErasure(t *testing.T) {
	e, r := env(t, nil, true)
	start := e.Now()
	e.RegisterDelayedCallback(func() { e.SignalWorkflow(request.ChildErasureSignal, nil) }, 2*time.Hour)
	e.RegisterDelayedCallback(func() { e.SignalWorkflow(request.CancelSignal, nil) }, 2*time.Hour+time.Second)
	e.ExecuteWorkflow(request.PrivacyRequest, input(request.KindErasure, false))
	if res := result(t, e); res.State != "completed" {
		t.Fatalf("state %s; calls %v", res.State, r.calls)
	}
	if r.has("state:cooling_off") || !r.has("erase:identity") {
		t.Fatalf("calls %v", r.calls)
	}
	if d := r.at["erase:identity"].Sub(start); d > 3*time.Hour {
		t.Fatalf("identity erased %s after filing; a child's data goes at once", d)
	}
}

// TestArchiveExpiryStartedBesideTheExportWaitsForTheRecordedExpiry: an expiry workflow
// started before its archive was built (export-all) deletes the archive when the link
// the archive step recorded expires, not TTL after its own start, and waits on while the
// export is still under way.
func TestArchiveExpiryStartedBesideTheExportWaitsForTheRecordedExpiry(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	e := s.NewTestWorkflowEnvironment()
	a := &request.Activities{}
	e.RegisterActivity(a)
	start := e.Now()
	const ttl = 7 * 24 * time.Hour
	asked := 0
	e.OnActivity(a.ArchiveExpiresAt, mock.Anything, mock.Anything).Return(func(context.Context, request.RequestRef) (request.ArchiveExpiryTime, error) {
		asked++
		if asked == 1 { // the export is still under way after TTL
			return request.ArchiveExpiryTime{Pending: true}, nil
		}
		return request.ArchiveExpiryTime{At: start.Add(ttl + 9*24*time.Hour)}, nil // archive built on day 9
	})
	var deletedAt time.Time
	e.OnActivity(a.DeleteArchive, mock.Anything, mock.Anything).Return(func(context.Context, request.RequestRef) error { deletedAt = e.Now(); return nil })
	e.ExecuteWorkflow(request.ArchiveExpiry, request.ArchiveExpiryInput{RequestID: "req00000001", TTL: ttl, UntilRecorded: true})
	if !e.IsWorkflowCompleted() || e.GetWorkflowError() != nil {
		t.Fatalf("expiry workflow: %v", e.GetWorkflowError())
	}
	if got, want := deletedAt.Sub(start), ttl+9*24*time.Hour; got < want || got > want+time.Minute {
		t.Fatalf("archive deleted %v after the start, want %v (its recorded expiry)", got, want)
	}
}
