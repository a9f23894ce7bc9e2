package request

import (
	"errors"
	"time"

	enums "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Services that hold member data, in the order erasure must treat them: identity last,
// because it crypto-shreds the member.
var (
	ExportServices = []string{"identity", "preferences", "sharing"}
	EraseFirst     = []string{"preferences", "sharing"}
)

// PrivacyRequest runs one request from verification to its end.
func PrivacyRequest(ctx workflow.Context, in Input) (Result, error) {
	r := &run{in: in, status: "received"}
	if in.Revision >= 1 {
		r.shown = InitialStatus(in)
	}
	return r.run(ctx)
}

type run struct {
	in       Input
	status   string
	held     bool
	canceled bool
	verified bool
	steps    []Step
	// replanOnExtend is set on runs new enough to move escalations when an extension
	// arrives; dueChanged tells the escalation loop to re-plan.
	replanOnExtend bool
	dueChanged     bool
	// archiveLifecycle is set on runs new enough to delete staging parts once the archive
	// is written and on failure, hand the archive's lifetime to its own workflow (so a
	// second export can start), and erase the member's archives during erasure.
	archiveLifecycle bool
	// childUpgrade is set on runs that accept the child-erasure signal; upgraded says it
	// came: the erasure is a child's now — verified, no cooling-off, no cancelling.
	childUpgrade bool
	upgraded     bool
	// lean is set on runs new enough to keep bookkeeping off the task queue: steps live
	// in the workflow (ProgressQuery) and reach the database with the next state change,
	// which a local activity records; independent steps run side by side, and the
	// archive step deletes its own staging parts.
	lean bool
	// kinds is set on runs new enough to take the deny and approve updates and to
	// confirm receipt (CCPA); denied says a denial was accepted, committed that the
	// request's work began (no denial after that), approved that a rectification was.
	kinds     bool
	denied    bool
	committed bool
	approved  bool
	// memberHolds is set on erasures new enough to wait while their member's data is on
	// legal hold (operators' per-member holds); memberHoldChanged says a hold was set or
	// released since the last look.
	memberHolds       bool
	memberHoldChanged bool
	// expiry is the start of the archive's expiry workflow on runs new enough to start
	// it beside the archive step (export-tail); run waits for it before completing.
	expiry workflow.ChildWorkflowFuture
	// memberHoldSteps is set on erasures new enough to also stop in their erasing steps
	// when a hold is set meanwhile (a step refused with ErrMemberHeld): they wait on hold
	// and then run the erasure's idempotent round again.
	memberHoldSteps bool
	// allChanges is set on runs that recorded the one version gate (allChangesVersion):
	// every change above is on, and none records a version marker of its own.
	allChanges bool
	// shown is the status search attribute's value when it is known (revision 1 runs
	// start with InitialStatus): setting the same status again upserts nothing.
	shown string
}

// allChangesVersion is the change id of the one version gate that stands for every
// change before it (replan-on-extend, archive-lifecycle, child-upgrade,
// lean-bookkeeping, request-kinds, member-hold, member-hold-steps, notify-export-ready,
// erase-resumes, recipients-before-erasure). A later change gets a GetVersion of its
// own, as usual; OnwardErasure's member-hold-onward stays its own (another workflow).
const allChangesVersion = "all-changes-2026-12"

func (r *run) setStatus(ctx workflow.Context, status string) error {
	r.status = status
	if status != r.shown {
		_ = workflow.UpsertTypedSearchAttributes(ctx, temporal.NewSearchAttributeKeyKeyword(SAStatus).ValueSet(status))
		if r.in.Revision >= 1 {
			r.shown = status
		}
	}
	var a *Activities
	if r.lean {
		in := SetStateInput{RequestID: r.in.RequestID, State: status, Steps: r.steps, WithSteps: true}
		return workflow.ExecuteLocalActivity(r.localCtx(ctx), a.SetState, in).Get(ctx, nil)
	}
	return workflow.ExecuteActivity(r.shortCtx(ctx), a.SetState, SetStateInput{RequestID: r.in.RequestID, State: status}).Get(ctx, nil)
}

// localCtx is for the bookkeeping that runs as local activities (one database write in
// fulfillment's own worker, recorded as a marker instead of a task-queue round trip):
// retried like shortCtx, bounded by the due date (at least an hour).
func (r *run) localCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: r.untilDue(ctx, shortBudgetFloor, 24*time.Hour),
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Minute,
			NonRetryableErrorTypes: []string{ErrPermanent}},
	})
}

