// Package grpctest runs gRPC services on a real loopback listener for tests.
package grpctest

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"lethe.dev/platform/authz"
	"lethe.dev/platform/grpcserver"
)

// Serve registers services on a Lethe gRPC server listening on 127.0.0.1:0 and returns
// its address; the server stops when the test ends. The server enforces every RPC's
// declared access (platform/authz) as production servers do; calls without caller
// metadata are internal and pass.
func Serve(tb testing.TB, register func(*grpcserver.Server)) string {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	az := authz.Interceptor{}
	srv := grpcserver.New(grpcserver.Options{Unary: []grpc.UnaryServerInterceptor{az.Unary()}, Stream: []grpc.StreamServerInterceptor{az.Stream()}})
	register(srv)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx, lis); close(done) }()
	tb.Cleanup(func() { cancel(); <-done })
	return lis.Addr().String()
}

// Dial serves like Serve and returns a client connection to it, closed when the test
// ends.
func Dial(tb testing.TB, register func(*grpcserver.Server), opts ...grpc.DialOption) *grpc.ClientConn {
	tb.Helper()
	addr := Serve(tb, register)
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}
