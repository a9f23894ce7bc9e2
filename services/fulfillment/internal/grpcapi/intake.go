package grpcapi

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	identityv1 "lethe.dev/gen/lethe/identity/v1"
	"lethe.dev/platform/authz"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/grpcserver"
	"lethe.dev/platform/ids"
	"lethe.dev/platform/storage"
	"lethe.dev/services/fulfillment/internal/request"
)

// Intake is row first, then workflow, and converges from any crash in between:
//
//  1. the request id and the receipt token are derived (from the member and the client's
//     request id, and from the request id under TokenKey), so every retry of a filing
//     computes the same row, the same workflow input and the same token;
//  2. the row is inserted with everything the workflow input needs (workflow_started
//     false);
//  3. ensureWorkflow starts the workflow unless the latest run under the member's
//     workflow id already belongs to this request (memo "request", or the start event's
//     input for runs older than the memo), then marks the row started.
//
// A retry with the same request id, a new filing by the same member (which meets the open
// request) and the reconciler (Reconcile, for filings nobody retries) all go through
// step 3, so an open request always gets its workflow and never blocks its member.

// Intake steps a fault-injection build can crash after (fault_inject.go).
const (
	stepMemberChecked   = "member-checked"
	stepRowInserted     = "row-inserted"
	stepWorkflowStarted = "workflow-started"
)

// memoRequest is the workflow memo key naming the request a run belongs to.
const memoRequest = "request"

// errHeldByAnother: the member's workflow id is running for another request.
var errHeldByAnother = errors.New("the workflow id is held by another request")

// RequestID derives a request's id from its member and the client's idempotency key.
func RequestID(member, clientRequestID string) string {
	h := sha256.Sum256([]byte("lethe-privacy-request\x00" + member + "\x00" + clientRequestID))
	return hex.EncodeToString(h[:16])
}

// receiptToken derives an erasure's receipt token from its request id.
func (s *Server) receiptToken(requestID string) string {
	m := hmac.New(sha256.New, s.TokenKey)
	_, _ = io.WriteString(m, "receipt-token\x00"+requestID)
	return hex.EncodeToString(m.Sum(nil))
}

func (s *Server) logger() interface{ Warn(string, ...any) } {
	if s.Logger == nil {
		return discard{}
	}
	return s.Logger
}

type discard struct{}

func (discard) Warn(string, ...any) {}

// childErasureAllowed reports whether the caller may file a child erasure (verified at
// once, no cooling-off): an operator, or an internal caller with no end-user identity
// (the child-report consumer). A member — even on their own account — may not: that
// would be an erasure without verification.
func childErasureAllowed(ctx context.Context) bool {
	switch authz.FromContext(ctx).Role {
	case authz.RoleOperator, authz.RoleService:
		return true
	}
	return false
}

