package grpcapi

import (
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	identityv1 "lethe.dev/gen/lethe/identity/v1"
	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/grpcserver"
	"lethe.dev/platform/ids"
	"lethe.dev/services/fulfillment/internal/drp"
	"lethe.dev/services/fulfillment/internal/request"
)

// DataRights implements DataRightsService: the Data Rights Protocol as a covered
// business. Requests are filed through the same intake as members' own (Server).
type DataRights struct {
	fulfillmentv1.UnimplementedDataRightsServiceServer
	API         *Server
	Store       *drp.Store
	Preferences preferencesv1.PreferencesServiceClient
	// BusinessID is this business's DRP business-id; APIBase is where the gateway serves
	// /drp, used in user_verification_url and results_url.
	BusinessID   string
	APIBase      string
	CallbackPoll time.Duration
}

// agentFiled marks an intake call made for a verified DRP request; only this package
// can set it, so the public API cannot claim an agent's verification.
type agentFiled struct{}

func filedByAgent(ctx context.Context) (verified, ok bool) {
	v, ok := ctx.Value(agentFiled{}).(bool)
	return v, ok
}

func (d *DataRights) now() time.Time { return d.API.now() }

func agentName(name string) (string, error) {
	id, ok := strings.CutPrefix(name, "authorizedAgents/")
	if !ok || !drp.ValidAgentID(id) {
		return "", errs.Invalid(errs.FieldViolation{Field: "name", Description: "must be authorizedAgents/{agent}"})
	}
	return id, nil
}

func agentProto(a *drp.Agent) *fulfillmentv1.AuthorizedAgent {
	return &fulfillmentv1.AuthorizedAgent{Name: "authorizedAgents/" + a.ID, DisplayName: a.Name, VerifyKey: a.VerifyKey, Contact: a.Contact, CreateTime: timestamppb.New(a.Created)}
}

