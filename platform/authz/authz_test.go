package authz_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	authv1 "lethe.dev/gen/lethe/auth/v1"
	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	identityv1 "lethe.dev/gen/lethe/identity/v1"
	_ "lethe.dev/gen/lethe/preferences/v1"
	_ "lethe.dev/gen/lethe/sharing/v1"
	_ "lethe.dev/gen/lethe/subject/v1"
	"lethe.dev/platform/authz"
	"lethe.dev/platform/errs"
)

func TestEveryRPCDeclaresItsAccess(t *testing.T) {
	if v := authz.Check(protoregistry.GlobalFiles); len(v) != 0 {
		t.Fatalf("%d RPCs declare no access, first: %s", len(v), v[0])
	}
	n := 0
	authz.Methods(protoregistry.GlobalFiles, func(protoreflect.MethodDescriptor) { n++ })
	if n < 80 {
		t.Fatalf("only %d RPCs seen", n)
	}
}

// fixture is a Lethe-like file with one service whose second RPC carries opt.
func fixture(t *testing.T, opt *authv1.Access) *protoregistry.Files {
	t.Helper()
	method := func(name string, a *authv1.Access) *descriptorpb.MethodDescriptorProto {
		m := &descriptorpb.MethodDescriptorProto{Name: proto.String(name), InputType: proto.String(".google.protobuf.Empty"), OutputType: proto.String(".google.protobuf.Empty")}
		if a != nil {
			m.Options = &descriptorpb.MethodOptions{}
			proto.SetExtension(m.Options, authv1.E_Access, *a)
		}
		return m
	}
	pub := authv1.Access_ACCESS_PUBLIC
	fdp := &descriptorpb.FileDescriptorProto{
		Name: proto.String("lethe/fixture/v1/fixture.proto"), Package: proto.String("lethe.fixture.v1"), Syntax: proto.String("proto3"),
		Dependency: []string{"lethe/auth/v1/auth.proto", "google/protobuf/empty.proto"},
		Service:    []*descriptorpb.ServiceDescriptorProto{{Name: proto.String("FixtureService"), Method: []*descriptorpb.MethodDescriptorProto{method("Declared", &pub), method("Other", opt)}}},
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	files := new(protoregistry.Files)
	if err := files.RegisterFile(fd); err != nil {
		t.Fatal(err)
	}
	return files
}

func TestCheckFailsOnAnRPCWithoutTheOption(t *testing.T) {
	if v := authz.Check(fixture(t, nil)); len(v) != 1 || !strings.HasPrefix(v[0], "lethe.fixture.v1.FixtureService.Other:") {
		t.Fatalf("violations = %v, want one on FixtureService.Other", v)
	}
	unspecified := authv1.Access_ACCESS_UNSPECIFIED
	if v := authz.Check(fixture(t, &unspecified)); len(v) != 1 {
		t.Fatalf("an explicit ACCESS_UNSPECIFIED must fail too: %v", v)
	}
	op := authv1.Access_ACCESS_OPERATOR
	if v := authz.Check(fixture(t, &op)); len(v) != 0 {
		t.Fatalf("declared fixture: %v", v)
	}
}

func ctxFor(kv ...string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs(kv...))
}

func TestPrincipalFromMetadataNeverWidens(t *testing.T) {
	const a = "aaaaaaaaaaaa"
	for _, tc := range []struct {
		ctx  context.Context
		want authz.Principal
	}{
		{context.Background(), authz.Principal{Role: authz.RoleService}},
		{ctxFor(authz.HeaderRole, "anonymous"), authz.Principal{Role: authz.RoleAnonymous}},
		{ctxFor(authz.HeaderRole, "member", authz.HeaderMember, a), authz.Principal{Role: authz.RoleMember, ID: a}},
		{ctxFor(authz.HeaderRole, "operator", authz.HeaderOperator, a), authz.Principal{Role: authz.RoleOperator, ID: a}},
		{ctxFor(authz.HeaderRole, "operator", authz.HeaderMember, a), authz.Principal{Role: authz.RoleAnonymous}},
		{ctxFor(authz.HeaderRole, "member"), authz.Principal{Role: authz.RoleAnonymous}},
		{ctxFor(authz.HeaderRole, "root", authz.HeaderOperator, a), authz.Principal{Role: authz.RoleAnonymous}},
		{ctxFor(authz.HeaderRole, "member", authz.HeaderRole, "operator", authz.HeaderOperator, a, authz.HeaderMember, a), authz.Principal{Role: authz.RoleAnonymous}},
		{ctxFor(authz.HeaderRole, ""), authz.Principal{Role: authz.RoleAnonymous}},
	} {
		if got := authz.FromContext(tc.ctx); got != tc.want {
			md, _ := metadata.FromIncomingContext(tc.ctx)
			t.Errorf("%v: got %+v, want %+v", md, got, tc.want)
		}
	}
}

