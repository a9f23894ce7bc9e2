package temporalclient_test

import (
	"context"
	"testing"

	"go.temporal.io/sdk/client"

	"lethe.dev/platform/temporalclient"
)

// TestTemporalCloudByConfiguration: an API key and TLS settings in the environment reach
// the client options, and the service's own address and namespace win.
func TestTemporalCloudByConfiguration(t *testing.T) {
	t.Setenv("TEMPORAL_ADDRESS", "from-env:7233")
	t.Setenv("TEMPORAL_NAMESPACE", "from-env")
	t.Setenv("TEMPORAL_API_KEY", "secret-api-key")
	t.Setenv("TEMPORAL_TLS_SERVER_NAME", "lethe.a1b2c.tmprl.cloud")
	t.Setenv("TEMPORAL_GRPC_META_X_TEAM", "privacy")
	opts, err := temporalclient.Options("lethe.a1b2c.tmprl.cloud:7233", "lethe.a1b2c", nil)
	if err != nil {
		t.Fatal(err)
	}
	if opts.HostPort != "lethe.a1b2c.tmprl.cloud:7233" || opts.Namespace != "lethe.a1b2c" {
		t.Fatalf("address %q namespace %q: the service's settings must win", opts.HostPort, opts.Namespace)
	}
	if opts.Credentials == nil {
		t.Fatal("TEMPORAL_API_KEY did not become client credentials")
	}
	if opts.ConnectionOptions.TLS == nil || opts.ConnectionOptions.TLS.ServerName != "lethe.a1b2c.tmprl.cloud" {
		t.Fatalf("TLS = %+v; an API key implies TLS with the configured server name", opts.ConnectionOptions.TLS)
	}
	h, err := opts.HeadersProvider.GetHeaders(context.Background())
	if err != nil || h["x-team"] != "privacy" {
		t.Fatalf("gRPC metadata = %v, %v", h, err)
	}
}

// TestPlainByDefault: without any of it, plaintext to the given address (the dev stack).
func TestPlainByDefault(t *testing.T) {
	opts, err := temporalclient.Options("127.0.0.1:7233", "lethe", nil)
	if err != nil || opts.ConnectionOptions.TLS != nil || opts.Credentials != nil {
		t.Fatalf("plain options: TLS %v credentials %v err %v", opts.ConnectionOptions.TLS, opts.Credentials, err)
	}
}

// TestCompression: requests to Temporal are not compressed unless gzip is asked for, and
// a value that is neither is refused rather than ignored.
func TestCompression(t *testing.T) {
	opts, err := temporalclient.Options("127.0.0.1:7233", "lethe", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := opts.ConnectionOptions.GrpcCompression.(*client.GrpcCompressionNone); !ok {
		t.Fatalf("default compression %T, want none", opts.ConnectionOptions.GrpcCompression)
	}
	t.Setenv(temporalclient.CompressionEnv, "gzip")
	if opts, err = temporalclient.Options("127.0.0.1:7233", "lethe", nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := opts.ConnectionOptions.GrpcCompression.(*client.GrpcCompressionGzip); !ok {
		t.Fatalf("%s=gzip gave %T", temporalclient.CompressionEnv, opts.ConnectionOptions.GrpcCompression)
	}
	t.Setenv(temporalclient.CompressionEnv, "zstd")
	if _, err := temporalclient.Options("127.0.0.1:7233", "lethe", nil); err == nil {
		t.Fatal("an unknown compression was accepted")
	}
}