// CreateAuthorizedAgent implements DataRightsService (operators).
func (d *DataRights) CreateAuthorizedAgent(ctx context.Context, req *fulfillmentv1.CreateAuthorizedAgentRequest) (*fulfillmentv1.AuthorizedAgent, error) {
	in := req.GetAuthorizedAgent()
	var v errs.Violations
	if !drp.ValidAgentID(req.GetAuthorizedAgentId()) {
		v.Add("authorized_agent_id", "must be 1 to 64 letters, digits, _ or -")
	}
	if n := len(in.GetDisplayName()); n == 0 || n > 200 {
		v.Add("authorized_agent.display_name", "is required, at most 200 characters")
	}
	if len(in.GetVerifyKey()) != ed25519.PublicKeySize {
		v.Add("authorized_agent.verify_key", "must be a 32-byte Ed25519 public key")
	}
	if n := len(in.GetContact()); n == 0 || n > 320 {
		v.Add("authorized_agent.contact", "is required, at most 320 characters")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	a := drp.Agent{ID: req.GetAuthorizedAgentId(), Name: in.GetDisplayName(), VerifyKey: in.GetVerifyKey(), Contact: in.GetContact(), Created: d.now()}
	if err := d.Store.CreateAgent(ctx, a); err != nil {
		return nil, err
	}
	return agentProto(&a), nil
}

// GetAuthorizedAgent implements DataRightsService (operators).
func (d *DataRights) GetAuthorizedAgent(ctx context.Context, req *fulfillmentv1.GetAuthorizedAgentRequest) (*fulfillmentv1.AuthorizedAgent, error) {
	id, err := agentName(req.GetName())
	if err != nil {
		return nil, err
	}
	a, err := d.Store.Agent(ctx, id)
	if err != nil {
		return nil, err
	}
	return agentProto(a), nil
}

// ListAuthorizedAgents implements DataRightsService (operators), ordered by id; the page
// token is the last id of the previous page.
func (d *DataRights) ListAuthorizedAgents(ctx context.Context, req *fulfillmentv1.ListAuthorizedAgentsRequest) (*fulfillmentv1.ListAuthorizedAgentsResponse, error) {
	n := int(req.GetPageSize())
	if n == 0 {
		n = 50
	}
	if n < 0 || n > 500 {
		return nil, errs.Invalid(errs.FieldViolation{Field: "page_size", Description: "must be between 0 and 500"})
	}
	if t := req.GetPageToken(); t != "" && !drp.ValidAgentID(t) {
		return nil, errs.Invalid(errs.FieldViolation{Field: "page_token", Description: "is not a token this API issued"})
	}
	agents, err := d.Store.Agents(ctx, req.GetPageToken(), n+1)
	if err != nil {
		return nil, err
	}
	out := &fulfillmentv1.ListAuthorizedAgentsResponse{}
	for i := range agents {
		if i == n {
			out.NextPageToken = agents[n-1].ID
			break
		}
		out.AuthorizedAgents = append(out.AuthorizedAgents, agentProto(&agents[i]))
	}
	return out, nil
}

// DeleteAuthorizedAgent implements DataRightsService (operators).
func (d *DataRights) DeleteAuthorizedAgent(ctx context.Context, req *fulfillmentv1.DeleteAuthorizedAgentRequest) (*emptypb.Empty, error) {
	id, err := agentName(req.GetName())
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, d.Store.DeleteAgent(ctx, id)
}

var errForbidden = errs.New(errs.PermissionDenied, "DRP_FORBIDDEN", "forbidden")

// IssueAgentToken implements DataRightsService: pair-wise key setup. Every failure is the
// same PERMISSION_DENIED (the gateway answers 403 with an empty body).
func (d *DataRights) IssueAgentToken(ctx context.Context, req *fulfillmentv1.IssueAgentTokenRequest) (*fulfillmentv1.AgentToken, error) {
	if !drp.ValidAgentID(req.GetAgentId()) {
		return nil, errForbidden
	}
	a, err := d.Store.Agent(ctx, req.GetAgentId())
	if errs.CodeOf(err) == errs.NotFound {
		return nil, errForbidden
	} else if err != nil {
		return nil, err
	}
	msg, f := drp.Open(req.GetSignedBody(), a.VerifyKey)
	if f != nil {
		return nil, f.Error()
	}
	now := d.now()
	r, exp, f := drp.Check(msg, a.ID, d.BusinessID, now)
	if f != nil {
		return nil, f.Error()
	}
	if r.Version != drp.Version {
		return nil, drp.Failure{Step: "version", Message: "drp.version must be " + drp.Version, Fatal: true}.Error()
	}
	if ok, err := d.Store.FirstUse(ctx, "agent", req.GetSignedBody(), exp, now); err != nil {
		return nil, err
	} else if !ok {
		return nil, drp.Failure{Step: "replay", Message: "this signed body was already accepted", Fatal: true}.Error()
	}
	tok, err := d.Store.IssueToken(ctx, a.ID, now)
	if err != nil {
		return nil, err
	}
	return &fulfillmentv1.AgentToken{AgentId: a.ID, Token: tok}, nil
}

// CheckAgentToken implements DataRightsService.
func (d *DataRights) CheckAgentToken(ctx context.Context, req *fulfillmentv1.CheckAgentTokenRequest) (*fulfillmentv1.CheckAgentTokenResponse, error) {
	agent, err := d.Store.TokenAgent(ctx, req.GetToken())
	if err != nil {
		return nil, err
	}
	if agent == "" || agent != req.GetAgentId() {
		return nil, errs.New(errs.PermissionDenied, "DRP_TOKEN", "the bearer token is not this agent's")
	}
	return &fulfillmentv1.CheckAgentTokenResponse{}, nil
}

// tokenAgent resolves the bearer token to its (still registered) agent.
func (d *DataRights) tokenAgent(ctx context.Context, token string) (*drp.Agent, error) {
	id, err := d.Store.TokenAgent(ctx, token)
	if err != nil {
		return nil, err
	}
	if id == "" {
		return nil, errs.New(errs.PermissionDenied, "DRP_TOKEN", "a valid bearer token from POST /v1/agent/{agent-id} is required")
	}
	return d.Store.Agent(ctx, id)
}

// SubmitDataRightsRequest implements DataRightsService: the validation chain in the
// protocol's order, replay protection, then the request is matched and filed.
func (d *DataRights) SubmitDataRightsRequest(ctx context.Context, req *fulfillmentv1.SubmitDataRightsRequestRequest) (*fulfillmentv1.DataRightsStatus, error) {
	a, err := d.tokenAgent(ctx, req.GetToken())
	if err != nil {
		return nil, err
	}
	msg, f := drp.Open(req.GetSignedBody(), a.VerifyKey)
	if f != nil {
		return nil, f.Error()
	}
	now := d.now()
	r, exp, f := drp.Check(msg, a.ID, d.BusinessID, now)
	if f != nil {
		return nil, f.Error()
	}
	var v errs.Violations
	if r.Version != drp.Version {
		v.Add("drp.version", "must be "+drp.Version)
	}
	if !drp.Exercises[r.Exercise] {
		v.Add("exercise", "must be one of sale:opt-out, sale:opt-in, deletion, access")
	}
	if r.Regime != "" && r.Regime != "ccpa" {
		v.Add("regime", "must be ccpa or absent (voluntary)")
	}
	if r.StatusCallback != "" && !drp.ValidCallback(r.StatusCallback) {
		v.Add("status_callback", "must be an https URL")
	}
	if len(r.AgentRequestID) > 200 {
		v.Add("agent-request-id", "at most 200 characters")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if ok, err := d.Store.FirstUse(ctx, "request", req.GetSignedBody(), exp, now); err != nil {
		return nil, err
	} else if !ok {
		return nil, drp.Failure{Step: "replay", Message: "this signed request was already accepted", Fatal: true}.Error()
	}
	rec := &drp.Record{ID: ids.New(), AgentID: a.ID, AgentRequestID: r.AgentRequestID, Exercise: r.Exercise, Regime: r.Regime, Callback: r.StatusCallback,
		Status: drp.StatusOpen, Received: now}
	if err := d.Store.CreateRecord(ctx, rec); err != nil {
		return nil, err
	}
	if err := d.file(ctx, rec, r); err != nil {
		return nil, err
	}
	if err := d.Store.UpdateOutcome(ctx, rec); err != nil {
		return nil, err
	}
	st, err := d.status(ctx, rec.ID)
	if err != nil {
		return nil, err
	}
	if _, err := d.Store.Log(ctx, rec.ID, st.Status, st.Reason, now); err != nil {
		return nil, err
	}
	if rec.Callback != "" {
		_, err := d.API.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID: drp.CallbacksWorkflowID(rec.ID), TaskQueue: request.TaskQueue,
			WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		}, drp.StatusCallbacks, drp.CallbacksInput{RequestID: rec.ID, PollInterval: d.CallbackPoll})
		var already *serviceerror.WorkflowExecutionAlreadyStarted
		if err != nil && !errors.As(err, &already) {
			d.API.logger().Warn("starting DRP status callbacks failed", "drp_request", rec.ID, "error", err)
		}
	}
	return st, nil
}