// Activity budgets: bounded by the due date, but never below a floor — a request held or
// delayed past its due date (a legal hold, an outage) must still be able to finish, so
// its budgets do not shrink to nothing.
const (
	shortBudgetFloor = time.Hour
	longBudgetFloor  = 24 * time.Hour
)

// shortCtx is for bookkeeping activities: quick, retried with backoff, bounded by the
// due date (at least an hour).
func (r *run) shortCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: r.untilDue(ctx, shortBudgetFloor, 24*time.Hour),
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Minute,
			NonRetryableErrorTypes: []string{ErrPermanent}},
	})
}

// longCtx is for data movement: heartbeating, retried for hours while a service is
// down, bounded by the due date (at least a day).
func (r *run) longCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    2 * time.Hour,
		HeartbeatTimeout:       20 * time.Second,
		ScheduleToCloseTimeout: r.untilDue(ctx, longBudgetFloor, 30*24*time.Hour),
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: 5 * time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Minute,
			NonRetryableErrorTypes: []string{ErrPermanent}},
	})
}

// untilDue bounds an activity by the request's due date, at least floor and at most max.
func (r *run) untilDue(ctx workflow.Context, floor, max time.Duration) time.Duration {
	d := r.in.DueTime.Sub(workflow.Now(ctx))
	if d < floor {
		d = floor
	}
	if d > max {
		d = max
	}
	return d
}

func (r *run) step(ctx workflow.Context, name, state string, count int64) {
	for i := range r.steps {
		if r.steps[i].Step == name {
			r.steps[i] = Step{name, state, count, workflow.Now(ctx)}
			r.saveProgress(ctx)
			return
		}
	}
	r.steps = append(r.steps, Step{name, state, count, workflow.Now(ctx)})
	r.saveProgress(ctx)
}

// saveProgress stores the steps for GetPrivacyRequest: an activity per step on runs
// older than lean bookkeeping; lean runs answer ProgressQuery and store the steps with
// the next state change.

func (r *run) saveProgress(ctx workflow.Context) {
	if r.lean {
		return
	}
	var a *Activities
	_ = workflow.ExecuteActivity(r.shortCtx(ctx), a.SaveProgress, ProgressInput{RequestID: r.in.RequestID, Steps: r.steps}).Get(ctx, nil)
}

