// Command gateway serves Lethe's JSON/REST API (grpc-gateway) in front of the gRPC
// services, with the OpenAPI document at /openapi.json.
package main

import (
	"context"
	"flag"
	"log/slog"
	"net"

	"golang.org/x/sync/errgroup"

	"lethe.dev/platform/app"
	"lethe.dev/platform/observe"
	"lethe.dev/platform/run"
	"lethe.dev/services/gateway"
)

func main() {
	run.Main("gateway", func(ctx context.Context, logger *slog.Logger) error {
		var cfg gateway.Config
		cfg.RegisterFlags(flag.CommandLine)
		var admin app.AdminConfig
		admin.RegisterFlags(flag.CommandLine, "gateway")
		flag.Parse()
		if err := cfg.Validate(); err != nil {
			return err
		}
		stopTracing, err := observe.StartTracing(ctx, "gateway")
		if err != nil {
			return err
		}
		defer stopTracing(context.Background())
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
		eg, ctx := errgroup.WithContext(ctx)
		if err := admin.Start(ctx, eg, logger); err != nil {
			return err
		}
		eg.Go(func() error { return g.Serve(ctx, lis) })
		return eg.Wait()
	})
}
