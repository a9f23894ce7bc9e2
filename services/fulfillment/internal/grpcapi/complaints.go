package grpcapi

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/ids"
	"lethe.dev/services/fulfillment/internal/complaint"
)

func parseComplaint(name string) (member, id string, err error) {
	rest, ok := strings.CutPrefix(name, "members/")
	m, c, ok2 := strings.Cut(rest, "/complaints/")
	if !ok || !ok2 || !ids.Valid(m) || !ids.Valid(c) {
		return "", "", errs.Invalid(errs.FieldViolation{Field: "name", Description: "must be members/{member}/complaints/{complaint}"})
	}
	return m, c, nil
}

// CreateComplaint implements FulfillmentService: file the complaint and start its
// workflow (deadlines, escalations, the member's emails). A retry with the same
// request_id returns the same complaint and starts nothing new.
func (s *Server) CreateComplaint(ctx context.Context, req *fulfillmentv1.CreateComplaintRequest) (*fulfillmentv1.Complaint, error) {
	member, ok := strings.CutPrefix(req.GetParent(), "members/")
	if !ok || !ids.Valid(member) {
		return nil, errs.Invalid(errs.FieldViolation{Field: "parent", Description: "must be members/{member}"})
	}
	in := req.GetComplaint()
	var v errs.Violations
	if _, known := fulfillmentv1.ComplaintCategory_name[int32(in.GetCategory())]; !known || in.GetCategory() == fulfillmentv1.ComplaintCategory_COMPLAINT_CATEGORY_UNSPECIFIED {
		v.Add("complaint.category", "is required: one of the complaint categories")
	}
	if n := utf8.RuneCountInString(in.GetDescription()); n == 0 || n > 4000 {
		v.Add("complaint.description", "must be 1 to 4000 characters")
	}
	if r := req.GetRequestId(); r == "" || len(r) > 128 {
		v.Add("request_id", "is required (at most 128 characters): one complaint per request id")
	}
	if len(in.GetRelatedRequests()) > 20 {
		v.Add("complaint.related_requests", "at most 20")
	}
	var related []string
	for _, name := range in.GetRelatedRequests() {
		m, id, err := parseName(name)
		if err != nil || m != member {
			v.Add("complaint.related_requests", "each must be one of the member's requests, members/{member}/privacyRequests/{request}")
			break
		}
		related = append(related, id)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	for i, id := range related {
		if _, err := s.load(ctx, `id = $1 AND member_id = $2`, id, member); err != nil {
			if errs.ReasonOf(err) == "REQUEST_NOT_FOUND" {
				return nil, errs.Invalid(errs.FieldViolation{Field: "complaint.related_requests[" + strconv.Itoa(i) + "]", Description: "is not a request of this member"})
			}
			return nil, err
		}
	}
	now := s.now()
	ackDue, resolveDue := complaint.Deadlines(now, s.ComplaintAckWindow, s.ComplaintResolveWindow)
	c, err := s.Complaints.Create(ctx, complaint.New{MemberID: member, RequestID: req.GetRequestId(), Category: in.GetCategory(), Description: in.GetDescription(),
		RelatedRequestIDs: related, AckDue: ackDue, ResolveDue: resolveDue})
	if err != nil {
		return nil, err
	}
	id := c.GetName()[strings.LastIndex(c.GetName(), "/")+1:]
	// Start (or find) the workflow with the stored deadlines, so a retry is the same run.
	_, err = s.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: complaint.WorkflowID(id), TaskQueue: complaint.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
	}, complaint.Complaint, complaint.Input{ComplaintID: id, MemberID: member, AckDue: c.GetAcknowledgeDueTime().AsTime(), ResolveDue: c.GetResolveDueTime().AsTime()})
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if err != nil && !errors.As(err, &already) {
		return nil, errs.Wrap(err, errs.Unavailable, "COMPLAINT_START_FAILED", "the complaint was filed but its tracking could not start; retry with the same request_id")
	}
	if s.Logger != nil {
		s.Logger.Info("complaint filed", "complaint", id, "category", in.GetCategory().String())
	}
	return c, nil
}

