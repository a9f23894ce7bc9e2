// Package devstack runs the whole of Lethe in one process on embedded defaults: the
// embedded Temporal server with its Web UI (SQLite file persistence), every service on
// SQLite with its workers, and the gateway, with all state under one data directory.
// It is for development and end-to-end tests; production runs each service's binary.
package devstack

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"lethe.dev/devstack/temporaldev"
	"lethe.dev/platform/app"
	"lethe.dev/platform/ids"
	"lethe.dev/platform/observe"
	"lethe.dev/services/fulfillment"
	"lethe.dev/services/gateway"
	"lethe.dev/services/identity"
	"lethe.dev/services/preferences"
	"lethe.dev/services/sharing"
)

// Options configure a stack. Zero ports pick free ones (tests); DefaultOptions has the
// documented ports.
type Options struct {
	DataDir         string
	Host            string
	TemporalPort    int
	UIPort          int // -1 disables the Web UI
	IdentityPort    int
	PreferencesPort int
	SharingPort     int
	FulfillmentPort int
	FulfillmentHTTP int
	GatewayPort     int
	// AdminPort serves /metrics, /livez, /readyz (and /debug/pprof with Pprof) for the
	// whole stack: one process, one registry.
	AdminPort        int
	Pprof            bool
	ExternalTemporal string // host:port of an existing Temporal; empty embeds one
	// TemporalPostgres puts the embedded Temporal on PostgreSQL (a postgres:// URL naming
	// its database) instead of SQLite under DataDir.
	TemporalPostgres string
	Logger           *slog.Logger
	// Env is applied to the process environment before configuration is read, so a
	// caller can tune services (e.g. FULFILLMENT_COOLING_OFF=0s).
	Env map[string]string
}

// DefaultOptions are the documented dev-stack ports with all state under dataDir.
func DefaultOptions(dataDir string) Options {
	return Options{DataDir: dataDir, Host: "127.0.0.1", TemporalPort: 7233, UIPort: 8233, IdentityPort: 7101, PreferencesPort: 7102,
		SharingPort: 7103, FulfillmentPort: 7104, FulfillmentHTTP: 7114, GatewayPort: 8080, AdminPort: 9090}
}

// Stack is a running dev stack.
type Stack struct {
	envRestore      []func()            // puts back the environment variables Options.Env changed
	Temporal        *temporaldev.Server // nil with ExternalTemporal
	TemporalAddress string
	UIURL           string
	Addresses       map[string]string // service → host:port; "gateway" and "admin" are HTTP
	Identity        *identity.Service
	Preferences     *preferences.Service
	Sharing         *sharing.Service
	Fulfillment     *fulfillment.Service
	Gateway         *gateway.Gateway
	// Operator is the bootstrap operator (privacy staff) and OperatorFile where its
	// credentials are kept.
	Operator     OperatorCredentials
	OperatorFile string

	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	errs    []error
	closers []func() error
}

// Endpoints lists what a developer opens, in a stable order.
func (s *Stack) Endpoints() [][2]string {
	out := [][2]string{{"gateway (JSON/REST)", "http://" + s.Addresses["gateway"]}, {"OpenAPI", "http://" + s.Addresses["gateway"] + "/openapi.json"},
		{"operator console", "http://" + s.Addresses["gateway"] + "/console/"}}
	if s.UIURL != "" {
		out = append(out, [2]string{"Temporal Web UI", s.UIURL + "/namespaces/lethe/workflows"})
	}
	out = append(out, [2]string{"metrics, /livez, /readyz", "http://" + s.Addresses["admin"] + "/metrics"})
	out = append(out, [2]string{"Temporal frontend (gRPC)", s.TemporalAddress})
	for _, n := range []string{"identity", "preferences", "sharing", "fulfillment"} {
		out = append(out, [2]string{n + " (gRPC)", s.Addresses[n]})
	}
	return out
}

