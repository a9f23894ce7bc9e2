// Package transport is how Lethe processes trust each other: a shared service token
// every internal gRPC call must carry (checked by every server), and optional mutual
// TLS. Both come from the environment, so every binary and the dev stack agree:
//
//	LETHE_SERVICE_TOKEN  shared secret; servers refuse calls without it, and refuse to
//	                     start without it unless LETHE_INSECURE_DEV=true
//	LETHE_INSECURE_DEV   "true" lets a server start with no service token (local
//	                     development only: every internal call is then accepted)
//	LETHE_TLS_CERT, LETHE_TLS_KEY  this process's certificate (server and client)
//	LETHE_TLS_CA         CA that signs peers' certificates; with it servers require
//	                     client certificates (mTLS)
package transport

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"lethe.dev/platform/errs"
)

// TokenHeader carries the service token.
const TokenHeader = "x-lethe-service-token"

// Security is a process's transport security settings.
type Security struct {
	ServiceToken              string
	CertFile, KeyFile, CAFile string
	// InsecureDev allows a server to run without a service token (LETHE_INSECURE_DEV).
	InsecureDev bool
}

// FromEnv reads the settings from the environment.
func FromEnv() Security {
	return Security{ServiceToken: os.Getenv("LETHE_SERVICE_TOKEN"), CertFile: os.Getenv("LETHE_TLS_CERT"), KeyFile: os.Getenv("LETHE_TLS_KEY"), CAFile: os.Getenv("LETHE_TLS_CA"),
		InsecureDev: os.Getenv("LETHE_INSECURE_DEV") == "true"}
}

// ErrNoServiceToken is why a server refuses to start without a credential.
var ErrNoServiceToken = errors.New("transport: LETHE_SERVICE_TOKEN is not set: every internal call would be accepted. " +
	"Set LETHE_SERVICE_TOKEN to a shared secret (the same in every Lethe process), or LETHE_INSECURE_DEV=true to run without one on a development machine")

// Require fails closed: a server must not start without a service token unless the
// insecure development mode is asked for explicitly.
func (s Security) Require() error {
	if s.ServiceToken == "" && !s.InsecureDev {
		return ErrNoServiceToken
	}
	return nil
}

func (s Security) tlsConfig(server bool) (*tls.Config, error) {
	if s.CertFile == "" && s.CAFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13}
	if s.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("transport: LETHE_TLS_CERT/LETHE_TLS_KEY: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("transport: LETHE_TLS_CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("transport: LETHE_TLS_CA holds no PEM certificate")
		}
		if server {
			cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
		} else {
			cfg.RootCAs = pool
		}
	}
	if server && len(cfg.Certificates) == 0 {
		return nil, errors.New("transport: a TLS server needs LETHE_TLS_CERT and LETHE_TLS_KEY")
	}
	return cfg, nil
}

// ServerOptions returns TLS credentials when configured.
func (s Security) ServerOptions() ([]grpc.ServerOption, error) {
	cfg, err := s.tlsConfig(true)
	if err != nil || cfg == nil {
		return nil, err
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(cfg))}, nil
}

// exempt methods answer without a token: health checks and reflection, which carry no
// data and which orchestrators call.
func exempt(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.") || strings.HasPrefix(method, "/grpc.reflection.")
}

func (s Security) check(ctx context.Context, method string) error {
	if s.ServiceToken == "" || exempt(method) {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	got := md.Get(TokenHeader)
	if len(got) != 1 || subtle.ConstantTimeCompare([]byte(got[0]), []byte(s.ServiceToken)) != 1 {
		return errs.New(errs.Unauthenticated, "SERVICE_TOKEN_REQUIRED", "internal calls need the service credential")
	}
	return nil
}

// Unary returns the server interceptor that checks the service token.
func (s Security) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := s.check(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// Stream returns the stream interceptor that checks the service token.
func (s Security) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := s.check(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

// tokenCreds attaches the service token to every call.
type tokenCreds struct {
	token  string
	secure bool
}

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{TokenHeader: t.token}, nil
}

func (t tokenCreds) RequireTransportSecurity() bool { return t.secure }

// DialOptions returns what a client needs to reach a Lethe server: TLS (with its client
// certificate for mTLS) or plaintext on loopback, and the service token.
func (s Security) DialOptions() ([]grpc.DialOption, error) {
	cfg, err := s.tlsConfig(false)
	if err != nil {
		return nil, err
	}
	var opts []grpc.DialOption
	if cfg != nil {
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if s.ServiceToken != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(tokenCreds{token: s.ServiceToken, secure: cfg != nil}))
	}
	return opts, nil
}

// serviceConfig balances calls over every address of a backend (round_robin skips
// replicas that are down) and retries a call that failed with UNAVAILABLE on another
// replica: every Lethe RPC is idempotent (reads, or writes keyed by request id), so a
// replica killed mid-call costs the caller a retry, not an error.
const serviceConfig = `{
  "loadBalancingConfig": [{"round_robin": {}}],
  "methodConfig": [{
    "name": [{}],
    "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.2s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}
  }]
}`

// Dial connects to a backend with s's security, balancing over its replicas. addr is
// host:port (a DNS name resolving to every replica, e.g. a Kubernetes headless Service,
// or dns:///name:port), or a comma-separated list of host:port, one per replica.
func (s Security) Dial(addr string) (*grpc.ClientConn, error) {
	opts, err := s.DialOptions()
	if err != nil {
		return nil, err
	}
	// A replica that restarts is back in the rotation within a second, not after the
	// default reconnect backoff (up to two minutes).
	// The trace continues into the backend (W3C trace context in metadata), and client
	// metrics (rpc.client.*) are recorded.
	opts = append(opts, grpc.WithStatsHandler(otelgrpc.NewClientHandler()))
	// Export streams carry messages of a few hundred KiB: a 1 MiB stream window lets the
	// backend send the next message while this side is still writing the last, where
	// the 64 KiB default (grown only by BDP probing) stalls it on window updates.
	opts = append(opts, grpc.WithInitialWindowSize(1<<20), grpc.WithInitialConnWindowSize(2<<20))
	opts = append(opts, grpc.WithDefaultServiceConfig(serviceConfig), grpc.WithConnectParams(grpc.ConnectParams{
		Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second}, MinConnectTimeout: 5 * time.Second,
	}))
	target := addr
	if strings.Contains(addr, ",") {
		var state resolver.State
		for _, a := range strings.Split(addr, ",") {
			if a = strings.TrimSpace(a); a != "" {
				state.Addresses = append(state.Addresses, resolver.Address{Addr: a})
			}
		}
		r := manual.NewBuilderWithScheme("lethe-list")
		r.InitialState(state)
		opts = append(opts, grpc.WithResolvers(r))
		target = r.Scheme() + ":///" + strings.ReplaceAll(addr, ",", "_")
	}
	return grpc.NewClient(target, opts...)
}