// file matches the member by the request's claims and acts: sale choices at once,
// deletion and access as privacy requests with origin AGENT.
func (d *DataRights) file(ctx context.Context, rec *drp.Record, r *drp.Request) error {
	deny := func(reason, details string) error {
		rec.Status, rec.Reason, rec.Details = drp.StatusDenied, reason, details
		return nil
	}
	if r.Email == "" {
		return deny(drp.ReasonNoMatch, "no account could be matched: the request carries no email claim")
	}
	// The email's blind index finds the account; nothing about other accounts is revealed.
	m, err := d.API.Identity.LookupMember(ctx, &identityv1.LookupMemberRequest{Email: r.Email})
	if grpcserver.ReasonOf(err) == "MEMBER_NOT_FOUND" || errs.CodeOf(err) == errs.NotFound || statusNotFound(err) {
		return deny(drp.ReasonNoMatch, "no account matches the identity claims")
	}
	if err != nil {
		return err
	}
	member := strings.TrimPrefix(m.GetName(), "members/")
	rec.MemberID = member
	switch r.Exercise {
	case "sale:opt-out", "sale:opt-in":
		optOut := r.Exercise == "sale:opt-out"
		if !optOut && !r.EmailVerified {
			// Opting back in loosens a protection: only with claims the agent verified.
			return deny(drp.ReasonInsufVerification, "opting in needs a verified email claim")
		}
		ads := &preferencesv1.AdPreferences{Name: "members/" + member + "/adPreferences", SaleSharingOptOut: optOut}
		paths := []string{"sale_sharing_opt_out"}
		if optOut {
			paths = append(paths, "personalized_ads") // opting out of sale also ends ad personalization
		}
		_, err := d.Preferences.UpdateAdPreferences(ctx, &preferencesv1.UpdateAdPreferencesRequest{AdPreferences: ads, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths},
			Source: preferencesv1.ConsentSource_CONSENT_SOURCE_AUTHORIZED_AGENT, PolicyVersion: "drp:" + rec.AgentID})
		if grpcserver.ReasonOf(err) == "GPC_ACTIVE" {
			return deny(drp.ReasonOther, "a Global Privacy Control signal is on record; only the member can opt back in")
		}
		if err != nil {
			return err
		}
		rec.Status, rec.Details = drp.StatusFulfilled, "the choice is recorded"
		return nil
	}
	kind := fulfillmentv1.RequestKind_REQUEST_KIND_ERASURE
	if r.Exercise == "access" {
		kind = fulfillmentv1.RequestKind_REQUEST_KIND_ACCESS
	}
	jur := fulfillmentv1.Jurisdiction_JURISDICTION_POLICY
	if r.Regime == "ccpa" {
		jur = fulfillmentv1.Jurisdiction_JURISDICTION_CCPA
	}
	pr, err := d.API.CreatePrivacyRequest(context.WithValue(ctx, agentFiled{}, r.EmailVerified), &fulfillmentv1.CreatePrivacyRequestRequest{
		Parent: "members/" + member, RequestId: "drp-" + rec.ID,
		PrivacyRequest: &fulfillmentv1.PrivacyRequest{Kind: kind, Jurisdiction: jur, Origin: fulfillmentv1.RequestOrigin_REQUEST_ORIGIN_AGENT},
	})
	if grpcserver.ReasonOf(err) == "REQUEST_IN_PROGRESS" {
		return deny(drp.ReasonTooManyRequests, "a request of this kind is already being processed for this account")
	}
	if err != nil {
		return err
	}
	_, id, _ := parseName(pr.GetName())
	rec.PrivacyRequestID, rec.Status = id, ""
	rec.ExpectedBy = pr.GetDueTime().AsTime()
	return nil
}

