// Package run is the shared main loop of Lethe binaries: a context cancelled on SIGINT
// or SIGTERM, and one exit path that logs the error.
package run

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"lethe.dev/platform/config"
	"lethe.dev/platform/logging"
)

// Main runs fn with a context that is cancelled on SIGINT or SIGTERM, and exits 1 when
// fn fails. The logger writes text to stderr at LETHE_LOG_LEVEL (default info); set
// LETHE_LOG_FORMAT=json for JSON.
func Main(name string, fn func(ctx context.Context, logger *slog.Logger) error) {
	logger := logging.New(os.Stderr, logging.ParseLevel(config.Env("LETHE_LOG_LEVEL", "info")), config.Env("LETHE_LOG_FORMAT", "text") == "json").With("service", name)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := fn(ctx, logger); err != nil {
		logger.Error("exiting", "err", err)
		stop()
		os.Exit(1)
	}
}