func (r *run) run(ctx workflow.Context) (Result, error) {
	if err := workflow.SetQueryHandler(ctx, ProgressQuery, func() (map[string]any, error) {
		return map[string]any{"request": r.in.RequestID, "status": r.status, "held": r.held, "steps": r.steps}, nil
	}); err != nil {
		return Result{}, err
	}
	// One version gate for every change up to member holds: a run that records it takes
	// them all without a marker each. The SDK records every first GetVersion as a marker
	// and an upsert of TemporalChangeVersion, and each upsert is a visibility write on the
	// Temporal server — eight of them per erasure before this gate. Runs recorded before
	// it find no marker for the gate, replay it as the default version and take the
	// per-change versions below, unchanged.
	// Revision 1 runs (CurrentRevision) take it from their input, without a marker.
	r.allChanges = r.in.Revision >= 1 || workflow.GetVersion(ctx, allChangesVersion, workflow.DefaultVersion, 1) == 1
	version := func(change string) bool {
		return r.allChanges || workflow.GetVersion(ctx, change, workflow.DefaultVersion, 1) == 1
	}
	r.replanOnExtend = version("replan-on-extend")
	r.archiveLifecycle = version("archive-lifecycle")
	r.childUpgrade = r.in.Kind == KindErasure && version("child-upgrade")
	r.lean = version("lean-bookkeeping")
	r.kinds = version("request-kinds")
	if r.kinds {
		if err := r.handleDecisions(ctx); err != nil {
			return Result{}, err
		}
		r.acknowledge(ctx)
	}
	r.memberHolds = (r.in.Kind == KindErasure || r.in.Kind == KindChildErasure) && version("member-hold")
	r.memberHoldSteps = r.memberHolds && version("member-hold-steps")
	r.listen(ctx)
	r.escalate(ctx)
	r.verified = r.in.Verified

	if !r.verified {
		if err := r.setStatus(ctx, "awaiting_verification"); err != nil {
			return Result{}, err
		}
		var a *Activities
		if err := workflow.ExecuteActivity(r.shortCtx(ctx), a.SendVerification, RequestRef{RequestID: r.in.RequestID, MemberID: r.in.MemberID}).Get(ctx, nil); err != nil {
			return r.fail(ctx, err)
		}
		ok, _ := workflow.AwaitWithTimeout(ctx, r.in.VerificationWindow, func() bool { return r.verified || r.canceled || r.denied })
		if r.denied {
			return r.deny(ctx)
		}
		if !ok || !r.verified {
			state := "expired"
			if r.canceled {
				state = "cancelled"
			}
			return r.end(ctx, state)
		}
	}

	if (r.in.Kind == KindErasure || r.in.Kind == KindChildErasure) && r.in.CoolingOff > 0 && !r.upgraded {
		if err := r.setStatus(ctx, "cooling_off"); err != nil {
			return Result{}, err
		}
		workflow.AwaitWithTimeout(ctx, r.in.CoolingOff, func() bool { return r.canceled || r.upgraded || r.denied })
		if r.denied {
			return r.deny(ctx)
		}
		if r.canceled {
			return r.end(ctx, "cancelled")
		}
	}
	r.canceled = false // cancelling is only possible until here
	if err := r.waitWhileHeld(ctx); err != nil {
		return Result{}, err
	}
	if r.denied {
		return r.deny(ctx)
	}
	if r.memberHolds {
		if err := r.waitWhileMemberHeld(ctx); err != nil {
			return r.fail(ctx, err)
		}
	}
	r.committed = r.in.Kind != KindRectification // a rectification commits once approved
	if err := r.setStatus(ctx, "in_progress"); err != nil {
		return Result{}, err
	}
	var err error
	switch r.in.Kind {
	case KindAccess, KindPortability:
		err = r.export(ctx)
	case KindErasure, KindChildErasure:
		err = r.eraseToTheEnd(ctx)
	default:
		if err = r.fulfil(ctx); err == nil && r.denied {
			return r.deny(ctx)
		}
	}
	if err != nil {
		if r.archiveLifecycle && r.hasArchive() {
			// Whatever the export wrote goes with it, and its key.
			dctx, _ := workflow.NewDisconnectedContext(ctx)
			var a *Activities
			_ = workflow.ExecuteActivity(r.shortCtx(dctx), a.DeleteArchive, RequestRef{RequestID: r.in.RequestID}).Get(dctx, nil)
		}
		return r.fail(ctx, err)
	}
	if r.hasArchive() && r.archiveLifecycle {
		// The archive outlives this workflow in its own, so the member can ask again; it
		// is started before the request shows completed, so this workflow closes at once.
		f := r.expiry
		if f == nil {
			f = r.startArchiveExpiry(ctx, false)
		}
		if err := f.GetChildWorkflowExecution().Get(ctx, nil); err != nil {
			return r.fail(ctx, err)
		}
		return r.end(ctx, "completed")
	}
	res, err := r.end(ctx, "completed")
	if err == nil && r.in.Kind == KindAccess {
		// The archive lives until its link expires, then a timer deletes it.
		_ = workflow.Sleep(ctx, r.in.ArchiveTTL)
		var a *Activities
		_ = workflow.ExecuteActivity(r.shortCtx(ctx), a.DeleteArchive, RequestRef{RequestID: r.in.RequestID}).Get(ctx, nil)
		r.step(ctx, "archive.deleted", "done", 0)
	}
	return res, err
}

// startArchiveExpiry starts the workflow that deletes the export's archive when its
// link expires; it outlives this one (abandoned when this closes).
// untilRecorded starts it before the archive is built (export-all runs).
func (r *run) startArchiveExpiry(ctx workflow.Context, untilRecorded bool) workflow.ChildWorkflowFuture {
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: ArchiveExpiryWorkflowID(r.in.RequestID),
		ParentClosePolicy: enums.PARENT_CLOSE_POLICY_ABANDON})
	return workflow.ExecuteChildWorkflow(cctx, ArchiveExpiry, ArchiveExpiryInput{RequestID: r.in.RequestID, TTL: r.in.ArchiveTTL, UntilRecorded: untilRecorded})
}

