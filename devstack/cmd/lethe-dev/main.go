// Command lethe-dev runs the whole of Lethe on embedded defaults: the embedded Temporal
// server and Web UI, every service on SQLite, the workers and the gateway, with all
// state under one data directory. Ctrl-C shuts it down cleanly.
//
//	go run ./devstack/cmd/lethe-dev [-demo] [-data data] [-temporal host:port | -temporal-postgres URL] [-gateway-port 8080 ...]
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
	"lethe.dev/platform/observe"
	"lethe.dev/platform/run"
	"lethe.dev/platform/transport"
)

func main() {
	run.Main("lethe-dev", func(ctx context.Context, logger *slog.Logger) error {
		data := flag.String("data", config.Env("LETHE_DATA_DIR", "data"), "directory for all state (LETHE_DATA_DIR)")
		external := flag.String("temporal", config.Env("LETHE_EXTERNAL_TEMPORAL", ""), "use this Temporal frontend instead of the embedded one (LETHE_EXTERNAL_TEMPORAL)")
		temporalPG := flag.String("temporal-postgres", config.Env("TEMPORAL_POSTGRES_URL", ""), "run the embedded Temporal on this PostgreSQL database instead of SQLite (TEMPORAL_POSTGRES_URL)")
		o := devstack.DefaultOptions("")
		for _, p := range []struct {
			name string
			port *int
		}{{"temporal", &o.TemporalPort}, {"ui", &o.UIPort}, {"identity", &o.IdentityPort}, {"preferences", &o.PreferencesPort},
			{"sharing", &o.SharingPort}, {"fulfillment", &o.FulfillmentPort}, {"fulfillment-http", &o.FulfillmentHTTP}, {"gateway", &o.GatewayPort}, {"admin", &o.AdminPort}} {
			flag.IntVar(p.port, p.name+"-port", *p.port, p.name+" port (0 picks a free one; -1 disables the Web UI)")
		}
		demo := flag.Bool("demo", false, "seed demo members, partners (a processor with a loopback webhook) and privacy requests in every state through the public APIs; kept in DATA/demo.json")
		flag.BoolVar(&o.Pprof, "pprof", config.Env("LETHE_PPROF", "") == "1", "serve /debug/pprof on the admin port (LETHE_PPROF=1)")
		flag.Parse()
		stopTracing, err := observe.StartTracing(ctx, "dev")
		if err != nil {
			return err
		}
		defer stopTracing(context.Background())
		if *external != "" && *temporalPG != "" {
			return errors.New("lethe-dev: -temporal and -temporal-postgres exclude each other")
		}
		o.DataDir = *data
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
		fmt.Fprintf(w, "\nBootstrap operator (privacy staff; saved in %s):\n", s.OperatorFile)
		fmt.Fprintf(w, "  email\t%s\n  password\t%s\n  TOTP secret\t%s\n", s.Operator.Email, s.Operator.Password, s.Operator.TOTPSecret)
		fmt.Fprintf(w, "  sign in\tPOST /v1/operators:signIn {email, password, totpCode}; a code now: go run ./cmd/lethectl operators code --secret %s\n", s.Operator.TOTPSecret)
		fmt.Fprintf(w, "\nService credential (every internal gRPC call carries it; set LETHE_SERVICE_TOKEN to choose it):\n")
		fmt.Fprintf(w, "  %s\t%s\n", transport.TokenHeader, os.Getenv("LETHE_SERVICE_TOKEN"))
		fmt.Fprintf(w, "  grpcurl\tgrpcurl -plaintext -H '%s: %s' %s lethe.identity.v1.IdentityService/ListMembers\n", transport.TokenHeader, os.Getenv("LETHE_SERVICE_TOKEN"), s.Addresses["identity"])
		gwFlag := ""
		if gw := "http://" + s.Addresses["gateway"]; gw != "http://127.0.0.1:8080" {
			gwFlag = " --gateway " + gw
		}
		fmt.Fprintf(w, "\nlethectl, the operator CLI (go run ./cmd/lethectl --help; cmd/lethectl/README.md):\n")
		fmt.Fprintf(w, "  sign in\tgo run ./cmd/lethectl%s login --credentials %s\n", gwFlag, s.OperatorFile)
		fmt.Fprintf(w, "  the queue\tgo run ./cmd/lethectl requests list --open   (then: requests show NAME, requests extend|hold|release NAME --reason …)\n")
		fmt.Fprintf(w, "  figures\tgo run ./cmd/lethectl stats; partners list\n")
		fmt.Fprintf(w, "  receipts\tgo run ./cmd/lethectl receipt verify receipt.json%s   (no account needed)\n", gwFlag)
		direct := "--direct"
		if a := s.Addresses["fulfillment"]; a != "127.0.0.1:7104" {
			direct = "--fulfillment " + a // an address flag implies --direct
		}
		fmt.Fprintf(w, "  service credential\tLETHE_SERVICE_TOKEN=%s go run ./cmd/lethectl %s requests list   (automation and reads; operators create)\n", os.Getenv("LETHE_SERVICE_TOKEN"), direct)
		w.Flush()
		if *demo {
			fmt.Println("\nSeeding the demo (about 30 s on a fresh data directory)…")
			d, err := devstack.SeedDemo(ctx, s)
			if err != nil {
				return err
			}
			printDemo(d)
		}
		<-ctx.Done()
		logger.Info("shutting down")
		if err := s.Stop(); err != nil {
			return err
		}
		return s.Wait()
	})
}

func printDemo(d *devstack.Demo) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "\nDemo data (kept in demo.json under the data directory):\n")
	for _, m := range d.Members {
		fmt.Fprintf(w, "  member\t%s\t%s\tpassword %q\n", m.Name, m.Email, m.Password)
	}
	for _, p := range d.Partners {
		fmt.Fprintf(w, "  partner\t%s\n", p)
	}
	fmt.Fprintf(w, "  processor webhook\t%s (served by lethe-dev)\n", d.WebhookURL)
	for _, r := range d.Requests {
		fmt.Fprintf(w, "  request\t%s\t%s\t%s\n", r.Name, strings.TrimPrefix(r.State, "REQUEST_STATE_"), r.Note)
	}
	w.Flush()
}
