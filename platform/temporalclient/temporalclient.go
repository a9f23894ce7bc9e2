// Package temporalclient connects a service to Temporal with the SDK's environment
// configuration (go.temporal.io/sdk/contrib/envconfig), so Temporal Cloud or a
// TLS-secured cluster works by configuration alone:
//
//	TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE          (also the services' -temporal-* flags)
//	TEMPORAL_API_KEY                              API key (Temporal Cloud); implies TLS
//	TEMPORAL_TLS=true                             TLS with the system roots
//	TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH   mTLS client certificate
//	TEMPORAL_TLS_SERVER_CA_CERT_PATH, TEMPORAL_TLS_SERVER_NAME    private CA, SNI
//	TEMPORAL_GRPC_META_<NAME>                     extra gRPC headers
//	TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE        a TOML profile instead of variables
//	LETHE_TEMPORAL_GRPC_COMPRESSION               none (default) or gzip
//
// The address and namespace given by the service (its flags) win over the profile.
// Every client has the SDK's OpenTelemetry metrics handler and tracing interceptor.
package temporalclient

import (
	"fmt"
	"log/slog"
	"os"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
	tlog "go.temporal.io/sdk/log"
)

// Options returns the client options from the environment (and TEMPORAL_CONFIG_FILE's
// profile, when set), with address and namespace as given.
func Options(address, namespace string, logger *slog.Logger) (client.Options, error) {
	opts, err := envconfig.LoadClientOptions(envconfig.LoadClientOptionsRequest{})
	if err != nil {
		return client.Options{}, fmt.Errorf("temporal client configuration (TEMPORAL_* variables or TEMPORAL_CONFIG_FILE): %w", err)
	}
	if address != "" {
		opts.HostPort = address
	}
	if namespace != "" {
		opts.Namespace = namespace
	}
	if logger != nil {
		opts.Logger = tlog.NewStructuredLogger(logger)
	}
	// SDK metrics go to the process's Prometheus registry (platform/observe), and a
	// request's trace continues through its workflow and activities into each service.
	tracing, err := temporalotel.NewTracingInterceptor(temporalotel.TracerOptions{})
	if err != nil {
		return client.Options{}, err
	}
	opts.MetricsHandler = temporalotel.NewMetricsHandler(temporalotel.MetricsHandlerOptions{})
	opts.Interceptors = append(opts.Interceptors, tracing)
	compression, err := Compression(os.Getenv(CompressionEnv))
	if err != nil {
		return client.Options{}, err
	}
	opts.ConnectionOptions.GrpcCompression = compression
	return opts, nil
}

// CompressionEnv names the gRPC compression of requests to Temporal: "none" (the default)
// or "gzip" (the SDK's own default).
const CompressionEnv = "LETHE_TEMPORAL_GRPC_COMPRESSION"

// Compression parses CompressionEnv's value. Lethe's payloads are opaque ids and its
// histories a few kilobytes, so gzip buys little bandwidth for its CPU on both sides
// (the server decompresses each request and compresses its answer); a deployment that
// pays for the bytes between its workers and Temporal can turn it on.
func Compression(v string) (client.GrpcCompression, error) {
	switch v {
	case "", "none":
		return &client.GrpcCompressionNone{}, nil
	case "gzip":
		return &client.GrpcCompressionGzip{}, nil
	}
	return nil, fmt.Errorf("%s=%q: want none or gzip", CompressionEnv, v)
}

// Dial connects to Temporal as Options configures.
func Dial(address, namespace string, logger *slog.Logger) (client.Client, error) {
	opts, err := Options(address, namespace, logger)
	if err != nil {
		return nil, err
	}
	c, err := client.Dial(opts)
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s: %w", opts.HostPort, err)
	}
	return c, nil
}