// listen handles signals for the whole run.
func (r *run) listen(ctx workflow.Context) {
	workflow.Go(ctx, func(ctx workflow.Context) {
		verify := workflow.GetSignalChannel(ctx, VerifySignal)
		cancel := workflow.GetSignalChannel(ctx, CancelSignal)
		hold := workflow.GetSignalChannel(ctx, HoldSignal)
		release := workflow.GetSignalChannel(ctx, ReleaseSignal)
		extend := workflow.GetSignalChannel(ctx, ExtendSignal)
		child := workflow.GetSignalChannel(ctx, ChildErasureSignal)
		memberHold := workflow.GetSignalChannel(ctx, MemberHoldSignal)
		for {
			sel := workflow.NewSelector(ctx)
			if r.replanOnExtend {
				sel.AddReceive(extend, func(c workflow.ReceiveChannel, _ bool) {
					var due time.Time
					c.Receive(ctx, &due)
					if due.After(r.in.DueTime) {
						r.in.DueTime = due // activity bounds and escalations follow the new date
						r.dueChanged = true
						_ = workflow.UpsertTypedSearchAttributes(ctx, temporal.NewSearchAttributeKeyTime(SADueTime).ValueSet(due))
					}
				})
			}
			if r.childUpgrade {
				sel.AddReceive(child, func(c workflow.ReceiveChannel, _ bool) {
					c.Receive(ctx, nil)
					if !r.upgraded {
						r.upgraded, r.verified, r.canceled = true, true, false
						r.in.Kind = KindChildErasure
						_ = workflow.UpsertTypedSearchAttributes(ctx, temporal.NewSearchAttributeKeyKeyword(SAKind).ValueSet(KindChildErasure))
					}
				})
			}
			if r.memberHolds {
				sel.AddReceive(memberHold, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); r.memberHoldChanged = true })
			}
			sel.AddReceive(verify, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); r.verified = true })
			sel.AddReceive(cancel, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); r.canceled = !r.upgraded })
			sel.AddReceive(hold, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); r.held = true })
			sel.AddReceive(release, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); r.held = false })
			sel.Select(ctx)
		}
	})
}

// waitWhileHeld pauses while a legal hold is set, recording the state.
func (r *run) waitWhileHeld(ctx workflow.Context) error {
	if !r.held {
		return nil
	}
	prev := r.status
	if err := r.setStatus(ctx, "on_hold"); err != nil {
		return err
	}
	if err := workflow.Await(ctx, func() bool { return !r.held || r.denied }); err != nil {
		return err
	}
	if r.denied {
		return nil // the caller ends the request as denied
	}
	return r.setStatus(ctx, prev)
}

// escalate records escalations at 50% and 80% of the time from receipt to the due date,
// and a breach at the due date, unless the request finished first. An extension moves
// the due date; the levels not yet reached are re-planned against it.
func (r *run) escalate(ctx workflow.Context) {
	start := workflow.Now(ctx)
	workflow.Go(ctx, func(ctx workflow.Context) {
		var a *Activities
		levels := []struct {
			name     string
			fraction float64
		}{{"50%", 0.5}, {"80%", 0.8}, {"breach", 1}}
		for _, lv := range levels {
			for {
				at := start.Add(time.Duration(float64(r.in.DueTime.Sub(start)) * lv.fraction))
				d := at.Sub(workflow.Now(ctx))
				if d <= 0 {
					break
				}
				if !r.replanOnExtend {
					if err := workflow.Sleep(ctx, d); err != nil {
						return
					}
					break
				}
				r.dueChanged = false
				ok, err := workflow.AwaitWithTimeout(ctx, d, func() bool { return r.dueChanged })
				if err != nil {
					return
				}
				if !ok { // reached the level without an extension
					break
				}
			}
			if r.status == "completed" || r.status == "cancelled" || r.status == "expired" || r.status == "denied" {
				return
			}
			_ = workflow.ExecuteActivity(r.shortCtx(ctx), a.RecordEscalation, EscalationInput{RequestID: r.in.RequestID, Level: lv.name}).Get(ctx, nil)
		}
	})
}

// end records the final state. It runs in a disconnected context so a cancelled
// workflow still records how it ended.
func (r *run) end(ctx workflow.Context, state string) (Result, error) {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	if err := r.setStatus(dctx, state); err != nil {
		return Result{}, err
	}
	return Result{State: state}, nil
}

func (r *run) fail(ctx workflow.Context, cause error) (Result, error) {
	if _, err := r.end(ctx, "failed"); err != nil {
		return Result{}, errors.Join(cause, err)
	}
	return Result{State: "failed"}, cause
}

