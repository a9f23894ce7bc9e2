// Package observe is what every Lethe binary exposes to its operators besides its API:
// Prometheus metrics (OpenTelemetry instruments exported through a Prometheus registry),
// OpenTelemetry traces (exported by OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set, not at
// all otherwise), W3C trace-context propagation, trace and span ids on every log line, and
// an admin listener with /metrics, /livez, /readyz and, behind a flag, /debug/pprof.
//
// Nothing personal goes into a metric label or a span attribute: labels are kinds,
// states, methods, route templates and status codes, never names or identifiers.
package observe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// Meter is the meter Lethe's own (domain) instruments are created on.
func Meter() metric.Meter { return otel.Meter("lethe.dev") }

// Tracer is the tracer Lethe's own spans are started on.
func Tracer() trace.Tracer { return otel.Tracer("lethe.dev") }

var (
	once     sync.Once
	registry *prometheus.Registry
	initErr  error
)

// Registry returns the process's Prometheus registry, installing on first use a global
// OpenTelemetry meter provider that exports into it and the W3C trace-context
// propagator. Every binary (and a dev stack running all services in one process) has one.
func Registry() (*prometheus.Registry, error) {
	once.Do(func() {
		registry = prometheus.NewRegistry()
		registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		exp, err := otelprom.New(otelprom.WithRegisterer(registry), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
		if err != nil {
			initErr = fmt.Errorf("observe: prometheus exporter: %w", err)
			return
		}
		otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp)))
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	})
	return registry, initErr
}

// StartTracing installs a global tracer provider exporting by OTLP/gRPC when
// OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set; otherwise it
// leaves tracing off (spans are not recorded, trace context still propagates). The
// returned function flushes and stops the exporter.
func StartTracing(ctx context.Context, service string) (func(context.Context) error, error) {
	if _, err := Registry(); err != nil {
		return nil, err
	}
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("observe: OTLP exporter: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName("lethe-"+service)))
	if err != nil {
		res = resource.Default()
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// Check is one readiness check (a database ping, Temporal's health).
type Check struct {
	Name string
	Fn   func(context.Context) error
}

// AdminOptions configure the admin handler.
type AdminOptions struct {
	// Checks must all pass for /readyz to answer 200.
	Checks []Check
	// Pprof serves /debug/pprof/ (off by default: it exposes internals).
	Pprof  bool
	Logger *slog.Logger
}

// AdminHandler serves /metrics, /livez (the process answers), /readyz (every check
// passes within two seconds) and, when asked, /debug/pprof/.
func AdminHandler(o AdminOptions) (http.Handler, error) {
	reg, err := Registry()
	if err != nil {
		return nil, err
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		failed := false
		for _, c := range o.Checks {
			if err := c.Fn(ctx); err != nil {
				failed = true
				logger.Warn("not ready", "check", c.Name, "err", err)
				fmt.Fprintf(w, "%s: not ready\n", c.Name)
				continue
			}
		}
		if failed {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	if o.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux, nil
}

// ServeAdmin serves h on lis until ctx is done.
func ServeAdmin(ctx context.Context, lis net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin listener: %w", err)
	}
	return nil
}

// Pinger is a database handle (*sql.DB, storage.DB).
type Pinger interface {
	PingContext(ctx context.Context) error
}

// DatabaseCheck is ready when the database answers a ping.
func DatabaseCheck(db Pinger) Check { return Check{Name: "database", Fn: db.PingContext} }
