package grpcapi

import (
	"context"
	"errors"
	"regexp"
	"time"
	"unicode/utf8"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	"lethe.dev/platform/authz"
	"lethe.dev/platform/errs"
	"lethe.dev/services/fulfillment/internal/request"
)

var (
	idPattern    = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	phonePattern = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
)

// checkKindDetails validates what a kind needs beyond its kind: the correction of a
// rectification, the target of an objection.
func checkKindDetails(in *fulfillmentv1.PrivacyRequest, v *errs.Violations) {
	switch in.GetKind() {
	case fulfillmentv1.RequestKind_REQUEST_KIND_RECTIFICATION:
		rc := in.GetRectification()
		path, ok := request.RectificationPaths[rc.GetField()]
		if !ok {
			v.Add("privacy_request.rectification.field", "must be FULL_NAME, BIRTH_DATE or PHONE_NUMBER")
		}
		val := rc.GetValue()
		switch n := utf8.RuneCountInString(val); {
		case n == 0 || n > 200:
			v.Add("privacy_request.rectification.value", "is required, at most 200 characters")
		case path == "birth_date":
			if _, err := time.Parse("2006-01-02", val); err != nil {
				v.Add("privacy_request.rectification.value", "must be a date in YYYY-MM-DD form")
			}
		case path == "phone_number" && !phonePattern.MatchString(val):
			v.Add("privacy_request.rectification.value", "must be an E.164 phone number, e.g. +14155550100")
		}
		if utf8.RuneCountInString(rc.GetStatement()) > 1000 {
			v.Add("privacy_request.rectification.statement", "at most 1000 characters")
		}
	case fulfillmentv1.RequestKind_REQUEST_KIND_OBJECTION:
		o := in.GetObjection()
		if o.GetPurpose() == "" && o.GetPartner() == "" && !o.GetDirectMarketing() {
			v.Add("privacy_request.objection", "name a purpose, a partner or direct marketing")
		}
		if p := o.GetPurpose(); p != "" && !idPattern.MatchString(p) {
			v.Add("privacy_request.objection.purpose", "must be a purpose id")
		}
		if p := o.GetPartner(); p != "" {
			if id, ok := cutPrefix(p, "partners/"); !ok || !idPattern.MatchString(id) {
				v.Add("privacy_request.objection.partner", "must be partners/{partner}")
			}
		}
	}
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || s[:len(prefix)] != prefix {
		return s, false
	}
	return s[len(prefix):], true
}

func checkDenial(code fulfillmentv1.DenialReason, field string, reason string, v *errs.Violations) {
	if _, ok := request.DenialText[code]; !ok {
		v.Add(field, "must be UNVERIFIABLE, MANIFESTLY_UNFOUNDED, EXCESSIVE or LEGAL_OBLIGATION")
	}
	if n := utf8.RuneCountInString(reason); n < 10 || n > 500 {
		v.Add("reason", "must explain the decision to the member in 10 to 500 characters (no personal data)")
	}
}

// DenyPrivacyRequest implements FulfillmentService (operators): a request is refused
// with a coded reason until its work begins; the workflow tells the member why and how
// to complain, and ends the request as denied. Idempotent.
func (s *Server) DenyPrivacyRequest(ctx context.Context, req *fulfillmentv1.DenyPrivacyRequestRequest) (*fulfillmentv1.PrivacyRequest, error) {
	var v errs.Violations
	checkDenial(req.GetDenialReason(), "denial_reason", req.GetReason(), &v)
	if err := v.Err(); err != nil {
		return nil, err
	}
	r, err := s.loadByName(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return s.deny(ctx, r, req.GetDenialReason(), req.GetReason())
}

var errTooLateToDeny = errs.New(errs.FailedPrecondition, "TOO_LATE_TO_DENY", "the request's work has begun; it can no longer be denied")

func (s *Server) deny(ctx context.Context, r *row, code fulfillmentv1.DenialReason, reason string) (*fulfillmentv1.PrivacyRequest, error) {
	switch st := r.pr.GetState(); {
	case st == fulfillmentv1.RequestState_REQUEST_STATE_DENIED:
		return r.pr, nil
	case request.IsFinal(st):
		return nil, errs.New(errs.FailedPrecondition, "REQUEST_CLOSED", "the request is closed")
	}
	// The reason is recorded first: the workflow's message to the member reads it.
	if _, err := s.DB.ExecContext(ctx, `UPDATE requests SET denial_reason = $1, denial_explanation = $2, denied_by = $3 WHERE id = $4 AND is_open`,
		int32(code), reason, actor(ctx), r.id); err != nil {
		return nil, err
	}
	if err := s.ensureWorkflow(ctx, r); err != nil {
		return nil, err
	}
	if err := s.update(ctx, r, request.DenyUpdate, "deny-"+r.id); err != nil {
		fresh, lerr := s.load(ctx, `id = $1`, r.id)
		if lerr == nil && fresh.pr.GetState() == fulfillmentv1.RequestState_REQUEST_STATE_DENIED {
			return fresh.pr, nil // a concurrent or earlier call got there
		}
		if errors.Is(err, errRejected) {
			_, _ = s.DB.ExecContext(ctx, `UPDATE requests SET denial_reason = 0, denial_explanation = '', denied_by = '' WHERE id = $1 AND state <> $2`,
				r.id, int32(fulfillmentv1.RequestState_REQUEST_STATE_DENIED))
			return nil, errTooLateToDeny
		}
		return nil, err
	}
	if r.pr.GetKind() == fulfillmentv1.RequestKind_REQUEST_KIND_RECTIFICATION {
		// A rejected correction's asserted value is not kept.
		if _, err := s.DB.ExecContext(ctx, `UPDATE rectifications SET value = '', statement = '', reviewed_by = $1, reviewed_at = $2 WHERE request_id = $3`,
			actor(ctx), s.now().UnixMicro(), r.id); err != nil {
			return nil, err
		}
	}
	return s.settled(ctx, r.id)
}

// errRejected: the workflow's validator refused the update, or the run is closed.
var errRejected = errors.New("update rejected")

// update sends a validated update to the request's workflow and waits for it.
func (s *Server) update(ctx context.Context, r *row, name, updateID string) error {
	h, err := s.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: request.WorkflowID(kindNames[r.pr.GetKind()], r.member), UpdateID: updateID,
		UpdateName: name, WaitForStage: client.WorkflowUpdateStageCompleted})
	if err == nil {
		err = h.Get(ctx, nil)
	}
	var app *temporal.ApplicationError
	var nf *serviceerror.NotFound
	if errors.As(err, &app) || errors.As(err, &nf) {
		return errRejected
	}
	return err
}

