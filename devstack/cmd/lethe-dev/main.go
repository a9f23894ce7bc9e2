// Command lethe-dev runs the whole of Lethe on embedded defaults: the embedded Temporal
// server and Web UI, every service on SQLite, the workers and the gateway, with all
// state under one data directory. Ctrl-C shuts it down cleanly.
//
//	go run ./devstack/cmd/lethe-dev [-data data] [-temporal host:port] [-gateway-port 8080 ...]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"text/tabwriter"

	"lethe.dev/devstack"
	"lethe.dev/platform/config"
	"lethe.dev/platform/run"
)

func main() {
	run.Main("lethe-dev", func(ctx context.Context, logger *slog.Logger) error {
		data := flag.String("data", config.Env("LETHE_DATA_DIR", "data"), "directory for all state (LETHE_DATA_DIR)")
		external := flag.String("temporal", config.Env("LETHE_EXTERNAL_TEMPORAL", ""), "use this Temporal frontend instead of the embedded one (LETHE_EXTERNAL_TEMPORAL)")
		o := devstack.DefaultOptions("")
		for _, p := range []struct {
			name string
			port *int
		}{{"temporal", &o.TemporalPort}, {"ui", &o.UIPort}, {"identity", &o.IdentityPort}, {"preferences", &o.PreferencesPort},
			{"sharing", &o.SharingPort}, {"fulfillment", &o.FulfillmentPort}, {"fulfillment-http", &o.FulfillmentHTTP}, {"gateway", &o.GatewayPort}} {
			flag.IntVar(p.port, p.name+"-port", *p.port, p.name+" port (0 picks a free one; -1 disables the Web UI)")
		}
		flag.Parse()
		o.DataDir = *data
		o.ExternalTemporal, o.Logger = *external, logger
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
