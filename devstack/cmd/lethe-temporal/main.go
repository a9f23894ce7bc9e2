// Command lethe-temporal runs a single-host Temporal server (the version the services are
// built against) with its Web UI on PostgreSQL, for deployments that run Temporal
// themselves: it creates the databases when missing, sets up or upgrades their schema
// with the server module's own schema tools, starts the server, and registers the lethe
// namespace with fulfillment's search attributes (idempotently) before it reports ready.
//
//	lethe-temporal -postgres postgres://user:pw@host:5432/temporal?sslmode=disable [-ip 0.0.0.0] [-port 7233] [-ui-port 8233] [-health-listen :7243] [-pprof-listen 127.0.0.1:7244]
//
// Every flag has an environment variable (see temporaldev.Config.RegisterFlags). The
// frontend answers standard gRPC health checks; -health-listen serves GET /healthz,
// which answers 200 only once the namespace and its search attributes are registered
// (what an orchestrator should wait for before starting the services).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync/atomic"
	"time"

	"lethe.dev/devstack/temporaldev"
	"lethe.dev/platform/run"
	"lethe.dev/services/fulfillment"
)

func main() {
	run.Main("lethe-temporal", func(ctx context.Context, logger *slog.Logger) error {
		var cfg temporaldev.Config
		cfg.RegisterFlags(flag.CommandLine)
		pprofListen := flag.String("pprof-listen", os.Getenv("TEMPORAL_PPROF_LISTEN"), "address serving /debug/pprof/ of this process (profiling the server under load); empty: off (TEMPORAL_PPROF_LISTEN)")
		flag.Parse()
		if *pprofListen != "" {
			lis, err := net.Listen("tcp", *pprofListen)
			if err != nil {
				return fmt.Errorf("lethe-temporal: pprof listener: %w", err)
			}
			mux := http.NewServeMux()
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
			srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: mux}
			go func() { _ = srv.Serve(lis) }()
			defer srv.Close()
		}
		if cfg.PostgresURL == "" {
			return errors.New("lethe-temporal: set -postgres or TEMPORAL_POSTGRES_URL (postgres://user:pw@host:5432/temporal?sslmode=disable)")
		}
		var ready atomic.Bool
		if cfg.HealthListen != "" {
			lis, err := net.Listen("tcp", cfg.HealthListen)
			if err != nil {
				return fmt.Errorf("lethe-temporal: health listener: %w", err)
			}
			srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !ready.Load() {
					http.Error(w, "starting", http.StatusServiceUnavailable)
					return
				}
				fmt.Fprintln(w, "ok")
			})}
			go func() { _ = srv.Serve(lis) }()
			defer srv.Close()
		}
		cfg.SearchAttributes, cfg.Logger, cfg.Level = fulfillment.SearchAttributes, logger, slog.LevelWarn
		start := time.Now()
		srv, err := temporaldev.Start(ctx, cfg)
		if err != nil {
			return err
		}
		ready.Store(true)
		fmt.Fprintf(os.Stdout, "Temporal is ready in %s: frontend %s, namespace %s, Web UI %s\n",
			time.Since(start).Round(time.Millisecond), srv.FrontendAddress(), cfg.Namespace, srv.UIAddress())
		<-ctx.Done()
		return srv.Stop()
	})
}
