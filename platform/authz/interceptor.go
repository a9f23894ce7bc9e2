package authz

import (
	"context"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	authv1 "lethe.dev/gen/lethe/auth/v1"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/ids"
)

// The metadata the gateway sends with every call it forwards, naming the caller it
// verified. A call without HeaderRole comes from an internal service (it still needs the
// service credential, platform/transport).
const (
	HeaderRole     = "x-lethe-role"     // RoleAnonymous, RoleMember or RoleOperator
	HeaderMember   = "x-lethe-member"   // the member id, for RoleMember
	HeaderOperator = "x-lethe-operator" // the operator id, for RoleOperator
	HeaderSession  = "x-lethe-session"
)

// Roles a forwarded caller has.
const (
	RoleAnonymous = "anonymous"
	RoleMember    = "member"
	RoleOperator  = "operator"
	RoleService   = "service" // no HeaderRole: an internal caller
)

// Principal is the caller of an RPC.
type Principal struct {
	Role string // one of the Role constants
	ID   string // member or operator id; empty for anonymous and service callers
}

// FromContext reads the caller from incoming metadata. Metadata that names a role but
// not its id, or an unknown role, yields an anonymous caller: it is never widened.
func FromContext(ctx context.Context) Principal {
	md, _ := metadata.FromIncomingContext(ctx)
	one := func(k string) (string, bool) {
		v := md.Get(k)
		if len(v) != 1 {
			return "", len(v) == 0
		}
		return v[0], true
	}
	role, single := one(HeaderRole)
	if !single {
		return Principal{Role: RoleAnonymous}
	}
	switch role {
	case "":
		if len(md.Get(HeaderRole)) == 0 {
			return Principal{Role: RoleService}
		}
	case RoleMember:
		if id, ok := one(HeaderMember); ok && ids.Valid(id) {
			return Principal{Role: RoleMember, ID: id}
		}
	case RoleOperator:
		if id, ok := one(HeaderOperator); ok && ids.Valid(id) {
			return Principal{Role: RoleOperator, ID: id}
		}
	}
	return Principal{Role: RoleAnonymous}
}

// Errors callers get. A member acting on another member gets the answer an unknown
// member gets, so nothing about the other member leaks.
var (
	errSignIn       = errs.New(errs.Unauthenticated, "UNAUTHENTICATED", "a valid access token is required")
	errNotFound     = errs.NotFoundf("MEMBER_NOT_FOUND", "member")
	errOperatorOnly = errs.New(errs.PermissionDenied, "OPERATOR_ONLY", "this method is for operators")
	errServiceOnly  = errs.New(errs.PermissionDenied, "INTERNAL_ONLY", "this method is for internal callers")
	errUndeclared   = errs.New(errs.PermissionDenied, "ACCESS_UNDECLARED", "this method declares no access")
)

// Allow decides whether p may call an RPC of access a acting on member (the member the
// request names, "" when none).
func Allow(a authv1.Access, p Principal, member string) error {
	if p.Role == RoleService && a != authv1.Access_ACCESS_UNSPECIFIED {
		return nil
	}
	switch a {
	case authv1.Access_ACCESS_PUBLIC:
		return nil
	case authv1.Access_ACCESS_SIGNED_IN:
		if p.Role == RoleMember || p.Role == RoleOperator {
			return nil
		}
		return errSignIn
	case authv1.Access_ACCESS_SELF:
		switch {
		case p.Role == RoleOperator:
			return nil
		case p.Role == RoleMember && member != "" && member == p.ID:
			return nil
		case p.Role == RoleMember:
			return errNotFound
		}
		return errSignIn
	case authv1.Access_ACCESS_OPERATOR:
		switch p.Role {
		case RoleOperator:
			return nil
		case RoleMember:
			return errOperatorOnly
		}
		return errSignIn
	case authv1.Access_ACCESS_SERVICE:
		return errServiceOnly
	}
	return errUndeclared
}