// settled returns the request once the workflow recorded what an update started (a
// denial's message and state), or as it is after a short wait.
func (s *Server) settled(ctx context.Context, id string) (*fulfillmentv1.PrivacyRequest, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := s.load(ctx, `id = $1`, id)
		if err != nil || request.IsFinal(r.pr.GetState()) || time.Now().After(deadline) {
			if err != nil {
				return nil, err
			}
			return r.pr, nil
		}
		select {
		case <-ctx.Done():
			return r.pr, nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ReviewRectification implements FulfillmentService (operators): approve applies the
// correction in identity; reject is a denial with a coded reason.
func (s *Server) ReviewRectification(ctx context.Context, req *fulfillmentv1.ReviewRectificationRequest) (*fulfillmentv1.PrivacyRequest, error) {
	var v errs.Violations
	if req.GetApprove() {
		if n := utf8.RuneCountInString(req.GetReason()); n > 500 {
			v.Add("reason", "at most 500 characters")
		}
	} else {
		checkDenial(req.GetDenialReason(), "denial_reason", req.GetReason(), &v)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	r, err := s.loadByName(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	if r.pr.GetKind() != fulfillmentv1.RequestKind_REQUEST_KIND_RECTIFICATION {
		return nil, errs.New(errs.FailedPrecondition, "NOT_A_RECTIFICATION", "only rectifications are reviewed")
	}
	if !req.GetApprove() {
		return s.deny(ctx, r, req.GetDenialReason(), req.GetReason())
	}
	if r.pr.GetRectification().GetApproved() {
		return r.pr, nil
	}
	if request.IsFinal(r.pr.GetState()) {
		return nil, errs.New(errs.FailedPrecondition, "REQUEST_CLOSED", "the request is closed")
	}
	if _, err := s.DB.ExecContext(ctx, `UPDATE rectifications SET approved = TRUE, reviewed_by = $1, reviewed_at = $2 WHERE request_id = $3`,
		actor(ctx), s.now().UnixMicro(), r.id); err != nil {
		return nil, err
	}
	if err := s.update(ctx, r, request.ApproveUpdate, "approve-"+r.id); err != nil {
		if errors.Is(err, errRejected) {
			_, _ = s.DB.ExecContext(ctx, `UPDATE rectifications SET approved = FALSE, reviewed_by = '', reviewed_at = NULL WHERE request_id = $1`, r.id)
			return nil, errs.New(errs.FailedPrecondition, "NOT_AWAITING_REVIEW", "the rectification is not waiting for review (it must be verified first)")
		}
		return nil, err
	}
	return s.settled(ctx, r.id)
}

// LiftRestriction implements FulfillmentService: the member (or an operator, with a
// reason) ends the restriction of processing a completed restriction request put in
// force. Idempotent.
func (s *Server) LiftRestriction(ctx context.Context, req *fulfillmentv1.LiftRestrictionRequest) (*fulfillmentv1.PrivacyRequest, error) {
	operator := authz.FromContext(ctx).Role == authz.RoleOperator
	if n := utf8.RuneCountInString(req.GetReason()); (operator && n < 3) || n > 500 {
		return nil, errs.Invalid(errs.FieldViolation{Field: "reason", Description: "operators give a reason (a case reference), 3 to 500 characters"})
	}
	r, err := s.loadByName(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	switch {
	case r.pr.GetKind() != fulfillmentv1.RequestKind_REQUEST_KIND_RESTRICTION:
		return nil, errs.New(errs.FailedPrecondition, "NOT_A_RESTRICTION", "only a restriction request can be lifted")
	case r.pr.GetRestrictionLiftTime() != nil:
		return r.pr, nil
	case r.pr.GetState() != fulfillmentv1.RequestState_REQUEST_STATE_COMPLETED:
		return nil, errs.New(errs.FailedPrecondition, "RESTRICTION_NOT_IN_FORCE", "the restriction is not in force (yet)")
	}
	if err := request.SetRestriction(ctx, s.Preferences, s.Sharing, r.member, r.id, false); err != nil {
		return nil, err
	}
	if _, err := s.DB.ExecContext(ctx, `UPDATE requests SET restriction_lifted_at = COALESCE(restriction_lifted_at, $1) WHERE id = $2`, s.now().UnixMicro(), r.id); err != nil {
		return nil, err
	}
	return s.GetPrivacyRequest(ctx, &fulfillmentv1.GetPrivacyRequestRequest{Name: req.GetName()})
}