// CreatePrivacyRequest implements FulfillmentService. It is idempotent by the client's
// request id: a retry answers with the same request and the same receipt token.
func (s *Server) CreatePrivacyRequest(ctx context.Context, req *fulfillmentv1.CreatePrivacyRequestRequest) (*fulfillmentv1.PrivacyRequest, error) {
	member, ok := strings.CutPrefix(req.GetParent(), "members/")
	in := req.GetPrivacyRequest()
	var v errs.Violations
	if !ok || !ids.Valid(member) {
		v.Add("parent", "must be members/{member}")
	}
	_, known := kindNames[in.GetKind()]
	if !known {
		v.Add("privacy_request.kind", "must be ACCESS, ERASURE, CHILD_ERASURE, RECTIFICATION, RESTRICTION, OBJECTION, SALE_OPT_OUT or PORTABILITY")
	}
	checkKindDetails(in, &v)
	if in.GetJurisdiction() < 0 || in.GetJurisdiction() > 3 {
		v.Add("privacy_request.jurisdiction", "unknown jurisdiction")
	}
	if n := len(req.GetRequestId()); n == 0 || n > 100 {
		v.Add("request_id", "is required (the client's idempotency key), at most 100 characters")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if in.GetKind() == fulfillmentv1.RequestKind_REQUEST_KIND_CHILD_ERASURE && !childErasureAllowed(ctx) {
		return nil, errs.New(errs.PermissionDenied, "CHILD_ERASURE_OPERATOR_ONLY", "child erasure is filed by operators or by a child report")
	}
	erasure := isErasure(in.GetKind())
	// Two rounds at most: a concurrent filing can win the insert, then we answer with its row.
	for round := 0; ; round++ {
		kinds := []int32{int32(in.GetKind())}
		if erasure {
			kinds = []int32{int32(fulfillmentv1.RequestKind_REQUEST_KIND_ERASURE), int32(fulfillmentv1.RequestKind_REQUEST_KIND_CHILD_ERASURE)}
		}
		// One read for both: this filing's own row (a retry), else the member's open
		// request of the kind, which answers instead (one open request per kind).
		if r, err := s.load(ctx, `member_id = $1 AND (client_request_id = $2 OR (is_open AND (kind = $3 OR kind = $4)))
			ORDER BY CASE WHEN client_request_id = $5 THEN 0 ELSE 1 END LIMIT 1`, member, req.GetRequestId(), kinds[0], kinds[len(kinds)-1], req.GetRequestId()); err == nil {
			if r.clientRequestID == req.GetRequestId() {
				return s.answer(ctx, r, true)
			}
			if in.GetKind() == fulfillmentv1.RequestKind_REQUEST_KIND_CHILD_ERASURE && r.pr.GetKind() == fulfillmentv1.RequestKind_REQUEST_KIND_ERASURE {
				return s.upgradeToChild(ctx, r)
			}
			return s.answer(ctx, r, false)
		} else if !isNotFound(err) {
			return nil, err
		}
		if in.GetKind() == fulfillmentv1.RequestKind_REQUEST_KIND_RESTRICTION {
			// A restriction in force answers another: there is one restriction to lift.
			if r, err := s.load(ctx, `member_id = $1 AND kind = $2 AND state = $3 AND restriction_lifted_at IS NULL`, member,
				int32(in.GetKind()), int32(fulfillmentv1.RequestState_REQUEST_STATE_COMPLETED)); err == nil {
				return r.pr, nil
			} else if !isNotFound(err) {
				return nil, err
			}
		}
		if round > 0 {
			return nil, errs.New(errs.Aborted, "CONCURRENT_FILING", "another filing for this member changed the request; retry")
		}
		if _, err := s.Identity.GetMember(ctx, &identityv1.GetMemberRequest{Name: "members/" + member}); err != nil {
			if grpcserver.ReasonOf(err) == "MEMBER_NOT_FOUND" && erasure {
				// A late or repeated erasure of an erased member is answered from our record of
				// the erasure that already happened.
				if r, err2 := s.load(ctx, `member_id = $1 AND kind IN (2, 3) AND state = 5 ORDER BY completed_at DESC LIMIT 1`, member); err2 == nil {
					return r.pr, nil
				}
			}
			return nil, err
		}
		fault(stepMemberChecked)
		now := s.now()
		due := request.RuleFor(in.GetJurisdiction()).Due(now)
		origin := in.GetOrigin()
		if origin == fulfillmentv1.RequestOrigin_REQUEST_ORIGIN_UNSPECIFIED {
			origin = fulfillmentv1.RequestOrigin_REQUEST_ORIGIN_MEMBER
		}
		cooling := s.CoolingOff
		verified := origin == fulfillmentv1.RequestOrigin_REQUEST_ORIGIN_MEMBER && recentSignIn(ctx)
		if origin == fulfillmentv1.RequestOrigin_REQUEST_ORIGIN_AGENT {
			// Only DataRights files for agents, and vouches for the agent's verified claims.
			agentVerified, ok := filedByAgent(ctx)
			if !ok {
				return nil, errs.Invalid(errs.FieldViolation{Field: "privacy_request.origin", Description: "AGENT requests come through the Data Rights Protocol"})
			}
			verified = agentVerified
		}
		if origin == fulfillmentv1.RequestOrigin_REQUEST_ORIGIN_ACCOUNT_DISABLED {
			// Only the disabled-account workflow files these, when the account's grace period
			// ended: the disable was authenticated and the grace period was the cooling-off.
			if authz.FromContext(ctx).Role != authz.RoleService || in.GetKind() != fulfillmentv1.RequestKind_REQUEST_KIND_ERASURE {
				return nil, errs.Invalid(errs.FieldViolation{Field: "privacy_request.origin", Description: "ACCOUNT_DISABLED erasures are filed when a disabled account's grace period ends"})
			}
			cooling, verified = 0, true
		}
		if in.GetKind() == fulfillmentv1.RequestKind_REQUEST_KIND_CHILD_ERASURE {
			cooling, verified = 0, true // children's data goes as soon as it is discovered
		}
		if !erasure {
			cooling = 0
		}
		var coolingEnd any
		if cooling > 0 {
			coolingEnd = now.Add(cooling).UnixMicro()
		}
		id := RequestID(member, req.GetRequestId())
		var tokenHash any
		if erasure {
			h := sha256.Sum256([]byte(s.receiptToken(id)))
			tokenHash = h[:]
		}
		obj := in.GetObjection()
		insert := func(tx interface {
			ExecContext(context.Context, string, ...any) (sql.Result, error)
		}) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO requests (id, member_id, kind, jurisdiction, origin, state, is_open, client_request_id, created_at, due_at, extended, extension_reason,
			hold_reason, cooling_off_end, progress, challenge_id, tombstone_id, archive_path, archive_size, archive_sha256, breached, receipt_token_hash, verified, workflow_started,
			objection_purpose, objection_partner, objection_marketing)
			VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7, $8, $9, FALSE, '', '', $10, '[]', '', $11, '', 0, '', FALSE, $12, $13, FALSE, $14, $15, $16)`,
				id, member, int32(in.GetKind()), int32(in.GetJurisdiction()), int32(origin), int32(fulfillmentv1.RequestState_REQUEST_STATE_IN_PROGRESS), req.GetRequestId(),
				now.UnixMicro(), due.UnixMicro(), coolingEnd, ids.New(), tokenHash, verified, obj.GetPurpose(), obj.GetPartner(), obj.GetDirectMarketing())
			return err
		}
		var err error
		if rc := in.GetRectification(); in.GetKind() == fulfillmentv1.RequestKind_REQUEST_KIND_RECTIFICATION {
			err = s.DB.InTx(ctx, func(tx *sql.Tx) error {
				if err := insert(tx); err != nil {
					return err
				}
				// The asserted value stays here, never in the workflow, until the review.
				_, err := tx.ExecContext(ctx, `INSERT INTO rectifications (request_id, member_id, field, value, statement) VALUES ($1, $2, $3, $4, $5)`,
					id, member, int32(rc.GetField()), rc.GetValue(), rc.GetStatement())
				return err
			})
		} else {
			err = insert(s.DB) // one statement: no transaction to open and commit
		}
		if storage.IsUniqueViolation(err) {
			continue // a concurrent filing (or an earlier attempt) got there first
		}
		if err != nil {
			return nil, err
		}
		fault(stepRowInserted)
		r, err := s.load(ctx, `id = $1`, id)
		if err != nil {
			return nil, err
		}
		r.inserted = true
		return s.answer(ctx, r, true)
	}
}

// upgradeToChild turns a member's open ordinary erasure into a child erasure: a child
// report must not be swallowed by an erasure still waiting for its code or cooling off.
// The workflow is told first (the signal is idempotent there), then the row, so a retry
// after a failure in between signals again.
func (s *Server) upgradeToChild(ctx context.Context, r *row) (*fulfillmentv1.PrivacyRequest, error) {
	if err := s.ensureWorkflow(ctx, r); err != nil {
		return nil, startFailed(err)
	}
	if err := s.Temporal.SignalWorkflow(ctx, request.WorkflowID(request.KindErasure, r.member), "", request.ChildErasureSignal, nil); err != nil {
		return nil, err
	}
	if _, err := s.DB.ExecContext(ctx, `UPDATE requests SET kind = $1, verified = TRUE, cooling_off_end = NULL WHERE id = $2 AND is_open AND kind = $3`,
		int32(fulfillmentv1.RequestKind_REQUEST_KIND_CHILD_ERASURE), r.id, int32(fulfillmentv1.RequestKind_REQUEST_KIND_ERASURE)); err != nil {
		return nil, err
	}
	u, err := s.load(ctx, `id = $1`, r.id)
	if err != nil {
		return nil, err
	}
	return u.pr, nil
}

func isNotFound(err error) bool {
	var e *errs.Error
	return errors.As(err, &e) && e.Code == errs.NotFound
}

// answer makes sure the request's workflow runs and returns the request; own is true
// when the caller filed it (same request id), who then gets the receipt token again.
func (s *Server) answer(ctx context.Context, r *row, own bool) (*fulfillmentv1.PrivacyRequest, error) {
	if err := s.ensureWorkflow(ctx, r); err != nil {
		if errors.Is(err, errHeldByAnother) {
			if own {
				// Nothing ever ran for this row: remove it, so the member can file again
				// once the running request ends.
				_, _ = s.DB.ExecContext(ctx, `DELETE FROM requests WHERE id = $1 AND NOT workflow_started`, r.id)
			}
			return nil, errs.New(errs.FailedPrecondition, "REQUEST_IN_PROGRESS", "another request of this kind is running for the member")
		}
		return nil, startFailed(err)
	}
	if r.started && r.open && !r.inserted {
		// Re-read: the workflow may already have moved the request on (a row this call
		// inserted was just read back and its run only now started).
		if fresh, err := s.load(ctx, `id = $1`, r.id); err == nil {
			fresh.tokenHash = r.tokenHash
			r = fresh
		}
	}
	if own && r.pr.GetKind() != fulfillmentv1.RequestKind_REQUEST_KIND_ACCESS && len(r.tokenHash) > 0 {
		tok := s.receiptToken(r.id)
		if h := sha256.Sum256([]byte(tok)); bytes.Equal(h[:], r.tokenHash) { // rows filed before derived tokens keep theirs unknown
			r.pr.ReceiptToken = tok
		}
	}
	return r.pr, nil
}

// ensureWorkflow starts an open request's workflow unless it already runs (or ran), and
// records that it did. Safe to call concurrently and again after a crash.
func (s *Server) ensureWorkflow(ctx context.Context, r *row) error {
	if r.started || !r.open {
		return nil
	}
	kind := kindNames[r.pr.GetKind()]
	wid := request.WorkflowID(kind, r.member)
	// A row this filing inserted never had a workflow: start it at once, and look whose
	// run holds the workflow id only when the start finds one (a member's earlier request
	// still running) — one Temporal call less per filing.
	startFirst := r.inserted
	for attempt, waits := 0, 0; attempt < 3; attempt++ {
		var owner string
		var running bool
		if startFirst {
			startFirst = false
			attempt-- // the usual three looks remain
		} else {
			var err error
			if owner, running, err = s.workflowOwner(ctx, wid); err != nil {
				return err
			}
		}
		if owner != r.id {
			if running && waits < closingWaits && s.closed(ctx, owner) {
				// The previous request is over and its run is finishing its last step
				// (e.g. handing an export's archive to ArchiveExpiry): wait for it.
				waits++
				attempt--
				time.Sleep(100 * time.Millisecond)
				continue
			}
			if running {
				return errHeldByAnother
			}
			err := s.start(ctx, func(ctx context.Context) error {
				in := s.workflowInput(r, kind)
				_, err := s.Temporal.ExecuteWorkflow(ctx, s.startOptions(wid, kind, r, in), request.PrivacyRequest, in)
				return err
			})
			var already *serviceerror.WorkflowExecutionAlreadyStarted
			if errors.As(err, &already) {
				continue // a concurrent start: look again whose it is
			}
			if err != nil {
				return err
			}
			fault(stepWorkflowStarted)
		}
		if _, err := s.DB.ExecContext(ctx, `UPDATE requests SET workflow_started = TRUE WHERE id = $1`, r.id); err != nil {
			return err
		}
		r.started = true
		return nil
	}
	return errHeldByAnother
}

// DefaultStartConcurrency bounds the workflow starts one fulfillment process has in
// flight at once (Server.StartConcurrency overrides it).
const DefaultStartConcurrency = 64

// start runs one workflow start while holding one of the process's start slots. A burst
// of filings (a thousand at once) then queues here, under each caller's own deadline,
// instead of at the Temporal server, where every start would wait behind the rest past
// the SDK's 10 s deadline per call and fail.
func (s *Server) start(ctx context.Context, fn func(context.Context) error) error {
	s.startOnce.Do(func() {
		n := s.StartConcurrency
		if n <= 0 {
			n = DefaultStartConcurrency
		}
		s.startSlots = make(chan struct{}, n)
	})
	// Wait for a slot at most half the time left (a filing gets an answer, UNAVAILABLE,
	// while its caller still listens), and no longer than maxSlotWait.
	wait := maxSlotWait
	if d, ok := ctx.Deadline(); ok && time.Until(d)/2 < wait {
		wait = time.Until(d) / 2
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case s.startSlots <- struct{}{}:
	case <-t.C:
		return errStartsBusy
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.startSlots }()
	return fn(ctx)
}

// maxSlotWait bounds how long a filing waits for a start slot before it is answered
// UNAVAILABLE (and filed again by its client with the same request id).
const maxSlotWait = 10 * time.Second

// errStartsBusy: every start slot stayed taken for as long as the filing could wait.
var errStartsBusy = errors.New("every workflow start slot is taken")

// startFailed answers a workflow start that failed (Temporal busy or unreachable, the
// SDK's deadline, the database) UNAVAILABLE: the row is kept and the request id makes a
// retry the same filing, and the reconciler starts the workflow if nobody retries.
// Errors that already carry a Lethe code pass unchanged.
func startFailed(err error) error {
	var e *errs.Error
	if errors.As(err, &e) {
		return err
	}
	return errs.Wrap(err, errs.Unavailable, "WORKFLOW_START_FAILED", "the request was recorded but its workflow could not be started yet; retry with the same request_id")
}

// closingWaits bounds how long (×100 ms) a filing waits for the run of a request that
// has already ended to close.
const closingWaits = 50

// closed reports whether request id is no longer open.
func (s *Server) closed(ctx context.Context, id string) bool {
	var open bool
	err := s.DB.QueryRowContext(ctx, `SELECT is_open FROM requests WHERE id = $1`, id).Scan(&open)
	return err == nil && !open
}

// workflowOwner returns the request id of the latest run under wid and whether it runs.
func (s *Server) workflowOwner(ctx context.Context, wid string) (owner string, running bool, err error) {
	d, err := s.Temporal.DescribeWorkflowExecution(ctx, wid, "")
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	info := d.GetWorkflowExecutionInfo()
	running = info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
	dc := converter.GetDefaultDataConverter()
	if p, ok := info.GetMemo().GetFields()[memoRequest]; ok {
		if err := dc.FromPayload(p, &owner); err == nil {
			return owner, running, nil
		}
	}
	// Runs started before the memo existed: the request id is in the start event's input.
	it := s.Temporal.GetWorkflowHistory(ctx, wid, info.GetExecution().GetRunId(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	if !it.HasNext() {
		return "", running, nil
	}
	ev, err := it.Next()
	if err != nil {
		return "", running, err
	}
	var in request.Input
	if p := ev.GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads(); len(p) > 0 && dc.FromPayload(p[0], &in) == nil {
		return in.RequestID, running, nil
	}
	return "", running, nil
}

func (s *Server) startOptions(wid, kind string, r *row, in request.Input) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID: wid, TaskQueue: request.TaskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		// This process runs the request worker: the server hands the first workflow task
		// back with the start, saving a poll round trip (it starts normally otherwise).
		EnableEagerStart: true,
		Memo:             map[string]any{memoRequest: r.id},
		TypedSearchAttributes: temporal.NewSearchAttributes(
			temporal.NewSearchAttributeKeyKeyword(request.SAKind).ValueSet(kind),
			temporal.NewSearchAttributeKeyKeyword(request.SAStatus).ValueSet(request.InitialStatus(in)),
			temporal.NewSearchAttributeKeyTime(request.SADueTime).ValueSet(r.due),
			temporal.NewSearchAttributeKeyKeyword(request.SAJurisdiction).ValueSet(strings.ToLower(strings.TrimPrefix(r.pr.GetJurisdiction().String(), "JURISDICTION_"))),
		),
	}
}

// workflowInput rebuilds the workflow input from the row alone. A workflow started late
// (after a crash) keeps the cooling-off end the member was told, not a fresh period.
func (s *Server) workflowInput(r *row, kind string) request.Input {
	var cooling time.Duration
	if end := r.pr.GetCoolingOffEndTime(); end != nil {
		if cooling = end.AsTime().Sub(s.now()); cooling < time.Second {
			cooling = time.Second // the period was promised: still enter (and at once leave) it
		}
	}
	var ackBy time.Time
	if rule := request.RuleFor(r.pr.GetJurisdiction()); rule.AcknowledgeBy != nil {
		ackBy = rule.AcknowledgeBy(r.created)
	}
	return request.Input{
		RequestID: r.id, MemberID: r.member, Kind: kind, Jurisdiction: r.pr.GetJurisdiction().String(), Verified: r.verified, DueTime: r.due,
		CoolingOff: cooling, VerificationWindow: s.VerificationWindow, ArchiveTTL: s.ArchiveTTL, OnwardPollInterval: s.OnwardPollInterval,
		AcknowledgeBy: ackBy, Revision: request.CurrentRevision,
	}
}

// Reconcile starts the workflows of open requests older than grace whose start was never
// confirmed — filings that crashed between the row and the workflow and that nobody
// retried. It returns how many it started or confirmed.
func (s *Server) Reconcile(ctx context.Context, grace time.Duration) (int, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT `+reqCols+` FROM requests WHERE workflow_started = FALSE AND is_open AND created_at < $1 ORDER BY created_at LIMIT 100`,
		s.now().Add(-grace).UnixMicro())
	if err != nil {
		return 0, err
	}
	var todo []*row
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			rows.Close()
			return 0, err
		}
		todo = append(todo, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	n := 0
	for _, r := range todo {
		switch err := s.ensureWorkflow(ctx, r); {
		case err == nil:
			n++
		case errors.Is(err, errHeldByAnother):
			// Starts once the running request of the member ends.
		default:
			s.logger().Warn("reconciler could not start a request's workflow", "request", r.id, "error", err)
		}
	}
	return n, nil
}
