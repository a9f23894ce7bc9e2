// Command lethe-probe is the health check shipped in every Lethe image (which has no
// shell or curl): it exits 0 when the target is healthy.
//
//	lethe-probe grpc 127.0.0.1:7101 [service]   standard gRPC health check (SERVING)
//	lethe-probe http http://127.0.0.1:8080/healthz  HTTP 200
//
// gRPC probes use the process's transport settings (LETHE_TLS_*), so they work where the
// server requires TLS; health checks need no service token.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"lethe.dev/platform/transport"
)

func main() {
	if err := probe(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "lethe-probe:", err)
		os.Exit(1)
	}
}

func probe(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: lethe-probe grpc HOST:PORT [SERVICE] | lethe-probe http URL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	switch args[0] {
	case "grpc":
		conn, err := transport.FromEnv().Dial(args[1])
		if err != nil {
			return err
		}
		defer conn.Close()
		req := &healthpb.HealthCheckRequest{}
		if len(args) > 2 {
			req.Service = args[2]
		}
		res, err := healthpb.NewHealthClient(conn).Check(ctx, req)
		if err != nil {
			return err
		}
		if res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("%s is %s", args[1], res.GetStatus())
		}
		return nil
	case "http":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[1], nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s answered %d", args[1], resp.StatusCode)
		}
		return nil
	}
	return fmt.Errorf("unknown probe %q (grpc or http)", args[0])
}