func statusNotFound(err error) bool {
	return err != nil && status.Code(err) == codes.NotFound
}

// status renders a DRP request's Status object from its record and, when it has one, its
// privacy request.
func (d *DataRights) status(ctx context.Context, id string) (*fulfillmentv1.DataRightsStatus, error) {
	rec, err := d.Store.Record(ctx, id)
	if err != nil {
		return nil, err
	}
	st := &fulfillmentv1.DataRightsStatus{RequestId: rec.ID, AgentRequestId: rec.AgentRequestID, ReceivedAt: timestamppb.New(rec.Received),
		Status: rec.Status, Reason: rec.Reason, ProcessingDetails: rec.Details}
	if !rec.ExpectedBy.IsZero() {
		st.ExpectedBy = timestamppb.New(rec.ExpectedBy)
	}
	if rec.PrivacyRequestID == "" {
		return st, nil
	}
	r, err := d.API.load(ctx, `id = $1`, rec.PrivacyRequestID)
	if err != nil {
		return nil, err
	}
	st.ExpectedBy = timestamppb.New(r.due)
	if r.pr.GetExtended() {
		st.ProcessingDetails = "the deadline was extended: " + r.pr.GetExtensionReason()
	}
	switch state := r.pr.GetState(); {
	case rec.Revoked && state != fulfillmentv1.RequestState_REQUEST_STATE_COMPLETED:
		st.Status, st.Reason, st.ProcessingDetails = drp.StatusRevoked, "", "revoked by the agent"
	case state == fulfillmentv1.RequestState_REQUEST_STATE_AWAITING_VERIFICATION,
		// Received, and the workflow is about to email the code.
		state == fulfillmentv1.RequestState_REQUEST_STATE_IN_PROGRESS && !r.verified && r.challenge == "":
		st.Status, st.Reason = drp.StatusInProgress, drp.ReasonNeedUserVerification
		st.ProcessingDetails = "the member must confirm the request with the code emailed to them"
		st.UserVerificationUrl = d.APIBase + "/verify/" + rec.ID
		st.ExpiresAt = timestamppb.New(r.created.Add(d.API.VerificationWindow))
	case state == fulfillmentv1.RequestState_REQUEST_STATE_COOLING_OFF:
		st.Status, st.Reason = drp.StatusInProgress, ""
		if st.ProcessingDetails == "" {
			st.ProcessingDetails = "the erasure waits out its cooling-off period"
		}
	case state == fulfillmentv1.RequestState_REQUEST_STATE_COMPLETED:
		st.Status, st.Reason, st.ProcessingDetails = drp.StatusFulfilled, "", ""
		if r.pr.GetKind() == fulfillmentv1.RequestKind_REQUEST_KIND_ACCESS {
			if dl, err := d.API.GetExportDownload(ctx, &fulfillmentv1.GetExportDownloadRequest{Name: r.pr.GetName()}); err == nil {
				st.ResultsUrl = d.APIBase + "/v1/results/" + strings.TrimPrefix(dl.GetDownloadUri(), "/v1/downloads/")
				st.ExpiresAt = dl.GetExpireTime()
			} else {
				st.ProcessingDetails = "the results link has expired"
			}
		}
	case state == fulfillmentv1.RequestState_REQUEST_STATE_CANCELLED:
		st.Status, st.Reason = drp.StatusRevoked, ""
	case state == fulfillmentv1.RequestState_REQUEST_STATE_EXPIRED:
		st.Status, st.Reason = drp.StatusExpired, ""
		st.ProcessingDetails = "the member did not confirm the request before it expired"
		st.ExpiresAt = timestamppb.New(r.created.Add(d.API.VerificationWindow))
	case state == fulfillmentv1.RequestState_REQUEST_STATE_DENIED, state == fulfillmentv1.RequestState_REQUEST_STATE_FAILED:
		st.Status, st.Reason, st.ProcessingDetails = drp.StatusDenied, drp.ReasonOther, "the request could not be completed"
	default: // in progress or on hold
		st.Status, st.Reason = drp.StatusInProgress, ""
	}
	return st, nil
}

