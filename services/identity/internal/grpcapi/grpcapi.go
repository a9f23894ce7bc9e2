// Package grpcapi serves identity's gRPC APIs: lethe.identity.v1.IdentityService and
// the lethe.subject.v1 data-subject contract. It translates between protos and the
// domain and nothing else.
package grpcapi

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "lethe.dev/gen/lethe/identity/v1"
	subjectv1 "lethe.dev/gen/lethe/subject/v1"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/ids"
	"lethe.dev/services/identity/internal/identity"
)

// Server implements both services over the domain service.
type Server struct {
	identityv1.UnimplementedIdentityServiceServer
	subjectv1.UnimplementedDataSubjectServiceServer
	Svc *identity.Service
}

// memberID parses "members/{member}" (field is the request field for violations).
func memberID(name, field string) (string, error) {
	id, ok := strings.CutPrefix(name, "members/")
	if !ok || !ids.Valid(id) {
		return "", errs.Invalid(errs.FieldViolation{Field: field, Description: "must be members/{member}"})
	}
	return id, nil
}

func toProto(m *identity.Member) *identityv1.Member {
	out := &identityv1.Member{
		Name: "members/" + m.ID, FullName: m.PII.FullName, Email: m.PII.Email, PhoneNumber: m.PII.Phone,
		BirthDate: m.PII.BirthDate, PaymentMethodRef: m.PII.PaymentRef, State: identityv1.MemberState(m.State),
		CreateTime: timestamppb.New(m.Created), UpdateTime: timestamppb.New(m.Updated), Etag: strconv.FormatInt(m.Version, 10),
	}
	if a := m.PII.Address; a != nil {
		out.PostalAddress = &identityv1.PostalAddress{RegionCode: a.RegionCode, PostalCode: a.PostalCode, Locality: a.Locality, AddressLines: a.AddressLines}
	}
	return out
}

func fromProto(m *identityv1.Member) identity.PII {
	p := identity.PII{FullName: m.GetFullName(), Email: m.GetEmail(), Phone: m.GetPhoneNumber(), BirthDate: m.GetBirthDate(), PaymentRef: m.GetPaymentMethodRef()}
	if a := m.GetPostalAddress(); a != nil {
		p.Address = &identity.Address{RegionCode: a.GetRegionCode(), PostalCode: a.GetPostalCode(), Locality: a.GetLocality(), AddressLines: a.GetAddressLines()}
	}
	return p
}

// clientIP is the caller's address as the gateway saw it (x-lethe-client-ip), "" for
// internal callers.
func clientIP(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-lethe-client-ip"); len(v) == 1 && len(v[0]) <= 64 {
		return v[0]
	}
	return ""
}

// CreateMember implements IdentityService.
func (s *Server) CreateMember(ctx context.Context, req *identityv1.CreateMemberRequest) (*identityv1.Member, error) {
	if req.GetMember() == nil {
		return nil, errs.Invalid(errs.FieldViolation{Field: "member", Description: "is required"})
	}
	m, err := s.Svc.Create(ctx, fromProto(req.GetMember()), req.GetPassword(), req.GetRequestId())
	if err != nil {
		return nil, err
	}
	return toProto(m), nil
}

// GetMember implements IdentityService.
func (s *Server) GetMember(ctx context.Context, req *identityv1.GetMemberRequest) (*identityv1.Member, error) {
	id, err := memberID(req.GetName(), "name")
	if err != nil {
		return nil, err
	}
	m, err := s.Svc.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return toProto(m), nil
}

// UpdateMember implements IdentityService.
func (s *Server) UpdateMember(ctx context.Context, req *identityv1.UpdateMemberRequest) (*identityv1.Member, error) {
	id, err := memberID(req.GetMember().GetName(), "member.name")
	if err != nil {
		return nil, err
	}
	m, err := s.Svc.Update(ctx, id, fromProto(req.GetMember()), req.GetUpdateMask().GetPaths(), req.GetMember().GetEtag())
	if err != nil {
		return nil, err
	}
	return toProto(m), nil
}

