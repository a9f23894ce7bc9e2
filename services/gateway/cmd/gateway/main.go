// Command gateway serves Lethe's JSON/REST API (grpc-gateway) in front of the gRPC
// services, with the OpenAPI document at /openapi.json.
package main

import (
	"context"
	"flag"
	"log/slog"
	"net"

	"lethe.dev/platform/run"
	"lethe.dev/services/gateway"
)

func main() {
	run.Main("gateway", func(ctx context.Context, logger *slog.Logger) error {
		var cfg gateway.Config
		cfg.RegisterFlags(flag.CommandLine)
		flag.Parse()
		if err := cfg.Validate(); err != nil {
			return err
		}
		g, err := gateway.New(ctx, cfg, logger)
		if err != nil {
			return err
		}
		defer g.Close()
		lis, err := net.Listen("tcp", cfg.ListenAddr)
		if err != nil {
			return err
		}
		logger.Info("serving", "http", lis.Addr().String())
		return g.Serve(ctx, lis)
	})
}