// agentRecord loads a DRP request for the agent of the token: another agent's request
// is PERMISSION_DENIED, like an unknown one.
func (d *DataRights) agentRecord(ctx context.Context, token, id string) (*drp.Agent, *drp.Record, error) {
	a, err := d.tokenAgent(ctx, token)
	if err != nil {
		return nil, nil, err
	}
	notYours := errs.New(errs.PermissionDenied, "DRP_NOT_YOUR_REQUEST", "no request of this agent has this id")
	if !ids.Valid(id) {
		return nil, nil, notYours
	}
	rec, err := d.Store.Record(ctx, id)
	if errs.CodeOf(err) == errs.NotFound || err == nil && rec.AgentID != a.ID {
		return nil, nil, notYours
	}
	return a, rec, err
}

// GetDataRightsStatus implements DataRightsService.
func (d *DataRights) GetDataRightsStatus(ctx context.Context, req *fulfillmentv1.GetDataRightsStatusRequest) (*fulfillmentv1.DataRightsStatus, error) {
	_, rec, err := d.agentRecord(ctx, req.GetToken(), req.GetRequestId())
	if err != nil {
		return nil, err
	}
	return d.status(ctx, rec.ID)
}

// RevokeDataRightsRequest implements DataRightsService: a signed body from the request's
// agent revokes a request not yet past verification or cooling-off.
func (d *DataRights) RevokeDataRightsRequest(ctx context.Context, req *fulfillmentv1.RevokeDataRightsRequestRequest) (*fulfillmentv1.DataRightsStatus, error) {
	a, rec, err := d.agentRecord(ctx, req.GetToken(), req.GetRequestId())
	if err != nil {
		return nil, err
	}
	if _, f := drp.Open(req.GetSignedBody(), a.VerifyKey); f != nil {
		return nil, f.Error()
	}
	cur, err := d.status(ctx, rec.ID)
	if err != nil {
		return nil, err
	}
	if drp.IsFinal(cur.Status) {
		return nil, errs.New(errs.FailedPrecondition, "DRP_FINAL", "the request is "+cur.Status+" and can no longer be revoked").With("fatal", "true")
	}
	name := "members/" + rec.MemberID + "/privacyRequests/" + rec.PrivacyRequestID
	if _, err := d.API.CancelPrivacyRequest(ctx, &fulfillmentv1.CancelPrivacyRequestRequest{Name: name}); err != nil {
		if errs.ReasonOf(err) != "CANNOT_CANCEL" {
			return nil, err
		}
		if cur.Reason != drp.ReasonNeedUserVerification {
			return nil, errs.New(errs.FailedPrecondition, "DRP_TOO_LATE", "the request is being carried out and can no longer be revoked").With("fatal", "true")
		}
		// Received and about to ask the member: the workflow takes a cancel until it
		// starts the work, so tell it directly.
		r, err := d.API.loadByName(ctx, name)
		if err != nil {
			return nil, err
		}
		if err := d.API.signal(ctx, r, request.CancelSignal); err != nil {
			return nil, err
		}
	}
	// Replay protection: one revocation body per request, accepted once.
	if ok, err := d.Store.FirstUse(ctx, "revoke/"+rec.ID, req.GetSignedBody(), d.now().Add(90*24*time.Hour), d.now()); err != nil {
		return nil, err
	} else if !ok {
		return nil, drp.Failure{Step: "replay", Message: "this signed body was already accepted", Fatal: true}.Error()
	}
	if err := d.Store.MarkRevoked(ctx, rec.ID); err != nil {
		return nil, err
	}
	return d.changed(ctx, rec.ID)
}

