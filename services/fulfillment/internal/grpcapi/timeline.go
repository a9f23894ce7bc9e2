package grpcapi

import (
	"context"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	identityv1 "lethe.dev/gen/lethe/identity/v1"
	"lethe.dev/platform/authz"
	"lethe.dev/platform/errs"
	"lethe.dev/services/fulfillment/internal/request"
)

// operatorReason requires a reason (3 to 500 characters) from an operator; members act
// on their own requests and give none.
func operatorReason(ctx context.Context, reason string) error {
	if authz.FromContext(ctx).Role != authz.RoleOperator {
		return nil
	}
	if n := len(strings.TrimSpace(reason)); n < 3 || len(reason) > 500 {
		return errs.Invalid(errs.FieldViolation{Field: "reason", Description: "is required from operators: a case reference, 3 to 500 characters (no personal data)"})
	}
	return nil
}

// dueRules describe each jurisdiction's deadline rule for people (request.Rules is the code).
var dueRules = map[fulfillmentv1.Jurisdiction][2]string{
	fulfillmentv1.Jurisdiction_JURISDICTION_POLICY: {"Privacy policy: 30 days from receipt (no extension)", ""},
	fulfillmentv1.Jurisdiction_JURISDICTION_GDPR:   {"GDPR Art. 12(3): one month from receipt", "GDPR Art. 12(3): one month from receipt, extended by two further months"},
	fulfillmentv1.Jurisdiction_JURISDICTION_CCPA:   {"CCPA §7021: 45 days from receipt", "CCPA §7021: 45 days from receipt, extended once by 45 days"},
}

// DueRule names the rule that set a request's due date.
func DueRule(j fulfillmentv1.Jurisdiction, extended bool) string {
	d, ok := dueRules[j]
	if !ok {
		d = dueRules[fulfillmentv1.Jurisdiction_JURISDICTION_POLICY]
	}
	if extended && d[1] != "" {
		return d[1]
	}
	return d[0]
}

// auditTitles name the operator actions a timeline shows; reads (Get, List) are left out.
var auditTitles = map[string][2]string{
	"ExtendPrivacyRequest": {"extension", "Due date extended"},
	"SetLegalHold":         {"hold", "Legal hold set"},
	"ReleaseLegalHold":     {"release", "Legal hold released"},
	"CancelPrivacyRequest": {"operator_action", "Cancelled by an operator"},
	"ResendVerification":   {"operator_action", "Verification code re-sent"},
	"download":             {"operator_action", "Archive downloaded by an operator"},
}

