// Command lethe-dev runs the whole of Lethe on embedded defaults: the embedded Temporal
// server and Web UI, every service on SQLite, the workers and the gateway, with all
// state under one data directory. Ctrl-C shuts it down cleanly.
//
//	go run ./devstack/cmd/lethe-dev [-data data] [-temporal host:port | -temporal-postgres URL]
//
// A service whose *_DATABASE_URL is set (IDENTITY_DATABASE_URL=postgres://…) runs on
// that database; the others use SQLite under the data directory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"

	"lethe.dev/devstack"
	"lethe.dev/platform/config"
	"lethe.dev/platform/run"
)

func main() {
	run.Main("lethe-dev", func(ctx context.Context, logger *slog.Logger) error {
		data := flag.String("data", config.Env("LETHE_DATA_DIR", "data"), "directory for all state (LETHE_DATA_DIR)")
		external := flag.String("temporal", config.Env("LETHE_EXTERNAL_TEMPORAL", ""), "use this Temporal frontend instead of the embedded one (LETHE_EXTERNAL_TEMPORAL)")
		temporalPG := flag.String("temporal-postgres", config.Env("TEMPORAL_POSTGRES_URL", ""), "run the embedded Temporal on this PostgreSQL database instead of SQLite (TEMPORAL_POSTGRES_URL)")
		flag.Parse()
		if *external != "" && *temporalPG != "" {
			return errors.New("lethe-dev: -temporal and -temporal-postgres exclude each other")
		}
		o := devstack.DefaultOptions(*data)
		o.ExternalTemporal, o.TemporalPostgres, o.Logger = *external, *temporalPG, logger
		o.Env = devstack.DatabaseURLsFromEnv()
		for k, v := range o.Env {
			logger.Info("database from the environment", "variable", k, "engine", strings.SplitN(v, ":", 2)[0])
		}
		s, err := devstack.Start(ctx, o)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintf(w, "Lethe dev stack is up (state in %s). Ctrl-C to stop.\n\n", *data)
		for _, e := range s.Endpoints() {
			fmt.Fprintf(w, "  %s\t%s\n", e[0], e[1])
		}
		w.Flush()
		<-ctx.Done()
		logger.Info("shutting down")
		if err := s.Stop(); err != nil {
			return err
		}
		return s.Wait()
	})
}
