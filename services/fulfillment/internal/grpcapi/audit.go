package grpcapi

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	"lethe.dev/platform/authz"
	"lethe.dev/services/fulfillment/internal/audit"
)

func auditProto(e *audit.Event) *fulfillmentv1.AuditEvent {
	return &fulfillmentv1.AuditEvent{Name: "auditLog/" + e.ID, Actor: e.Actor, Action: e.Action, Target: e.Target, Reason: e.Reason, Time: timestamppb.New(e.Time)}
}

// RecordAuditEvent implements FulfillmentService (internal): the other backends'
// authorization interceptors append operator actions here.
func (s *Server) RecordAuditEvent(ctx context.Context, req *fulfillmentv1.RecordAuditEventRequest) (*fulfillmentv1.AuditEvent, error) {
	in := req.GetAuditEvent()
	e, err := s.Audit.Append(ctx, authz.Event{Actor: in.GetActor(), Action: in.GetAction(), Target: in.GetTarget(), Reason: in.GetReason(), RequestID: req.GetRequestId()})
	if err != nil {
		return nil, err
	}
	return auditProto(e), nil
}

// ListAuditEvents implements FulfillmentService (operators).
func (s *Server) ListAuditEvents(ctx context.Context, req *fulfillmentv1.ListAuditEventsRequest) (*fulfillmentv1.ListAuditEventsResponse, error) {
	events, next, err := s.Audit.List(ctx, int(req.GetPageSize()), req.GetPageToken(), req.GetTarget())
	if err != nil {
		return nil, err
	}
	out := &fulfillmentv1.ListAuditEventsResponse{NextPageToken: next}
	for _, e := range events {
		out.AuditEvents = append(out.AuditEvents, auditProto(e))
	}
	return out, nil
}

// actor names the operator making a call ("operators/{id}"), or "" for internal callers.
func actor(ctx context.Context) string {
	if p := authz.FromContext(ctx); p.Role == authz.RoleOperator {
		return "operators/" + p.ID
	}
	return ""
}
