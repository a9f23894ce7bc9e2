package grpcapi

import (
	"context"
	"strings"
	"time"

	"go.temporal.io/api/serviceerror"
	"google.golang.org/protobuf/types/known/timestamppb"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/ids"
	"lethe.dev/services/fulfillment/internal/holds"
	"lethe.dev/services/fulfillment/internal/request"
)

// MaxMemberHold is the longest a member's legal hold may be set for at once.
const MaxMemberHold = 10 * 366 * 24 * time.Hour

func holdMember(name, field string) (string, error) {
	rest, ok := strings.CutPrefix(name, "members/")
	id, ok2 := strings.CutSuffix(rest, "/legalHold")
	if !ok || !ok2 || !ids.Valid(id) {
		return "", errs.Invalid(errs.FieldViolation{Field: field, Description: "must be members/{member}/legalHold"})
	}
	return id, nil
}

func (s *Server) holdProto(h holds.Hold, member string) *fulfillmentv1.MemberLegalHold {
	out := &fulfillmentv1.MemberLegalHold{Name: "members/" + member + "/legalHold", Active: h.Active(s.now()), Reason: h.Reason, SetBy: h.SetBy}
	if h.MemberID != "" {
		out.ExpireTime, out.SetTime = timestamppb.New(h.Expire), timestamppb.New(h.Set)
	}
	if !h.Released.IsZero() {
		out.ReleaseTime = timestamppb.New(h.Released)
	}
	return out
}

// tellErasure wakes the member's open erasure, if any, to look at its hold again.
func (s *Server) tellErasure(ctx context.Context, member string) error {
	if s.Temporal == nil {
		return nil
	}
	err := s.Temporal.SignalWorkflow(ctx, request.WorkflowID(request.KindErasure, member), "", request.MemberHoldSignal, nil)
	if _, ok := err.(*serviceerror.NotFound); ok {
		return nil // no erasure running
	}
	return err
}

// SetMemberLegalHold implements FulfillmentService (operators; audited by the interceptor).
func (s *Server) SetMemberLegalHold(ctx context.Context, req *fulfillmentv1.SetMemberLegalHoldRequest) (*fulfillmentv1.MemberLegalHold, error) {
	member, err := holdMember(req.GetName(), "name")
	if err != nil {
		return nil, err
	}
	now := s.now()
	var v errs.Violations
	if n := len(req.GetReason()); n == 0 || n > 500 {
		v.Add("reason", "is required, at most 500 characters")
	}
	exp := req.GetExpireTime().AsTime()
	if req.GetExpireTime() == nil || !exp.After(now) || exp.Sub(now) > MaxMemberHold {
		v.Add("expire_time", "is required, in the future, at most 10 years away")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	h := holds.Hold{MemberID: member, Reason: req.GetReason(), Expire: exp.UTC(), SetBy: actor(ctx), Set: now}
	if err := holds.Set(ctx, s.DB, h); err != nil {
		return nil, err
	}
	if err := s.tellErasure(ctx, member); err != nil {
		return nil, err
	}
	return s.holdProto(h, member), nil
}

// ReleaseMemberLegalHold implements FulfillmentService (operators; audited).
func (s *Server) ReleaseMemberLegalHold(ctx context.Context, req *fulfillmentv1.ReleaseMemberLegalHoldRequest) (*fulfillmentv1.MemberLegalHold, error) {
	member, err := holdMember(req.GetName(), "name")
	if err != nil {
		return nil, err
	}
	if len(req.GetReason()) > 500 {
		return nil, errs.Invalid(errs.FieldViolation{Field: "reason", Description: "at most 500 characters"})
	}
	h, err := holds.Get(ctx, s.DB, member)
	if err != nil {
		return nil, err
	}
	if h.MemberID == "" {
		return nil, errs.NotFoundf("LEGAL_HOLD_NOT_FOUND", "legal hold")
	}
	if err := holds.Release(ctx, s.DB, member, s.now()); err != nil {
		return nil, err
	}
	if err := s.tellErasure(ctx, member); err != nil {
		return nil, err
	}
	if h, err = holds.Get(ctx, s.DB, member); err != nil {
		return nil, err
	}
	return s.holdProto(h, member), nil
}

// GetMemberLegalHold implements FulfillmentService (operators and services).
func (s *Server) GetMemberLegalHold(ctx context.Context, req *fulfillmentv1.GetMemberLegalHoldRequest) (*fulfillmentv1.MemberLegalHold, error) {
	member, err := holdMember(req.GetName(), "name")
	if err != nil {
		return nil, err
	}
	h, err := holds.Get(ctx, s.DB, member)
	if err != nil {
		return nil, err
	}
	return s.holdProto(h, member), nil
}
