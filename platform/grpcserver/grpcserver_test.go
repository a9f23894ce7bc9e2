package grpcserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	identityv1 "lethe.dev/gen/lethe/identity/v1"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/grpcserver"
)

// fakeIdentity answers GetMember according to the requested name, to exercise the
// transport's error translation and recovery.
type fakeIdentity struct {
	identityv1.UnimplementedIdentityServiceServer
}

func (fakeIdentity) GetMember(ctx context.Context, req *identityv1.GetMemberRequest) (*identityv1.Member, error) {
	switch req.GetName() {
	case "members/invalid":
		var v errs.Violations
		v.Add("name", "must look like members/{member}")
		return nil, v.Err()
	case "members/missing":
		return nil, errs.NotFoundf("MEMBER_NOT_FOUND", "member")
	case "members/panic":
		panic("secret ada@example.com")
	case "members/driver":
		return nil, &net.OpError{Op: "dial", Err: errDriver("pq: value ada@example.com violates")}
	case "members/timeout":
		return nil, fmt.Errorf("read row: %w", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded})
	case "members/deadline":
		d, ok := ctx.Deadline()
		if !ok || time.Until(d) > grpcserver.DefaultDeadline {
			return nil, errs.New(errs.Internal, "NO_DEADLINE", "no default deadline")
		}
		return &identityv1.Member{Name: req.GetName()}, nil
	}
	return &identityv1.Member{Name: req.GetName()}, nil
}

type errDriver string

func (e errDriver) Error() string { return string(e) }

func dial(t *testing.T) *grpc.ClientConn {
	t.Helper()
	return dialLogging(t, nil)
}

func dialLogging(t *testing.T, logger *slog.Logger) *grpc.ClientConn {
	t.Helper()
	srv := grpcserver.New(grpcserver.Options{Logger: logger})
	identityv1.RegisterIdentityServiceServer(srv, fakeIdentity{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestErrorsFollowAIP193(t *testing.T) {
	c := identityv1.NewIdentityServiceClient(dial(t))
	ctx := context.Background()
	cases := []struct {
		name       string
		code       codes.Code
		reason     string
		violations int
	}{
		{"members/invalid", codes.InvalidArgument, "INVALID_ARGUMENT", 1},
		{"members/missing", codes.NotFound, "MEMBER_NOT_FOUND", 0},
		{"members/driver", codes.Internal, "INTERNAL", 0},
		{"members/timeout", codes.Unavailable, "BACKEND_TIMEOUT", 0},
	}
	for _, tc := range cases {
		_, err := c.GetMember(ctx, &identityv1.GetMemberRequest{Name: tc.name})
		s := status.Convert(err)
		if s.Code() != tc.code {
			t.Errorf("%s: code %v, want %v", tc.name, s.Code(), tc.code)
		}
		var infos, violations int
		for _, d := range s.Details() {
			switch d := d.(type) {
			case *errdetails.ErrorInfo:
				infos++
				if d.GetReason() != tc.reason || d.GetDomain() != grpcserver.ErrorDomain {
					t.Errorf("%s: ErrorInfo %v", tc.name, d)
				}
			case *errdetails.BadRequest:
				violations += len(d.GetFieldViolations())
			}
		}
		if infos != 1 || violations != tc.violations {
			t.Errorf("%s: %d ErrorInfo, %d violations; want 1, %d", tc.name, infos, violations, tc.violations)
		}
		if strings.Contains(s.Message(), "ada@") {
			t.Errorf("%s: message leaks a value: %q", tc.name, s.Message())
		}
	}
}

// An INTERNAL answer's log line names what failed by type (so an operator can tell a
// driver error from a timeout) but never holds the error's message.
func TestInternalErrorsLogTheirCauseNotTheirMessage(t *testing.T) {
	var buf bytes.Buffer
	c := identityv1.NewIdentityServiceClient(dialLogging(t, slog.New(slog.NewJSONHandler(&buf, nil))))
	if _, err := c.GetMember(context.Background(), &identityv1.GetMemberRequest{Name: "members/driver"}); status.Code(err) != codes.Internal {
		t.Fatalf("driver error answered %v", err)
	}
	if _, err := c.GetMember(context.Background(), &identityv1.GetMemberRequest{Name: "members/missing"}); status.Code(err) != codes.NotFound {
		t.Fatalf("missing member answered %v", err)
	}
	var causes []string
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if c, ok := rec["cause"].(string); ok {
			causes = append(causes, c)
		}
	}
	if len(causes) != 1 || causes[0] != "*net.OpError < grpcserver_test.errDriver" {
		t.Errorf("causes logged %q, want only the driver error's: *net.OpError < grpcserver_test.errDriver", causes)
	}
	if strings.Contains(buf.String(), "ada@") {
		t.Errorf("the log holds the error's message: %s", buf.String())
	}
}

func TestPanicsBecomeInternalWithoutTheirValue(t *testing.T) {
	c := identityv1.NewIdentityServiceClient(dial(t))
	_, err := c.GetMember(context.Background(), &identityv1.GetMemberRequest{Name: "members/panic"})
	if s := status.Convert(err); s.Code() != codes.Internal || strings.Contains(s.Message(), "ada@") {
		t.Fatalf("panic answered %v", err)
	}
	// The server survives the panic.
	if _, err := c.GetMember(context.Background(), &identityv1.GetMemberRequest{Name: "members/ok"}); err != nil {
		t.Fatalf("after panic: %v", err)
	}
}

func TestHealthAndDefaultDeadline(t *testing.T) {
	conn := dial(t)
	h, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: identityv1.IdentityService_ServiceDesc.ServiceName})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", h, err)
	}
	if _, err := identityv1.NewIdentityServiceClient(conn).GetMember(context.Background(), &identityv1.GetMemberRequest{Name: "members/deadline"}); err != nil {
		t.Fatalf("call without deadline got no default: %v", err)
	}
}