// export fans out to every data-holding service in parallel, then builds the archive
// (runs since "export-all": exportAll).
func (r *run) export(ctx workflow.Context) error {
	var a *Activities
	if r.in.Revision >= 1 || r.lean && r.archiveLifecycle && workflow.GetVersion(ctx, "export-all", workflow.DefaultVersion, 1) == 1 {
		return r.exportAll(ctx)
	}
	futures := map[string]workflow.Future{}
	for _, svc := range ExportServices {
		r.step(ctx, "export."+svc, "running", 0)
		futures[svc] = workflow.ExecuteActivity(r.longCtx(ctx), a.ExportService, ExportInput{RequestID: r.in.RequestID, MemberID: r.in.MemberID, Service: svc})
	}
	var errs []error
	for _, svc := range ExportServices {
		var res ExportResult
		if err := futures[svc].Get(ctx, &res); err != nil {
			r.step(ctx, "export."+svc, "failed", 0)
			errs = append(errs, err)
			continue
		}
		r.step(ctx, "export."+svc, "done", res.Records)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Runs since "export-tail" finish in one round after the exports: the archive's
	// expiry workflow starts beside the archive step (its timer then runs from the
	// moment the link's expiry is computed), and the archive step tells the member
	// itself once the archive is recorded (idempotent, so a retried step tells them
	// once). Older runs start the expiry workflow and notify in rounds of their own.
	tail := r.lean && r.archiveLifecycle && workflow.GetVersion(ctx, "export-tail", workflow.DefaultVersion, 1) == 1
	in := ArchiveInput{RequestID: r.in.RequestID, Services: ExportServices, ExpiresAt: workflow.Now(ctx).Add(r.in.ArchiveTTL),
		DeleteParts: r.lean, Portability: r.in.Kind == KindPortability}
	if tail {
		in.NotifyMember = r.in.MemberID
		r.expiry = r.startArchiveExpiry(ctx, false)
	}
	var archive ArchiveResult
	if err := workflow.ExecuteActivity(r.longCtx(ctx), a.BuildArchive, in).Get(ctx, &archive); err != nil {
		return err
	}
	r.step(ctx, "archive", "done", archive.Records)
	if tail {
		r.step(ctx, "parts.deleted", "done", 0)
		return nil
	}
	if r.lean {
		r.step(ctx, "parts.deleted", "done", 0)
	} else if r.archiveLifecycle {
		if err := workflow.ExecuteActivity(r.shortCtx(ctx), a.DeleteParts, RequestRef{RequestID: r.in.RequestID}).Get(ctx, nil); err != nil {
			return err
		}
		r.step(ctx, "parts.deleted", "done", 0)
	}
	// Telling the member was added after the first release: histories recorded before it
	// replay on the default version.
	if r.allChanges || workflow.GetVersion(ctx, "notify-export-ready", workflow.DefaultVersion, 1) == 1 {
		if err := workflow.ExecuteActivity(r.shortCtx(ctx), a.NotifyExportReady, RequestRef{RequestID: r.in.RequestID, MemberID: r.in.MemberID}).Get(ctx, nil); err != nil {
			return err
		}
	}
	return nil
}

// exportAll is the export of runs since "export-all": one activity exports every
// service and builds the archive (ExportAll), so no workflow task or activity dispatch
// lies between the exports and the archive; the archive's expiry workflow starts beside
// it, before the archive's expiry is known, and sleeps on until the expiry the archive
// step records (ArchiveExpiryInput.UntilRecorded).
func (r *run) exportAll(ctx workflow.Context) error {
	var a *Activities
	for _, svc := range ExportServices {
		r.step(ctx, "export."+svc, "running", 0)
	}
	r.expiry = r.startArchiveExpiry(ctx, true)
	in := ExportAllInput{RequestID: r.in.RequestID, MemberID: r.in.MemberID, Services: ExportServices,
		Archive:    &ArchiveInput{RequestID: r.in.RequestID, Services: ExportServices, DeleteParts: true, Portability: r.in.Kind == KindPortability, NotifyMember: r.in.MemberID},
		ArchiveTTL: r.in.ArchiveTTL}
	var res ExportAllResult
	if err := workflow.ExecuteActivity(r.longCtx(ctx), a.ExportAll, in).Get(ctx, &res); err != nil {
		for _, svc := range ExportServices {
			r.step(ctx, "export."+svc, "failed", 0)
		}
		return err
	}
	for _, e := range res.Exports {
		r.step(ctx, "export."+e.Service, "done", e.Records)
	}
	r.step(ctx, "archive", "done", res.Archive.Records)
	r.step(ctx, "parts.deleted", "done", 0)
	return nil
}

// Erasure rounds: a round that fails for a reason retrying can fix (a service down for
// longer than the activity budgets) is resumed after a pause that doubles up to a day;
// every step is idempotent, so a resumed round redoes nothing twice.
const (
	eraseResumeFirstPause = time.Hour
	eraseResumeMaxPause   = 24 * time.Hour
	eraseMaxRounds        = 100
)

// eraseToTheEnd runs erase until it finishes, resuming failed rounds, so an erasure is
// never left half done; only a permanent failure (bad input, data still held after the
// erasure) ends it as failed, loudly. Histories recorded before resumption existed
// replay on the default version, which runs one round.
func (r *run) eraseToTheEnd(ctx workflow.Context) error {
	if !r.allChanges && workflow.GetVersion(ctx, "erase-resumes", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return r.erase(ctx)
	}
	pause := eraseResumeFirstPause
	for round := 1; ; round++ {
		err := r.erase(ctx)
		if err != nil && r.memberHoldSteps && memberHeld(err) {
			// A legal hold was set while erasing: nothing more is deleted until it ends.
			if err := r.waitWhileMemberHeld(ctx); err != nil {
				return err
			}
			if err := r.setStatus(ctx, "in_progress"); err != nil {
				return err
			}
			round--
			continue
		}
		if err == nil || permanentFailure(err) || round == eraseMaxRounds {
			return err
		}
		var a *Activities
		_ = workflow.ExecuteActivity(r.shortCtx(ctx), a.RecordEscalation, EscalationInput{RequestID: r.in.RequestID, Level: "erasure-resumed"}).Get(ctx, nil)
		r.step(ctx, "erase.resume", "waiting", int64(round))
		if err := workflow.Sleep(ctx, pause); err != nil {
			return err
		}
		if pause *= 2; pause > eraseResumeMaxPause {
			pause = eraseResumeMaxPause
		}
	}
}

// permanentFailure reports whether err is one retrying cannot fix.
func permanentFailure(err error) bool {
	var app *temporal.ApplicationError
	// A step refused under a legal hold is not a failure: runs without memberHoldSteps
	// resume it in a later round, as they resume any other refused step.
	return errors.As(err, &app) && app.NonRetryable() && app.Type() != ErrMemberHeld
}

// erase runs the erasure: stop everything at once, erase in preferences and sharing,
// onward erasure to processors, queue the confirmation, erase identity last, verify,
// sign the receipt.
func (r *run) erase(ctx workflow.Context) error {
	var a *Activities
	ref := RequestRef{RequestID: r.in.RequestID, MemberID: r.in.MemberID}
	stops := []workflow.Future{
		workflow.ExecuteActivity(r.shortCtx(ctx), a.RevokeSessions, ref),
		workflow.ExecuteActivity(r.shortCtx(ctx), a.StopMarketing, ref),
		workflow.ExecuteActivity(r.shortCtx(ctx), a.BlockSharing, ref),
	}
	for _, f := range stops {
		if err := f.Get(ctx, nil); err != nil {
			return err
		}
	}
	r.step(ctx, "stop.sessions_marketing_sharing", "done", 0)
	if err := r.waitWhileHeld(ctx); err != nil {
		return err
	}
	var (
		archives   ServiceErasure
		recipients []Recipient
		results    []ServiceErasure
		err        error
	)
	if r.lean {
		archives, recipients, results, err = r.eraseDataLean(ctx, ref)
	} else {
		archives, recipients, results, err = r.eraseData(ctx, ref)
	}
	if err != nil {
		return err
	}
	var acks []OnwardResult
	var children []workflow.ChildWorkflowFuture
	for _, p := range recipients {
		// Each processor has its contractual acknowledgement deadline, never past the
		// request's own due date.
		deadline := r.in.DueTime
		if p.AckDeadline > 0 && workflow.Now(ctx).Add(p.AckDeadline).Before(deadline) {
			deadline = workflow.Now(ctx).Add(p.AckDeadline)
		}
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: OnwardWorkflowID(r.in.RequestID, p.Partner)})
		children = append(children, workflow.ExecuteChildWorkflow(cctx, OnwardErasure, OnwardInput{RequestID: r.in.RequestID, MemberID: r.in.MemberID, Partner: p.Partner, Deadline: deadline, PollInterval: r.in.OnwardPollInterval}))
	}
	for i, c := range children {
		var res OnwardResult
		if err := c.Get(ctx, &res); err != nil {
			return err
		}
		acks = append(acks, res)
		state := "acknowledged"
		if !res.Acknowledged {
			state = "unacknowledged"
		}
		r.step(ctx, "onward."+recipients[i].Partner, state, int64(res.Attempts))
	}
	if err := workflow.ExecuteActivity(r.shortCtx(ctx), a.QueueConfirmation, ref).Get(ctx, nil); err != nil {
		return err
	}
	var idRes ServiceErasure
	if err := workflow.ExecuteActivity(r.longCtx(ctx), a.EraseService, EraseInput{RequestRef: ref, Service: "identity"}).Get(ctx, &idRes); err != nil {
		return err
	}
	results = append(results, idRes)
	r.step(ctx, "erase.identity", "done", idRes.Total())
	if r.archiveLifecycle {
		results = append(results, archives)
	}
	if err := workflow.ExecuteActivity(r.shortCtx(ctx), a.VerifyErased, ref).Get(ctx, nil); err != nil {
		r.step(ctx, "verify", "failed", 0)
		return err
	}
	r.step(ctx, "verify", "done", 0)
	if err := workflow.ExecuteActivity(r.shortCtx(ctx), a.SignReceipt, ReceiptInput{RequestRef: ref, Services: results, Onward: acks}).Get(ctx, nil); err != nil {
		return err
	}
	r.step(ctx, "receipt", "done", 0)
	return nil
}

