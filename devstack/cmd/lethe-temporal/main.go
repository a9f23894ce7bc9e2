// Command lethe-temporal runs a single-host Temporal server (the version the services are
// built against) with its Web UI on PostgreSQL, for deployments that run Temporal
// themselves: it creates the databases when missing, sets up or upgrades their schema
// with the server module's own schema tools, starts the server, and registers the lethe
// namespace with fulfillment's search attributes (idempotently) before it reports ready.
//
//	lethe-temporal -postgres postgres://user:pw@host:5432/temporal?sslmode=disable [-ip 0.0.0.0] [-port 7233] [-ui-port 8233]
//
// Every flag has an environment variable (TEMPORAL_POSTGRES_URL, TEMPORAL_IP,
// TEMPORAL_PORT, TEMPORAL_UI_PORT, TEMPORAL_NAMESPACE, TEMPORAL_RETENTION). The
// frontend answers standard gRPC health checks; "ready" is printed once the namespace
// and its search attributes are registered.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"lethe.dev/devstack/temporaldev"
	"lethe.dev/platform/config"
	"lethe.dev/platform/run"
	"lethe.dev/services/fulfillment"
)

func main() {
	run.Main("lethe-temporal", func(ctx context.Context, logger *slog.Logger) error {
		var cfg temporaldev.Config
		flag.StringVar(&cfg.PostgresURL, "postgres", config.Env("TEMPORAL_POSTGRES_URL", ""), "PostgreSQL URL; the database and <database>_visibility hold Temporal's state (TEMPORAL_POSTGRES_URL)")
		flag.StringVar(&cfg.IP, "ip", config.Env("TEMPORAL_IP", "127.0.0.1"), "address to bind (TEMPORAL_IP)")
		flag.IntVar(&cfg.FrontendPort, "port", config.EnvInt("TEMPORAL_PORT", 7233), "frontend gRPC port (TEMPORAL_PORT)")
		flag.IntVar(&cfg.UIPort, "ui-port", config.EnvInt("TEMPORAL_UI_PORT", 8233), "Web UI port; -1 disables it (TEMPORAL_UI_PORT)")
		flag.StringVar(&cfg.Namespace, "namespace", config.Env("TEMPORAL_NAMESPACE", "lethe"), "namespace to register (TEMPORAL_NAMESPACE)")
		flag.DurationVar(&cfg.Retention, "retention", config.EnvDuration("TEMPORAL_RETENTION", 30*24*time.Hour), "retention of closed workflows (TEMPORAL_RETENTION)")
		flag.Parse()
		if cfg.PostgresURL == "" {
			return errors.New("lethe-temporal: set -postgres or TEMPORAL_POSTGRES_URL (postgres://user:pw@host:5432/temporal?sslmode=disable)")
		}
		cfg.SearchAttributes, cfg.Logger, cfg.Level = fulfillment.SearchAttributes, logger, slog.LevelWarn
		start := time.Now()
		srv, err := temporaldev.Start(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stdout, "Temporal is ready in %s: frontend %s, namespace %s, Web UI %s\n",
			time.Since(start).Round(time.Millisecond), srv.FrontendAddress(), cfg.Namespace, srv.UIAddress())
		<-ctx.Done()
		return srv.Stop()
	})
}