// TestEveryRPCIsEnforcedAsDeclared runs the backend decision for every RPC of every
// service, from its option, for each kind of caller.
func TestEveryRPCIsEnforcedAsDeclared(t *testing.T) {
	const a, b, op = "aaaaaaaaaaaa", "bbbbbbbbbbbb", "oooooooooooo"
	anon := authz.Principal{Role: authz.RoleAnonymous}
	memA := authz.Principal{Role: authz.RoleMember, ID: a}
	oper := authz.Principal{Role: authz.RoleOperator, ID: op}
	svc := authz.Principal{Role: authz.RoleService}
	seen := map[authv1.Access]int{}
	authz.Methods(protoregistry.GlobalFiles, func(md protoreflect.MethodDescriptor) {
		acc := authz.Of(md)
		seen[acc]++
		// A request naming member B wherever the RPC names a member.
		req := dynamicpb.NewMessage(md.Input())
		fillMember(req, "members/"+b)
		member := authz.MemberOf(md, req)
		allowed := func(p authz.Principal) bool { return authz.Allow(acc, p, member) == nil }
		switch acc {
		case authv1.Access_ACCESS_PUBLIC:
			if !allowed(anon) || !allowed(memA) || !allowed(oper) || !allowed(svc) {
				t.Errorf("%s PUBLIC must admit everyone", md.FullName())
			}
		case authv1.Access_ACCESS_SIGNED_IN:
			if allowed(anon) || !allowed(memA) || !allowed(oper) {
				t.Errorf("%s SIGNED_IN", md.FullName())
			}
		case authv1.Access_ACCESS_SELF:
			if member != b {
				t.Errorf("%s is SELF but names no member (got %q)", md.FullName(), member)
			}
			if allowed(anon) || allowed(memA) || !allowed(oper) || !allowed(svc) {
				t.Errorf("%s SELF: anonymous or A on B admitted, or operator/service refused", md.FullName())
			}
			if !allowed(authz.Principal{Role: authz.RoleMember, ID: b}) {
				t.Errorf("%s SELF: B refused on B", md.FullName())
			}
			if e, ok := authz.Allow(acc, memA, member).(*errs.Error); !ok || e.Reason != "MEMBER_NOT_FOUND" {
				t.Errorf("%s SELF: A on B must look like an unknown member, got %v", md.FullName(), e)
			}
		case authv1.Access_ACCESS_OPERATOR:
			if allowed(anon) || allowed(memA) || !allowed(oper) || !allowed(svc) {
				t.Errorf("%s OPERATOR", md.FullName())
			}
		case authv1.Access_ACCESS_SERVICE:
			if allowed(anon) || allowed(memA) || allowed(oper) || !allowed(svc) {
				t.Errorf("%s SERVICE", md.FullName())
			}
		default:
			t.Errorf("%s declares %v", md.FullName(), acc)
		}
	})
	for _, acc := range []authv1.Access{authv1.Access_ACCESS_PUBLIC, authv1.Access_ACCESS_SIGNED_IN, authv1.Access_ACCESS_SELF, authv1.Access_ACCESS_OPERATOR, authv1.Access_ACCESS_SERVICE} {
		if seen[acc] == 0 {
			t.Errorf("no RPC declares %v", acc)
		}
	}
}