// ArchiveExpiry deletes an export's archive, parts and key when its link expires. It
// runs apart from the request's workflow, so the member can ask for another export
// meanwhile; an erasure deletes the archive earlier and this finds nothing left.
func ArchiveExpiry(ctx workflow.Context, in ArchiveExpiryInput) error {
	if err := workflow.Sleep(ctx, in.TTL); err != nil {
		return err
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Minute},
	})
	var a *Activities
	for in.UntilRecorded {
		// Started before the archive was built: its link expires TTL after the archive
		// step, which recorded when; sleep on until then (and again while the export is
		// still under way).
		var exp ArchiveExpiryTime
		if err := workflow.ExecuteActivity(ctx, a.ArchiveExpiresAt, RequestRef{RequestID: in.RequestID}).Get(ctx, &exp); err != nil {
			return err
		}
		d := exp.At.Sub(workflow.Now(ctx))
		if exp.Pending {
			d = in.TTL
		}
		if d <= 0 {
			break
		}
		if err := workflow.Sleep(ctx, d); err != nil {
			return err
		}
		if !exp.Pending {
			break
		}
	}
	return workflow.ExecuteActivity(ctx, a.DeleteArchive, RequestRef{RequestID: in.RequestID}).Get(ctx, nil)
}

// OnwardPollInterval is how often an unacknowledged processor is checked (and a failed
// delivery resent) when no callback signal arrives, unless the request sets its own.
const OnwardPollInterval = time.Hour