// GetPrivacyRequestTimeline implements FulfillmentService (operators).
func (s *Server) GetPrivacyRequestTimeline(ctx context.Context, req *fulfillmentv1.GetPrivacyRequestTimelineRequest) (*fulfillmentv1.PrivacyRequestTimeline, error) {
	r, err := s.loadByName(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	pr := r.pr
	rule := request.RuleFor(pr.GetJurisdiction())
	out := &fulfillmentv1.PrivacyRequestTimeline{
		PrivacyRequest:  pr,
		DueRule:         DueRule(pr.GetJurisdiction(), pr.GetExtended()),
		OriginalDueTime: timestamppb.New(rule.Due(r.created)),
		WorkflowId:      request.WorkflowID(kindNames[pr.GetKind()], r.member),
	}
	if rule.AcknowledgeBy != nil {
		out.AcknowledgeByTime = timestamppb.New(rule.AcknowledgeBy(r.created))
	}
	add := func(t time.Time, e *fulfillmentv1.TimelineEntry) {
		e.Time = timestamppb.New(t)
		out.Entries = append(out.Entries, e)
	}
	add(r.created, &fulfillmentv1.TimelineEntry{Kind: "received", Title: "Request received (" + strings.ToLower(strings.TrimPrefix(pr.GetOrigin().String(), "REQUEST_ORIGIN_")) + ")"})
	for _, st := range pr.GetProgress() {
		if p, ok := strings.CutPrefix(st.GetStep(), "onward."); ok && p != "recipients" {
			out.OnwardErasures = append(out.OnwardErasures, &fulfillmentv1.OnwardErasureStatus{Processor: p, State: st.GetState(), Attempts: st.GetCount(), UpdateTime: st.GetUpdateTime()})
		}
		add(st.GetUpdateTime().AsTime(), &fulfillmentv1.TimelineEntry{Kind: "step", Title: st.GetStep(), State: st.GetState(), Count: st.GetCount()})
	}
	rows, err := s.DB.QueryContext(ctx, `SELECT level, created_at FROM escalations WHERE request_id = $1`, r.id)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var level string
		var at int64
		if err := rows.Scan(&level, &at); err != nil {
			rows.Close()
			return nil, err
		}
		add(time.UnixMicro(at).UTC(), &fulfillmentv1.TimelineEntry{Kind: "escalation", Title: "Escalation: " + level})
	}
	rows.Close()
	if rows, err = s.DB.QueryContext(ctx, `SELECT kind, created_at FROM notifications WHERE request_id = $1`, r.id); err != nil {
		return nil, err
	}
	for rows.Next() {
		var kind string
		var at int64
		if err := rows.Scan(&kind, &at); err != nil {
			rows.Close()
			return nil, err
		}
		add(time.UnixMicro(at).UTC(), &fulfillmentv1.TimelineEntry{Kind: "notification", Title: "Member notified: " + kind})
	}
	rows.Close()
	// Operators' actions on the request, from the audit log (holds and releases with
	// their reasons, the extension, cancellation, re-sent codes, downloads).
	tok := ""
	for range 20 { // at most 20 pages of 500 events about one request
		events, next, err := s.Audit.List(ctx, 500, tok, req.GetName())
		if err != nil {
			return nil, err
		}
		for _, e := range events {
			if e.Target != req.GetName() {
				continue
			}
			method := e.Action[strings.LastIndex(e.Action, "/")+1:]
			t, ok := auditTitles[method]
			if !ok {
				continue
			}
			add(e.Time, &fulfillmentv1.TimelineEntry{Kind: t[0], Title: t[1], Reason: e.Reason, Actor: e.Actor})
		}
		if tok = next; tok == "" {
			break
		}
	}
	if c := pr.GetCompleteTime(); c != nil {
		add(c.AsTime(), &fulfillmentv1.TimelineEntry{Kind: "closed", Title: "Request closed", State: strings.ToLower(strings.TrimPrefix(pr.GetState().String(), "REQUEST_STATE_"))})
	}
	slices.SortStableFunc(out.Entries, func(a, b *fulfillmentv1.TimelineEntry) int { return a.GetTime().AsTime().Compare(b.GetTime().AsTime()) })
	return out, nil
}

// ResendVerification implements FulfillmentService: a new code for a request that waits
// for verification. The workflow keeps waiting for its verify signal; the new challenge
// replaces the old one, so only the newest code verifies.
func (s *Server) ResendVerification(ctx context.Context, req *fulfillmentv1.ResendVerificationRequest) (*fulfillmentv1.PrivacyRequest, error) {
	if err := operatorReason(ctx, req.GetReason()); err != nil {
		return nil, err
	}
	r, err := s.loadByName(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	if r.pr.GetState() != fulfillmentv1.RequestState_REQUEST_STATE_AWAITING_VERIFICATION {
		return nil, errs.New(errs.FailedPrecondition, "NOT_AWAITING_VERIFICATION", "the request is not waiting for a code")
	}
	ch, err := s.Identity.SendVerificationCode(ctx, &identityv1.SendVerificationCodeRequest{Name: "members/" + r.member,
		Purpose: identityv1.VerificationPurpose_VERIFICATION_PURPOSE_PRIVACY_REQUEST, Reference: r.id})
	if err != nil {
		return nil, err
	}
	if _, err := s.DB.ExecContext(ctx, `UPDATE requests SET challenge_id = $1 WHERE id = $2`, ch.GetChallengeId(), r.id); err != nil {
		return nil, err
	}
	return r.pr, nil
}
