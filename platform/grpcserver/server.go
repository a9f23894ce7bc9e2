// Package grpcserver is the gRPC transport every Lethe service shares: health checking,
// reflection, panic recovery, a default deadline, access logs without payloads, and the
// translation of domain errors into AIP-193 statuses.
package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// DefaultDeadline bounds calls that arrive without a deadline, so a stuck client cannot
// pin server resources forever. Streaming calls are not bounded (exports can be long).
const DefaultDeadline = 30 * time.Second

// Options configure a server.
type Options struct {
	Logger *slog.Logger
	// Extra interceptors run after the built-in ones (e.g. authentication).
	Unary  []grpc.UnaryServerInterceptor
	Stream []grpc.StreamServerInterceptor
	// ServerOptions are passed through (e.g. TLS credentials).
	ServerOptions []grpc.ServerOption
}

// Server is a gRPC server with health and reflection registered.
type Server struct {
	*grpc.Server
	Health *health.Server
	logger *slog.Logger
}

// New returns a server; register services on it, then call Serve.
func New(opts Options) *Server {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	unary := append([]grpc.UnaryServerInterceptor{recoverUnary(logger), logUnary(logger), deadlineUnary}, opts.Unary...)
	stream := append([]grpc.StreamServerInterceptor{recoverStream(logger), logStream(logger)}, opts.Stream...)
	so := append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...)}, opts.ServerOptions...)
	s := &Server{Server: grpc.NewServer(so...), Health: health.NewServer(), logger: logger}
	healthpb.RegisterHealthServer(s.Server, s.Health)
	reflection.Register(s.Server)
	return s
}

// Serve marks every registered service SERVING and serves on lis until ctx is done, then
// stops gracefully (in-flight calls finish, bounded by a grace period).
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	for name := range s.GetServiceInfo() {
		s.Health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	s.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	errc := make(chan error, 1)
	go func() { errc <- s.Server.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.Health.Shutdown()
	done := make(chan struct{})
	go func() { s.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.Stop()
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

func deadlineUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultDeadline)
		defer cancel()
	}
	return handler(ctx, req)
}

// toStatusErr converts a handler's error into a status error for the wire.
func toStatusErr(err error) error {
	if err == nil {
		return nil
	}
	return Status(err).Err()
}

func logUnary(logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		out := toStatusErr(err)
		logCall(ctx, logger, info.FullMethod, start, out, err)
		return resp, out
	}
}

func logStream(logger *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		out := toStatusErr(err)
		logCall(ss.Context(), logger, info.FullMethod, start, out, err)
		return out
	}
}

// logCall writes one access-log line: method, code, reason and duration, and for
// INTERNAL, UNKNOWN and UNAVAILABLE the cause's shape (causeOf). Requests, responses and
// error messages are never logged: they carry personal data.
func logCall(ctx context.Context, logger *slog.Logger, method string, start time.Time, err, orig error) {
	if method == healthpb.Health_Check_FullMethodName {
		return
	}
	s := status.Convert(err)
	level := slog.LevelInfo
	if s.Code() == codes.Internal || s.Code() == codes.Unknown {
		level = slog.LevelError
	}
	attrs := []slog.Attr{slog.String("method", method), slog.String("code", s.Code().String()), slog.Duration("duration", time.Since(start))}
	if r := reasonOf(s); r != "" {
		attrs = append(attrs, slog.String("reason", r))
	}
	switch s.Code() {
	case codes.Internal, codes.Unknown, codes.Unavailable:
		if c := causeOf(orig); c != "" {
			attrs = append(attrs, slog.String("cause", c))
		}
	}
	logger.LogAttrs(ctx, level, "grpc call", attrs...)
}

// causeOf describes an error by the Go types along its wrap chain and, where a link is a
// gRPC status (a downstream call, a Temporal service error), its code — e.g.
// "*errs.Error < *serviceerror.DeadlineExceeded(DeadlineExceeded)". Types and codes
// carry no request data, unlike messages, so an operator learns what failed without the
// log holding what the failing call was about.
func causeOf(err error) string {
	var parts []string
	for e := err; e != nil && len(parts) < 8; {
		p := fmt.Sprintf("%T", e)
		if st, ok := e.(interface{ Status() *status.Status }); ok && st.Status() != nil {
			p += "(" + st.Status().Code().String() + ")"
		} else if gs, ok := e.(interface{ GRPCStatus() *status.Status }); ok && gs.GRPCStatus() != nil {
			p += "(" + gs.GRPCStatus().Code().String() + ")"
		}
		parts = append(parts, p)
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			e = u.Unwrap()
		case interface{ Unwrap() []error }:
			if errs := u.Unwrap(); len(errs) > 0 {
				e = errs[0]
			} else {
				e = nil
			}
		default:
			e = nil
		}
	}
	return strings.Join(parts, " < ")
}

func recoverUnary(logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = panicErr(ctx, logger, info.FullMethod, r)
			}
		}()
		return handler(ctx, req)
	}
}

func recoverStream(logger *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = panicErr(ss.Context(), logger, info.FullMethod, r)
			}
		}()
		return handler(srv, ss)
	}
}

// panicErr logs a panic with its stack but not its value (which may hold request data).
func panicErr(ctx context.Context, logger *slog.Logger, method string, r any) error {
	logger.ErrorContext(ctx, "panic in handler", "method", method, "type", fmt.Sprintf("%T", r), "stack", string(debug.Stack()))
	return status.Error(codes.Internal, "internal error")
}