// OnwardErasure sends the erasure to one processor and waits for its acknowledgement
// until the deadline, resending failed deliveries. A deadline passed without
// acknowledgement is recorded as a breach, never silent.
func OnwardErasure(ctx workflow.Context, in OnwardInput) (OnwardResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		HeartbeatTimeout:    20 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 5 * time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Minute, MaximumAttempts: 5, NonRetryableErrorTypes: []string{ErrPermanent}},
	})
	var a *Activities
	res := OnwardResult{Partner: in.Partner}
	acked := workflow.GetSignalChannel(ctx, OnwardAckSignal)
	for {
		var st OnwardState
		err := workflow.ExecuteActivity(ctx, a.SendOnward, in).Get(ctx, &st)
		res.Attempts++
		if memberHeld(err) && workflow.GetVersion(ctx, "member-hold-onward", workflow.DefaultVersion, 1) == 1 {
			// The member's data went on legal hold: the erasure waits, and sends again after.
			return res, err
		}
		if err == nil && st.Acknowledged {
			res.Acknowledged = true
			return res, nil
		}
		wait := in.Deadline.Sub(workflow.Now(ctx))
		if wait <= 0 {
			_ = workflow.ExecuteActivity(ctx, a.RecordEscalation, EscalationInput{RequestID: in.RequestID, Level: "onward-breach:" + in.Partner}).Get(ctx, nil)
			return res, nil
		}
		poll := OnwardPollInterval
		if in.PollInterval > 0 {
			poll = in.PollInterval
		}
		if wait > poll {
			wait = poll
		}
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(acked, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
		sel.AddFuture(workflow.NewTimer(ctx, wait), func(workflow.Future) {})
		sel.Select(ctx)
	}
}