// changed logs a request's current status and wakes its callbacks; it returns the status.
func (d *DataRights) changed(ctx context.Context, id string) (*fulfillmentv1.DataRightsStatus, error) {
	st, err := d.status(ctx, id)
	if err != nil {
		return nil, err
	}
	logged, err := d.Store.Log(ctx, id, st.Status, st.Reason, d.now())
	if err != nil {
		return nil, err
	}
	if logged {
		// Best effort: the callbacks workflow also looks at the log on its own.
		_ = d.API.Temporal.SignalWorkflow(ctx, drp.CallbacksWorkflowID(id), "", drp.LoggedSignal, nil)
	}
	return st, nil
}

// PrivacyRequestChanged logs the new status of the DRP requests filed as a privacy
// request; the request workflow's SetState activity calls it after every state change.
func (d *DataRights) PrivacyRequestChanged(ctx context.Context, privacyRequestID string) error {
	recs, err := d.Store.RecordsFor(ctx, privacyRequestID)
	if err != nil {
		return err
	}
	for _, id := range recs {
		if _, err := d.changed(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// VerifyDataRightsRequest implements DataRightsService: the member confirms with the
// emailed code, as for their own requests.
func (d *DataRights) VerifyDataRightsRequest(ctx context.Context, req *fulfillmentv1.VerifyDataRightsRequestRequest) (*fulfillmentv1.DataRightsStatus, error) {
	if !ids.Valid(req.GetRequestId()) {
		return nil, errs.NotFoundf("DRP_REQUEST_NOT_FOUND", "data rights request")
	}
	rec, err := d.Store.Record(ctx, req.GetRequestId())
	if err != nil {
		return nil, err
	}
	if rec.PrivacyRequestID == "" {
		return nil, errs.New(errs.FailedPrecondition, "NOT_AWAITING_VERIFICATION", "the request is not waiting for a code")
	}
	if _, err := d.API.VerifyPrivacyRequest(ctx, &fulfillmentv1.VerifyPrivacyRequestRequest{
		Name: "members/" + rec.MemberID + "/privacyRequests/" + rec.PrivacyRequestID, Code: req.GetCode()}); err != nil {
		return nil, err
	}
	return d.status(ctx, rec.ID)
}

// CallbackActivities returns the activities of the status callbacks workflow.
func (d *DataRights) CallbackActivities() *drp.CallbackActivities {
	return &drp.CallbackActivities{Store: d.Store, Status: d.status}
}