// ListMembers implements IdentityService.
func (s *Server) ListMembers(ctx context.Context, req *identityv1.ListMembersRequest) (*identityv1.ListMembersResponse, error) {
	if req.GetShowErased() {
		return nil, errs.Invalid(errs.FieldViolation{Field: "show_erased", Description: "erased members are not listed; look a request up in fulfillment instead"})
	}
	ms, next, err := s.Svc.List(ctx, int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &identityv1.ListMembersResponse{NextPageToken: next}
	for _, m := range ms {
		out.Members = append(out.Members, toProto(m))
	}
	return out, nil
}

// LookupMember implements IdentityService.
func (s *Server) LookupMember(ctx context.Context, req *identityv1.LookupMemberRequest) (*identityv1.Member, error) {
	m, err := s.Svc.Lookup(ctx, req.GetEmail())
	if err != nil {
		return nil, err
	}
	return toProto(m), nil
}

// DisableMember implements IdentityService.
func (s *Server) DisableMember(ctx context.Context, req *identityv1.DisableMemberRequest) (*identityv1.Member, error) {
	id, err := memberID(req.GetName(), "name")
	if err != nil {
		return nil, err
	}
	m, err := s.Svc.Disable(ctx, id)
	if err != nil {
		return nil, err
	}
	return toProto(m), nil
}

// ReportChild implements IdentityService.
func (s *Server) ReportChild(ctx context.Context, req *identityv1.ReportChildRequest) (*identityv1.Member, error) {
	id, err := memberID(req.GetName(), "name")
	if err != nil {
		return nil, err
	}
	if req.GetReporter() == identityv1.ChildReporter_CHILD_REPORTER_UNSPECIFIED {
		return nil, errs.Invalid(errs.FieldViolation{Field: "reporter", Description: "is required"})
	}
	m, err := s.Svc.ReportChild(ctx, id)
	if err != nil {
		return nil, err
	}
	return toProto(m), nil
}

func sessionProto(x identity.Session) *identityv1.Session {
	return &identityv1.Session{
		Name: "members/" + x.MemberID + "/sessions/" + x.ID, DeviceName: x.Device, RememberMe: x.RememberMe,
		CreateTime: timestamppb.New(x.Created), LastUseTime: timestamppb.New(x.LastUsed), ExpireTime: timestamppb.New(x.Expires),
	}
}

func tokensProto(t *identity.Tokens) *identityv1.SignInResponse {
	return &identityv1.SignInResponse{AccessToken: t.AccessToken, AccessTokenExpireTime: timestamppb.New(t.AccessExpiry), RefreshToken: t.RefreshToken, Session: sessionProto(t.Session)}
}

// SignIn implements IdentityService.
func (s *Server) SignIn(ctx context.Context, req *identityv1.SignInRequest) (*identityv1.SignInResponse, error) {
	t, err := s.Svc.SignIn(ctx, req.GetEmail(), req.GetPassword(), req.GetDeviceName(), req.GetRememberMe(), clientIP(ctx), req.GetReactivate())
	if err != nil {
		return nil, err
	}
	return tokensProto(t), nil
}

// RefreshSession implements IdentityService.
func (s *Server) RefreshSession(ctx context.Context, req *identityv1.RefreshSessionRequest) (*identityv1.SignInResponse, error) {
	t, err := s.Svc.Refresh(ctx, req.GetRefreshToken())
	if err != nil {
		return nil, err
	}
	return tokensProto(t), nil
}

// SignOut implements IdentityService.
func (s *Server) SignOut(ctx context.Context, req *identityv1.SignOutRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, s.Svc.SignOut(ctx, req.GetRefreshToken())
}

// ListSessions implements IdentityService. Members have few devices: one page.
func (s *Server) ListSessions(ctx context.Context, req *identityv1.ListSessionsRequest) (*identityv1.ListSessionsResponse, error) {
	id, err := memberID(req.GetParent(), "parent")
	if err != nil {
		return nil, err
	}
	sessions, err := s.Svc.Sessions(ctx, id)
	if err != nil {
		return nil, err
	}
	out := &identityv1.ListSessionsResponse{}
	for _, x := range sessions {
		out.Sessions = append(out.Sessions, sessionProto(x))
	}
	return out, nil
}

// RevokeSession implements IdentityService.
func (s *Server) RevokeSession(ctx context.Context, req *identityv1.RevokeSessionRequest) (*emptypb.Empty, error) {
	rest, ok := strings.CutPrefix(req.GetName(), "members/")
	mid, sid, ok2 := strings.Cut(rest, "/sessions/")
	if !ok || !ok2 || !ids.Valid(mid) || !ids.Valid(sid) {
		return nil, errs.Invalid(errs.FieldViolation{Field: "name", Description: "must be members/{member}/sessions/{session}"})
	}
	return &emptypb.Empty{}, s.Svc.RevokeSession(ctx, mid, sid)
}

// RevokeAllSessions implements IdentityService.
func (s *Server) RevokeAllSessions(ctx context.Context, req *identityv1.RevokeAllSessionsRequest) (*identityv1.RevokeAllSessionsResponse, error) {
	id, err := memberID(req.GetParent(), "parent")
	if err != nil {
		return nil, err
	}
	n, err := s.Svc.RevokeAll(ctx, id)
	if err != nil {
		return nil, err
	}
	return &identityv1.RevokeAllSessionsResponse{RevokedCount: int32(n)}, nil
}

// GetJwks implements IdentityService.
func (s *Server) GetJwks(context.Context, *identityv1.GetJwksRequest) (*identityv1.Jwks, error) {
	raw, err := s.Svc.Keys.JWKS()
	if err != nil {
		return nil, err
	}
	var set struct {
		Keys []struct {
			Kty, Crv, X, Y, Kid, Alg, Use string
		} `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, err
	}
	out := &identityv1.Jwks{}
	for _, k := range set.Keys {
		out.Keys = append(out.Keys, &identityv1.Jwk{Kty: k.Kty, Crv: k.Crv, X: k.X, Y: k.Y, Kid: k.Kid, Alg: k.Alg, Use: k.Use})
	}
	return out, nil
}

// SendVerificationCode implements IdentityService.
func (s *Server) SendVerificationCode(ctx context.Context, req *identityv1.SendVerificationCodeRequest) (*identityv1.VerificationChallenge, error) {
	id, err := memberID(req.GetName(), "name")
	if err != nil {
		return nil, err
	}
	ch, exp, err := s.Svc.SendCode(ctx, id, int(req.GetPurpose()), req.GetReference())
	if err != nil {
		return nil, err
	}
	return &identityv1.VerificationChallenge{ChallengeId: ch, ExpireTime: timestamppb.New(exp)}, nil
}

// ChangeEmail implements IdentityService.
func (s *Server) ChangeEmail(ctx context.Context, req *identityv1.ChangeEmailRequest) (*identityv1.VerificationChallenge, error) {
	id, err := memberID(req.GetName(), "name")
	if err != nil {
		return nil, err
	}
	ch, exp, err := s.Svc.ChangeEmail(ctx, id, req.GetNewEmail(), req.GetCurrentPassword(), clientIP(ctx))
	if err != nil {
		return nil, err
	}
	return &identityv1.VerificationChallenge{ChallengeId: ch, ExpireTime: timestamppb.New(exp)}, nil
}

// ConfirmEmailChange implements IdentityService. The caller's session (x-lethe-session,
// set by the gateway) survives; every other session is revoked.
func (s *Server) ConfirmEmailChange(ctx context.Context, req *identityv1.ConfirmEmailChangeRequest) (*identityv1.Member, error) {
	id, err := memberID(req.GetName(), "name")
	if err != nil {
		return nil, err
	}
	md, _ := metadata.FromIncomingContext(ctx)
	keep := ""
	if v := md.Get("x-lethe-session"); len(v) == 1 {
		keep = v[0]
	}
	m, err := s.Svc.ConfirmEmailChange(ctx, id, req.GetChallengeId(), req.GetCode(), keep)
	if err != nil {
		return nil, err
	}
	return toProto(m), nil
}

// CheckVerificationCode implements IdentityService.
func (s *Server) CheckVerificationCode(ctx context.Context, req *identityv1.CheckVerificationCodeRequest) (*identityv1.CheckVerificationCodeResponse, error) {
	id, err := memberID(req.GetName(), "name")
	if err != nil {
		return nil, err
	}
	ok, ref, err := s.Svc.CheckCode(ctx, id, req.GetChallengeId(), req.GetCode())
	if err != nil {
		return nil, err
	}
	return &identityv1.CheckVerificationCodeResponse{Verified: ok, Reference: ref}, nil
}

// ExportSubjectData implements DataSubjectService: dataset "account" (the member) and
// "sessions". The cursor names the next dataset, so a resumed export skips finished ones.
func (s *Server) ExportSubjectData(req *subjectv1.ExportSubjectDataRequest, stream subjectv1.DataSubjectService_ExportSubjectDataServer) error {
	ctx := stream.Context()
	id, err := memberID(req.GetSubject(), "subject")
	if err != nil {
		return err
	}
	m, err := s.Svc.Get(ctx, id)
	if err != nil {
		return err
	}
	if req.GetCursor() == "" {
		rec, _ := protojson.Marshal(toProto(m))
		if err := stream.Send(&subjectv1.ExportSubjectDataResponse{Dataset: "account", Category: "user.contact", SchemaVersion: 1, Records: [][]byte{rec}, Cursor: "sessions"}); err != nil {
			return err
		}
	} else if req.GetCursor() != "sessions" {
		return errs.Invalid(errs.FieldViolation{Field: "cursor", Description: "is not a cursor this service issued"})
	}
	sessions, err := s.Svc.Sessions(ctx, id)
	if err != nil {
		return err
	}
	chunk := &subjectv1.ExportSubjectDataResponse{Dataset: "sessions", Category: "user.device", SchemaVersion: 1, Cursor: "done"}
	for _, x := range sessions {
		rec, _ := protojson.Marshal(sessionProto(x))
		chunk.Records = append(chunk.Records, rec)
	}
	return stream.Send(chunk)
}

// EraseSubjectData implements DataSubjectService.
func (s *Server) EraseSubjectData(ctx context.Context, req *subjectv1.EraseSubjectDataRequest) (*subjectv1.EraseSubjectDataResponse, error) {
	id, err := memberID(req.GetSubject(), "subject")
	if err != nil {
		return nil, err
	}
	var v errs.Violations
	if req.GetRequestId() == "" {
		v.Add("request_id", "is required")
	}
	if req.GetTombstoneId() == "" {
		v.Add("tombstone_id", "is required")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	e, err := s.Svc.Erase(ctx, id, req.GetRequestId(), req.GetTombstoneId())
	if err != nil {
		return nil, err
	}
	out := &subjectv1.EraseSubjectDataResponse{Replayed: e.Replayed, CompleteTime: timestamppb.New(e.Time)}
	for _, r := range e.Results {
		out.Results = append(out.Results, &subjectv1.CategoryResult{Category: r.Category, Dataset: r.Dataset, Action: r.Action, Count: r.Count, LegalBasis: r.LegalBasis})
	}
	return out, nil
}

// ReportSubjectData implements DataSubjectService.
func (s *Server) ReportSubjectData(ctx context.Context, req *subjectv1.ReportSubjectDataRequest) (*subjectv1.ReportSubjectDataResponse, error) {
	id, err := memberID(req.GetSubject(), "subject")
	if err != nil {
		return nil, err
	}
	held, err := s.Svc.Report(ctx, id)
	if err != nil {
		return nil, err
	}
	out := &subjectv1.ReportSubjectDataResponse{}
	for _, h := range held {
		out.Held = append(out.Held, &subjectv1.HeldData{Dataset: h.Dataset, Category: h.Category, Count: h.Count, LegalBasis: h.LegalBasis})
	}
	return out, nil
}

// NotifyMember implements IdentityService.
func (s *Server) NotifyMember(ctx context.Context, req *identityv1.NotifyMemberRequest) (*identityv1.NotifyMemberResponse, error) {
	id, err := memberID(req.GetName(), "name")
	if err != nil {
		return nil, err
	}
	msg, err := s.Svc.Notify(ctx, id, int(req.GetTemplate()), req.GetReference(), req.GetDetail(), req.GetRequestId())
	if err != nil {
		return nil, err
	}
	return &identityv1.NotifyMemberResponse{MessageId: msg}, nil
}

// ListMemberEvents implements IdentityService.
func (s *Server) ListMemberEvents(ctx context.Context, req *identityv1.ListMemberEventsRequest) (*identityv1.ListMemberEventsResponse, error) {
	n := int(req.GetPageSize())
	if n == 0 {
		n = 50
	}
	if n < 0 || n > 500 || req.GetKind() == "" {
		return nil, errs.Invalid(errs.FieldViolation{Field: "page_size", Description: "kind is required and page_size at most 500"})
	}
	events, err := s.Svc.PendingEvents(ctx, req.GetKind(), n)
	if err != nil {
		return nil, err
	}
	out := &identityv1.ListMemberEventsResponse{}
	for _, e := range events {
		out.Events = append(out.Events, &identityv1.MemberEvent{Name: identity.MemberEventName(e.ID), Member: "members/" + e.MemberID, Kind: e.Kind, CreateTime: timestamppb.New(e.Time)})
	}
	return out, nil
}

// AcknowledgeMemberEvent implements IdentityService.
func (s *Server) AcknowledgeMemberEvent(ctx context.Context, req *identityv1.AcknowledgeMemberEventRequest) (*emptypb.Empty, error) {
	id, ok := strings.CutPrefix(req.GetName(), "memberEvents/")
	if !ok || !ids.Valid(id) {
		return nil, errs.Invalid(errs.FieldViolation{Field: "name", Description: "must be memberEvents/{event}"})
	}
	return &emptypb.Empty{}, s.Svc.ConsumeEvent(ctx, id)
}
