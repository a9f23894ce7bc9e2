// Package app is the main loop every Lethe service binary shares: read the service's
// configuration from flags and environment, validate it, build the service, serve its
// gRPC API with health and reflection, run its background work (workers, outboxes), and
// shut everything down together on SIGINT/SIGTERM.
package app

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"lethe.dev/platform/authz"
	"lethe.dev/platform/config"
	"lethe.dev/platform/grpcserver"
	"lethe.dev/platform/observe"
	"lethe.dev/platform/run"
	"lethe.dev/platform/storage"
	"lethe.dev/platform/transport"
)

// Config is what a service's configuration offers the main loop.
type Config interface {
	RegisterFlags(fs *flag.FlagSet)
	Validate() error
	// Listen is the gRPC listen address.
	Listen() string
}

// Service is a built service.
type Service interface {
	// Register registers the service's gRPC APIs.
	Register(srv *grpcserver.Server)
	// Run does background work until ctx is done; it returns nil on shutdown.
	Run(ctx context.Context) error
	Close() error
}

// Audited is implemented by a service that hands operator actions to the audit log
// (platform/authz); Serve installs its recorder in the authorization interceptor.
type Audited interface {
	AuditRecorder() authz.Recorder
}

// Migratable is implemented by the configuration of a service that owns a database:
// `-migrate` applies its migrations and exits (a deployment's migration Job), so
// replicas never race a schema change while they serve.
type Migratable interface {
	Database() (url string, migrations fs.FS)
}

// Main is a service binary's whole main function.
func Main[C Config](name string, cfg C, build func(context.Context, C, *slog.Logger) (Service, error)) {
	run.Main(name, func(ctx context.Context, logger *slog.Logger) error {
		cfg.RegisterFlags(flag.CommandLine)
		var admin AdminConfig
		admin.RegisterFlags(flag.CommandLine, name)
		migrate := flag.Bool("migrate", config.EnvBool("LETHE_MIGRATE_ONLY", false), "apply the database migrations and exit (LETHE_MIGRATE_ONLY)")
		flag.Parse()
		if err := cfg.Validate(); err != nil {
			return err
		}
		stopTracing, err := observe.StartTracing(ctx, name)
		if err != nil {
			return err
		}
		defer stopTracing(context.Background())
		if *migrate {
			m, ok := any(cfg).(Migratable)
			if !ok {
				return fmt.Errorf("%s has no database to migrate", name)
			}
			url, fsys := m.Database()
			db, err := storage.Open(ctx, url, fsys)
			if err != nil {
				return err
			}
			logger.Info("migrated", "engine", string(db.Dialect))
			return db.Close()
		}
		if err := transport.FromEnv().Require(); err != nil {
			return err // before opening databases or keys
		}
		svc, err := build(ctx, cfg, logger)
		if err != nil {
			return err
		}
		defer svc.Close()
		lis, err := net.Listen("tcp", cfg.Listen())
		if err != nil {
			return fmt.Errorf("%s: listen: %w", name, err)
		}
		logger.Info("serving", "grpc", lis.Addr().String(), "pid", os.Getpid())
		g, ctx := errgroup.WithContext(ctx)
		if err := admin.Start(ctx, g, logger, ChecksOf(svc)...); err != nil {
			return err
		}
		g.Go(func() error { return Serve(ctx, lis, svc, logger) })
		return g.Wait()
	})
}

// Checker is implemented by a service whose readiness depends on what it uses (its
// database, Temporal); /readyz runs its checks.
type Checker interface {
	ReadyChecks() []observe.Check
}

// ChecksOf returns svc's readiness checks (none when it has none).
func ChecksOf(svc any) []observe.Check {
	if c, ok := svc.(Checker); ok {
		return c.ReadyChecks()
	}
	return nil
}

// AdminConfig is where a binary serves /metrics, /livez, /readyz and pprof.
type AdminConfig struct {
	Addr  string
	Pprof bool
}

// RegisterFlags registers -metrics-addr (NAME_METRICS_ADDR; empty serves nothing) and
// -pprof (LETHE_PPROF).
func (a *AdminConfig) RegisterFlags(fs *flag.FlagSet, name string) {
	env := strings.ToUpper(name) + "_METRICS_ADDR"
	fs.StringVar(&a.Addr, "metrics-addr", config.Env(env, ""), "admin listen address for /metrics, /livez, /readyz (and /debug/pprof with -pprof); empty serves none ("+env+")")
	fs.BoolVar(&a.Pprof, "pprof", config.Env("LETHE_PPROF", "") == "1", "serve /debug/pprof on the admin listener (LETHE_PPROF=1)")
}

// Start binds the admin listener (when an address is set) and serves it in g.
func (a AdminConfig) Start(ctx context.Context, g *errgroup.Group, logger *slog.Logger, checks ...observe.Check) error {
	if a.Addr == "" {
		return nil
	}
	h, err := observe.AdminHandler(observe.AdminOptions{Checks: checks, Pprof: a.Pprof, Logger: logger})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", a.Addr)
	if err != nil {
		return fmt.Errorf("metrics listen: %w", err)
	}
	logger.Info("serving admin", "http", lis.Addr().String(), "pprof", a.Pprof)
	g.Go(func() error { return observe.ServeAdmin(ctx, lis, h) })
	return nil
}

// Serve serves svc on lis and runs its background work until ctx is done or either
// fails. Transport security (service token, TLS) comes from the environment
// (platform/transport).
func Serve(ctx context.Context, lis net.Listener, svc Service, logger *slog.Logger) error {
	sec := transport.FromEnv()
	if err := sec.Require(); err != nil {
		return err
	}
	so, err := sec.ServerOptions()
	if err != nil {
		return err
	}
	// The service credential first, then the access each RPC declares.
	az := authz.Interceptor{Logger: logger}
	if a, ok := svc.(Audited); ok {
		az.Recorder = a.AuditRecorder()
	}
	// Traces and gRPC server metrics (rpc.server.*): method and code only, no payloads.
	so = append(so, grpc.StatsHandler(otelgrpc.NewServerHandler()))
	srv := grpcserver.New(grpcserver.Options{Logger: logger, Unary: []grpc.UnaryServerInterceptor{sec.Unary(), az.Unary()},
		Stream: []grpc.StreamServerInterceptor{sec.Stream(), az.Stream()}, ServerOptions: so})
	svc.Register(srv)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(ctx, lis) })
	g.Go(func() error { return svc.Run(ctx) })
	return g.Wait()
}