// fillMember sets every string field that an RPC's path names (name, parent, member.name,
// …) to a resource under member.
func fillMember(m *dynamicpb.Message, member string) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		switch {
		case fd.Kind() == protoreflect.StringKind && !fd.IsList() && (fd.Name() == "name" || fd.Name() == "parent" || fd.Name() == "purpose"):
			m.Set(fd, protoreflect.ValueOfString(member+"/x/yyyyyyyyyyyy"))
		case fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() && strings.HasPrefix(string(fd.Message().FullName()), "lethe."):
			sub := dynamicpb.NewMessage(fd.Message())
			if nf := fd.Message().Fields().ByName("name"); nf != nil && nf.Kind() == protoreflect.StringKind {
				sub.Set(nf, protoreflect.ValueOfString(member+"/x/yyyyyyyyyyyy"))
				m.Set(fd, protoreflect.ValueOfMessage(sub))
			}
		}
	}
}

func TestRoutesComeFromTheHTTPBindings(t *testing.T) {
	routes := authz.Routes(protoregistry.GlobalFiles)
	if len(routes) < 60 {
		t.Fatalf("%d routes", len(routes))
	}
	for _, tc := range []struct {
		method, path, rpc, member string
		access                    authv1.Access
	}{
		{"GET", "/v1/members", "lethe.identity.v1.IdentityService.ListMembers", "", authv1.Access_ACCESS_OPERATOR},
		{"POST", "/v1/members", "lethe.identity.v1.IdentityService.CreateMember", "", authv1.Access_ACCESS_PUBLIC},
		{"POST", "/v1/members:lookup", "lethe.identity.v1.IdentityService.LookupMember", "", authv1.Access_ACCESS_OPERATOR},
		{"GET", "/v1/members/abcdefgh1", "lethe.identity.v1.IdentityService.GetMember", "abcdefgh1", authv1.Access_ACCESS_SELF},
		{"POST", "/v1/members/abcdefgh1/privacyRequests/r1234567:extend", "lethe.fulfillment.v1.FulfillmentService.ExtendPrivacyRequest", "abcdefgh1", authv1.Access_ACCESS_OPERATOR},
		{"GET", "/v1/auditLog", "lethe.fulfillment.v1.FulfillmentService.ListAuditEvents", "", authv1.Access_ACCESS_OPERATOR},
		{"POST", "/v1/operators:signIn", "lethe.identity.v1.IdentityService.SignInOperator", "", authv1.Access_ACCESS_PUBLIC},
		{"GET", "/v1/titles/t1/statistics", "lethe.preferences.v1.PreferencesService.GetTitleStatistics", "", authv1.Access_ACCESS_SIGNED_IN},
	} {
		r, member := authz.Match(routes, tc.method, tc.path)
		if r == nil || string(r.RPC.FullName()) != tc.rpc || member != tc.member || r.Access != tc.access {
			t.Errorf("%s %s: got %v member %q", tc.method, tc.path, r, member)
		}
	}
	if r, _ := authz.Match(routes, "GET", "/v1/members/a/b/c/d"); r != nil {
		t.Errorf("matched %s", r.Key())
	}
	for _, r := range routes {
		if r.Access == authv1.Access_ACCESS_SERVICE {
			t.Errorf("%s is SERVICE but has an HTTP binding", r.Key())
		}
		// Every route's example path matches itself.
		if got, _ := authz.Match(routes, r.Method, r.Example("mmmmmmmm", "iiiiiiii")); got == nil || got.RPC != r.RPC {
			t.Errorf("%s: example %s does not match back", r.Key(), r.Example("mmmmmmmm", "iiiiiiii"))
		}
	}
}

func TestTargetAndMemberOfARequest(t *testing.T) {
	md := fulfillmentv1.File_lethe_fulfillment_v1_fulfillment_proto.Services().Get(0).Methods().ByName("SetLegalHold")
	req := &fulfillmentv1.SetLegalHoldRequest{Name: "members/abcdefgh1/privacyRequests/r1234567", Reason: "case 42"}
	if m := authz.MemberOf(md, req); m != "abcdefgh1" {
		t.Fatalf("member %q", m)
	}
	if tg := authz.TargetOf(md, req, nil); tg != req.Name {
		t.Fatalf("target %q", tg)
	}
	up := identityv1.File_lethe_identity_v1_identity_proto.Services().Get(0).Methods().ByName("UpdateMember")
	if m := authz.MemberOf(up, &identityv1.UpdateMemberRequest{Member: &identityv1.Member{Name: "members/abcdefgh1"}}); m != "abcdefgh1" {
		t.Fatalf("update member %q", m)
	}
}