func (s *Stack) goRun(name string, fn func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := fn(); err != nil {
			s.mu.Lock()
			s.errs = append(s.errs, fmt.Errorf("%s: %w", name, err))
			s.mu.Unlock()
			s.cancel()
		}
	}()
}

// Start starts everything and returns once every listener is bound.
func Start(ctx context.Context, o Options) (*Stack, error) {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// Metrics and trace propagation are installed before any service is built.
	if _, err := observe.Registry(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("devstack: data directory: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Stack{cancel: cancel, Addresses: map[string]string{}}
	fail := func(err error) (*Stack, error) { _ = s.Stop(); return nil, err }

	// Bind every listener first so each service can be told where the others are.
	listeners := map[string]net.Listener{}
	for name, port := range map[string]int{"identity": o.IdentityPort, "preferences": o.PreferencesPort, "sharing": o.SharingPort,
		"fulfillment": o.FulfillmentPort, "fulfillment-http": o.FulfillmentHTTP, "gateway": o.GatewayPort, "admin": o.AdminPort} {
		lis, err := net.Listen("tcp", net.JoinHostPort(o.Host, strconv.Itoa(port)))
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			cancel()
			return nil, fmt.Errorf("devstack: %s port %d: %w", name, port, err)
		}
		listeners[name] = lis
		s.Addresses[name] = lis.Addr().String()
	}

	if o.ExternalTemporal != "" {
		s.TemporalAddress = o.ExternalTemporal
	} else {
		ts, err := temporaldev.Start(ctx, temporaldev.Config{
			DataDir: filepath.Join(o.DataDir, "temporal"), PostgresURL: o.TemporalPostgres, IP: o.Host, FrontendPort: o.TemporalPort, UIPort: o.UIPort,
			Namespace: "lethe", SearchAttributes: fulfillment.SearchAttributes, Logger: logger.With("component", "temporal"),
		})
		if err != nil {
			return fail(err)
		}
		s.Temporal, s.TemporalAddress, s.UIURL = ts, ts.FrontendAddress(), ts.UIAddress()
		s.closers = append(s.closers, ts.Stop)
	}

	env := map[string]string{
		"LETHE_DATA_DIR": o.DataDir, "TEMPORAL_ADDRESS": s.TemporalAddress, "TEMPORAL_NAMESPACE": "lethe",
		"IDENTITY_ADDRESS": s.Addresses["identity"], "PREFERENCES_ADDRESS": s.Addresses["preferences"],
		"SHARING_ADDRESS": s.Addresses["sharing"], "FULFILLMENT_ADDRESS": s.Addresses["fulfillment"],
		"FULFILLMENT_HTTP_ADDRESS": "http://" + s.Addresses["fulfillment-http"], "SHARING_PUBLIC_URL": "http://" + s.Addresses["gateway"],
		"DRP_API_BASE": "http://" + s.Addresses["gateway"] + "/drp", "GATEWAY_TEMPORAL_UI_URL": s.UIURL,
	}
	// Every setting is set explicitly (SQLite under DataDir unless o.Env says otherwise),
	// so nothing leaks in from an earlier stack in the same process.
	for _, svc := range []string{"identity", "preferences", "sharing", "fulfillment"} {
		env[strings.ToUpper(svc)+"_DATABASE_URL"] = "sqlite:" + filepath.Join(o.DataDir, svc+".db")
	}
	if os.Getenv("LETHE_SERVICE_TOKEN") == "" {
		// Every internal call in the stack must carry this, as in production.
		env["LETHE_SERVICE_TOKEN"] = ids.New() + ids.New()
	}
	for k, v := range o.Env {
		env[k] = v
	}
	// The caller's own settings (Options.Env) last as long as this stack: Stop puts the
	// environment back, so they do not leak into stacks started later in the process
	// (a raised rate limit would otherwise disarm another test's limit check).
	for k := range o.Env {
		old, ok := os.LookupEnv(k)
		s.envRestore = append(s.envRestore, func() {
			if ok {
				os.Setenv(k, old)
			} else {
				os.Unsetenv(k)
			}
		})
	}
	for k, v := range env {
		os.Setenv(k, v)
	}

	var err error
	var idCfg identity.Config
	parse(&idCfg)
	if s.Identity, err = identity.New(ctx, idCfg, logger.With("service", "identity")); err != nil {
		return fail(err)
	}
	if s.Operator, s.OperatorFile, err = bootstrapOperator(ctx, s.Identity, o.DataDir); err != nil {
		return fail(fmt.Errorf("devstack: bootstrap operator: %w", err))
	}
	var prCfg preferences.Config
	parse(&prCfg)
	if s.Preferences, err = preferences.New(ctx, prCfg, logger.With("service", "preferences")); err != nil {
		return fail(err)
	}
	var shCfg sharing.Config
	parse(&shCfg)
	if s.Sharing, err = sharing.New(ctx, shCfg, logger.With("service", "sharing")); err != nil {
		return fail(err)
	}
	var fuCfg fulfillment.Config
	parse(&fuCfg)
	if s.Fulfillment, err = fulfillment.New(ctx, fuCfg, logger.With("service", "fulfillment")); err != nil {
		return fail(err)
	}
	s.Fulfillment.SetHTTPListener(listeners["fulfillment-http"])
	for name, svc := range map[string]app.Service{"identity": s.Identity, "preferences": s.Preferences, "sharing": s.Sharing, "fulfillment": s.Fulfillment} {
		svc, lis, l := svc, listeners[name], logger.With("service", name)
		s.closers = append(s.closers, svc.Close)
		s.goRun(name, func() error { return app.Serve(ctx, lis, svc, l) })
	}
	var gwCfg gateway.Config
	parse(&gwCfg)
	if s.Gateway, err = gateway.New(ctx, gwCfg, logger.With("service", "gateway")); err != nil {
		return fail(err)
	}
	s.closers = append(s.closers, s.Gateway.Close)
	s.goRun("gateway", func() error { return s.Gateway.Serve(ctx, listeners["gateway"]) })
	var checks []observe.Check
	for _, svc := range []any{s.Identity, s.Preferences, s.Sharing, s.Fulfillment} {
		checks = append(checks, app.ChecksOf(svc)...)
	}
	admin, err := observe.AdminHandler(observe.AdminOptions{Checks: checks, Pprof: o.Pprof, Logger: logger})
	if err != nil {
		return fail(err)
	}
	s.goRun("admin", func() error { return observe.ServeAdmin(ctx, listeners["admin"], admin) })
	return s, nil
}

// DatabaseURLsFromEnv returns the *_DATABASE_URL variables set in the environment, for
// Options.Env: lethe-dev puts a service on the database its variable names (PostgreSQL
// included) and the rest on SQLite under the data directory.
func DatabaseURLsFromEnv() map[string]string {
	out := map[string]string{}
	for _, svc := range []string{"IDENTITY", "PREFERENCES", "SHARING", "FULFILLMENT"} {
		if v := os.Getenv(svc + "_DATABASE_URL"); v != "" {
			out[svc+"_DATABASE_URL"] = v
		}
	}
	return out
}

// parse fills a service configuration from the environment, as its binary would.
func parse(cfg interface{ RegisterFlags(*flag.FlagSet) }) {
	fs := flag.NewFlagSet("devstack", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	_ = fs.Parse(nil)
}

// Wait blocks until the stack stops and returns the first component failure.
func (s *Stack) Wait() error {
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.errs...)
}

// Stop shuts everything down: servers drain, workers stop, databases close, Temporal
// stops last.
func (s *Stack) Stop() error {
	s.cancel()
	s.wg.Wait()
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		if err := s.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	s.closers = nil
	for _, restore := range s.envRestore {
		restore()
	}
	s.envRestore = nil
	return errors.Join(errs...)
}
