package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/emptypb"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	"lethe.dev/platform/grpcserver"
	"lethe.dev/platform/grpcserver/grpctest"
)

// registry is an in-memory DataRightsService for the CLI's side of the contract; the
// service itself is tested in fulfillment and on the dev stack.
type registry struct {
	fulfillmentv1.UnimplementedDataRightsServiceServer
	agents map[string]*fulfillmentv1.AuthorizedAgent
}

func (r *registry) CreateAuthorizedAgent(_ context.Context, req *fulfillmentv1.CreateAuthorizedAgentRequest) (*fulfillmentv1.AuthorizedAgent, error) {
	a := req.GetAuthorizedAgent()
	a.Name = "authorizedAgents/" + req.GetAuthorizedAgentId()
	r.agents[a.Name] = a
	return a, nil
}

func (r *registry) ListAuthorizedAgents(context.Context, *fulfillmentv1.ListAuthorizedAgentsRequest) (*fulfillmentv1.ListAuthorizedAgentsResponse, error) {
	out := &fulfillmentv1.ListAuthorizedAgentsResponse{}
	for _, a := range r.agents {
		out.AuthorizedAgents = append(out.AuthorizedAgents, a)
	}
	return out, nil
}

func (r *registry) DeleteAuthorizedAgent(_ context.Context, req *fulfillmentv1.DeleteAuthorizedAgentRequest) (*emptypb.Empty, error) {
	delete(r.agents, req.GetName())
	return &emptypb.Empty{}, nil
}

func TestAgents(t *testing.T) {
	reg := &registry{agents: map[string]*fulfillmentv1.AuthorizedAgent{}}
	addr := grpctest.Serve(t, func(s *grpcserver.Server) { fulfillmentv1.RegisterDataRightsServiceServer(s, reg) })
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	for i, key := range []string{base64.StdEncoding.EncodeToString(pub), hex.EncodeToString(pub)} {
		var out bytes.Buffer
		id := []string{"PERMISSION_SLIP", "OTHER"}[i]
		if err := run(t.Context(), []string{"agents", "create", "-id", id, "-name", "Permission Slip", "-verify-key", key, "-contact", "drp@agent.example", "-fulfillment", addr}, &out); err != nil {
			t.Fatal(err)
		}
		if a := reg.agents["authorizedAgents/"+id]; a == nil || !bytes.Equal(a.GetVerifyKey(), pub) || a.GetContact() != "drp@agent.example" {
			t.Fatalf("registered %v", a)
		}
	}
	var out bytes.Buffer
	if err := run(t.Context(), []string{"agents", "list", "-fulfillment", addr}, &out); err != nil || !strings.Contains(out.String(), "PERMISSION_SLIP\tPermission Slip\tdrp@agent.example\t"+base64.StdEncoding.EncodeToString(pub)) {
		t.Fatalf("list: %v\n%s", err, out.String())
	}
	if err := run(t.Context(), []string{"agents", "delete", "-id", "OTHER", "-fulfillment", addr}, &out); err != nil || len(reg.agents) != 1 {
		t.Fatalf("delete: %v, %d agents left", err, len(reg.agents))
	}
	if err := run(t.Context(), []string{"agents", "create", "-id", "X", "-name", "n", "-verify-key", "c2hvcnQ=", "-contact", "c", "-fulfillment", addr}, &out); err == nil {
		t.Fatal("a short key was accepted")
	}
}