// GetComplaint implements FulfillmentService.
func (s *Server) GetComplaint(ctx context.Context, req *fulfillmentv1.GetComplaintRequest) (*fulfillmentv1.Complaint, error) {
	m, id, err := parseComplaint(req.GetName())
	if err != nil {
		return nil, err
	}
	return s.Complaints.Get(ctx, m, id)
}

// ListComplaints implements FulfillmentService.
func (s *Server) ListComplaints(ctx context.Context, req *fulfillmentv1.ListComplaintsRequest) (*fulfillmentv1.ListComplaintsResponse, error) {
	member, ok := strings.CutPrefix(req.GetParent(), "members/")
	if !ok || (member != "-" && !ids.Valid(member)) {
		return nil, errs.Invalid(errs.FieldViolation{Field: "parent", Description: "must be members/{member} or members/-"})
	}
	n := int(req.GetPageSize())
	if n == 0 {
		n = 50
	}
	if n < 0 || n > 500 {
		return nil, errs.Invalid(errs.FieldViolation{Field: "page_size", Description: "must be between 0 and 500"})
	}
	offset := 0
	if t := req.GetPageToken(); t != "" {
		var err error
		if offset, err = strconv.Atoi(t); err != nil || offset < 0 {
			return nil, errs.Invalid(errs.FieldViolation{Field: "page_token", Description: "is not a token this API issued"})
		}
	}
	cs, next, err := s.Complaints.List(ctx, member, n, offset)
	if err != nil {
		return nil, err
	}
	return &fulfillmentv1.ListComplaintsResponse{Complaints: cs, NextPageToken: next}, nil
}

// AcknowledgeComplaint implements FulfillmentService.
func (s *Server) AcknowledgeComplaint(ctx context.Context, req *fulfillmentv1.AcknowledgeComplaintRequest) (*fulfillmentv1.Complaint, error) {
	m, id, err := parseComplaint(req.GetName())
	if err != nil {
		return nil, err
	}
	c, err := s.Complaints.Acknowledge(ctx, m, id)
	if err != nil {
		return nil, err
	}
	if err := s.signalComplaint(ctx, id, complaint.AcknowledgedSignal); err != nil {
		return nil, err
	}
	return c, nil
}

// ResolveComplaint implements FulfillmentService.
func (s *Server) ResolveComplaint(ctx context.Context, req *fulfillmentv1.ResolveComplaintRequest) (*fulfillmentv1.Complaint, error) {
	m, id, err := parseComplaint(req.GetName())
	if err != nil {
		return nil, err
	}
	if n := utf8.RuneCountInString(req.GetResolution()); n == 0 || n > 4000 {
		return nil, errs.Invalid(errs.FieldViolation{Field: "resolution", Description: "must be 1 to 4000 characters"})
	}
	c, err := s.Complaints.Resolve(ctx, m, id, req.GetResolution())
	if err != nil {
		return nil, err
	}
	if err := s.signalComplaint(ctx, id, complaint.ResolvedSignal); err != nil {
		return nil, err
	}
	return c, nil
}

// signalComplaint tells the complaint's workflow what the operator did. The state is
// already recorded, and both operator calls are idempotent, so a signal that could not
// be delivered fails the call for the operator to retry; a workflow that already ended
// (a repeated resolve) needs none.
func (s *Server) signalComplaint(ctx context.Context, id, signal string) error {
	err := s.Temporal.SignalWorkflow(ctx, complaint.WorkflowID(id), "", signal, nil)
	var nf *serviceerror.NotFound
	if err != nil && !errors.As(err, &nf) {
		return errs.Wrap(err, errs.Unavailable, "COMPLAINT_SIGNAL_FAILED", "recorded, but the complaint's tracking was not told; retry the call")
	}
	return nil
}
