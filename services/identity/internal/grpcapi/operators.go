package grpcapi

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "lethe.dev/gen/lethe/identity/v1"
)

// CreateOperator implements IdentityService (internal: lethectl operators create).
func (s *Server) CreateOperator(ctx context.Context, req *identityv1.CreateOperatorRequest) (*identityv1.CreateOperatorResponse, error) {
	op, enrol, err := s.Svc.CreateOperator(ctx, req.GetEmail(), req.GetPassword())
	if err != nil {
		return nil, err
	}
	return &identityv1.CreateOperatorResponse{
		Operator:   &identityv1.Operator{Name: "operators/" + op.ID, Email: op.Email, CreateTime: timestamppb.New(op.Created)},
		TotpSecret: enrol.Secret, TotpUri: enrol.URI,
	}, nil
}

// SignInOperator implements IdentityService.
func (s *Server) SignInOperator(ctx context.Context, req *identityv1.SignInOperatorRequest) (*identityv1.SignInResponse, error) {
	t, err := s.Svc.SignInOperator(ctx, req.GetEmail(), req.GetPassword(), req.GetTotpCode())
	if err != nil {
		return nil, err
	}
	return &identityv1.SignInResponse{AccessToken: t.AccessToken, AccessTokenExpireTime: timestamppb.New(t.AccessExpiry)}, nil
}