// Event is one operator action for the audit log.
type Event struct {
	Actor     string // "operators/{operator}"
	Action    string // "pkg.Service/Method", or "download"
	Target    string // the resource acted on
	Reason    string
	RequestID string // idempotency key of the append
}

// Recorder appends operator actions to the audit log (fulfillment owns it).
type Recorder interface {
	Record(ctx context.Context, e Event) error
}

// Interceptor enforces every RPC's declared access and audits operator actions.
type Interceptor struct {
	// Files resolves methods; nil means protoregistry.GlobalFiles.
	Files *protoregistry.Files
	// Recorder receives operator actions; nil records nothing (tests that need no log).
	Recorder Recorder
	Logger   *slog.Logger
}

// exempt methods are not Lethe APIs (health checks, reflection).
func exempt(method string) bool {
	return !strings.HasPrefix(method, "/lethe.")
}

func (i Interceptor) method(full string) protoreflect.MethodDescriptor {
	files := i.Files
	if files == nil {
		files = protoregistry.GlobalFiles
	}
	return Lookup(files, full)
}

func (i Interceptor) check(ctx context.Context, full string, req any) (protoreflect.MethodDescriptor, Principal, error) {
	p := FromContext(ctx)
	md := i.method(full)
	if md == nil {
		return nil, p, errUndeclared
	}
	msg, _ := req.(proto.Message)
	return md, p, Allow(Of(md), p, MemberOf(md, msg))
}

// audited says which operator calls go to the audit log: every call on a member's data
// and every operator-only call, except reading the log itself.
func audited(md protoreflect.MethodDescriptor, p Principal) bool {
	if p.Role != RoleOperator || md.Name() == "ListAuditEvents" || md.Name() == "RecordAuditEvent" {
		return false
	}
	a := Of(md)
	return a == authv1.Access_ACCESS_SELF || a == authv1.Access_ACCESS_OPERATOR
}

// TargetOf names the resource a call acts on: its path variables, else the name of the
// resource it returned (a create).
func TargetOf(md protoreflect.MethodDescriptor, req, resp proto.Message) string {
	var parts []string
	if req != nil {
		for _, f := range targetFields(md) {
			if v := stringAt(req.ProtoReflect(), f); v != "" {
				parts = append(parts, v)
			}
		}
	}
	if len(parts) == 0 && resp != nil {
		if v := stringAt(resp.ProtoReflect(), "name"); v != "" {
			parts = append(parts, v)
		}
	}
	return strings.Join(parts, " ")
}

// Unary returns the unary server interceptor.
func (i Interceptor) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if exempt(info.FullMethod) {
			return handler(ctx, req)
		}
		md, p, err := i.check(ctx, info.FullMethod, req)
		if err != nil {
			return nil, err
		}
		resp, err := handler(ctx, req)
		if err != nil || i.Recorder == nil || !audited(md, p) {
			return resp, err
		}
		in, _ := req.(proto.Message)
		out, _ := resp.(proto.Message)
		e := Event{Actor: "operators/" + p.ID, Action: strings.TrimPrefix(info.FullMethod, "/"), Target: TargetOf(md, in, out), RequestID: ids.New()}
		if in != nil {
			e.Reason = stringAt(in.ProtoReflect(), "reason")
		}
		if rerr := i.Recorder.Record(ctx, e); rerr != nil {
			// No unaudited operator access: the caller retries (every method is
			// idempotent or a read).
			if i.Logger != nil {
				i.Logger.Error("audit log append failed", "method", info.FullMethod)
			}
			return nil, errs.Wrap(rerr, errs.Unavailable, "AUDIT_UNAVAILABLE", "the audit log could not record this operator action; retry")
		}
		return resp, nil
	}
}

// Stream returns the stream server interceptor. Streaming RPCs carry no member in their
// first message that the interceptor could see, so only PUBLIC, SIGNED_IN, OPERATOR and
// SERVICE streams are admitted here; a SELF stream is refused for members.
func (i Interceptor) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if exempt(info.FullMethod) {
			return handler(srv, ss)
		}
		if _, _, err := i.check(ss.Context(), info.FullMethod, nil); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}