// eraseData erases fulfillment's archives, takes the processors to tell and erases
// preferences and sharing, one step after another (runs older than lean bookkeeping).
func (r *run) eraseData(ctx workflow.Context, ref RequestRef) (ServiceErasure, []Recipient, []ServiceErasure, error) {
	var a *Activities
	var archives ServiceErasure
	if r.archiveLifecycle {
		// Fulfillment's own copies first: a running export is stopped before it can
		// write more, then every archive and part of the member goes with its key.
		if err := workflow.ExecuteActivity(r.longCtx(ctx), a.EraseArchives, ref).Get(ctx, &archives); err != nil {
			return ServiceErasure{}, nil, nil, err
		}
		r.step(ctx, "erase.fulfillment", "done", archives.Total())
	}
	// Recipients come from sharing's disclosure log, which erasing sharing re-keys to the
	// tombstone: runs since this version take them first and keep them in the workflow.
	// Histories recorded before it replay the old order (which found no recipients).
	var recipients []Recipient
	early := r.allChanges || workflow.GetVersion(ctx, "recipients-before-erasure", workflow.DefaultVersion, 1) == 1
	if early {
		if err := workflow.ExecuteActivity(r.shortCtx(ctx), a.ErasureRecipients, ref).Get(ctx, &recipients); err != nil {
			return ServiceErasure{}, nil, nil, err
		}
		r.step(ctx, "onward.recipients", "done", int64(len(recipients)))
	}
	var results []ServiceErasure
	for _, svc := range EraseFirst {
		var res ServiceErasure
		if err := workflow.ExecuteActivity(r.longCtx(ctx), a.EraseService, EraseInput{RequestRef: ref, Service: svc}).Get(ctx, &res); err != nil {
			return ServiceErasure{}, nil, nil, err
		}
		results = append(results, res)
		r.step(ctx, "erase."+svc, "done", res.Total())
	}
	if !early {
		if err := workflow.ExecuteActivity(r.shortCtx(ctx), a.ErasureRecipients, ref).Get(ctx, &recipients); err != nil {
			return ServiceErasure{}, nil, nil, err
		}
	}
	return archives, recipients, results, nil
}

// eraseDataLean does what eraseData does with the independent steps side by side:
// fulfillment's archives while the recipients are taken from sharing's disclosure log
// (before erasing sharing re-keys it), then preferences and sharing together.
func (r *run) eraseDataLean(ctx workflow.Context, ref RequestRef) (ServiceErasure, []Recipient, []ServiceErasure, error) {
	var a *Activities
	var archives ServiceErasure
	var recipients []Recipient
	fArchives := workflow.ExecuteActivity(r.longCtx(ctx), a.EraseArchives, ref)
	fRecipients := workflow.ExecuteActivity(r.shortCtx(ctx), a.ErasureRecipients, ref)
	errA, errR := fArchives.Get(ctx, &archives), fRecipients.Get(ctx, &recipients)
	if err := errors.Join(errA, errR); err != nil {
		return ServiceErasure{}, nil, nil, err
	}
	r.step(ctx, "erase.fulfillment", "done", archives.Total())
	r.step(ctx, "onward.recipients", "done", int64(len(recipients)))
	futures := make([]workflow.Future, len(EraseFirst))
	for i, svc := range EraseFirst {
		futures[i] = workflow.ExecuteActivity(r.longCtx(ctx), a.EraseService, EraseInput{RequestRef: ref, Service: svc})
	}
	results := make([]ServiceErasure, len(EraseFirst))
	var errs []error
	for i, svc := range EraseFirst {
		if err := futures[i].Get(ctx, &results[i]); err != nil {
			errs = append(errs, err)
			continue
		}
		r.step(ctx, "erase."+svc, "done", results[i].Total())
	}
	return archives, recipients, results, errors.Join(errs...)
}
