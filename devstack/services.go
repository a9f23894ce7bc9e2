package devstack

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"lethe.dev/devstack/temporaldev"
	"lethe.dev/services/fulfillment"
	"lethe.dev/services/gateway"
	"lethe.dev/services/identity"
	"lethe.dev/services/preferences"
	"lethe.dev/services/sharing"
)

// ServiceInfo describes one deployable binary for checks against docker-compose.yml.
type ServiceInfo struct {
	Name      string
	ListenEnv string
	newConfig func() interface{ RegisterFlags(*flag.FlagSet) }
}

// Snapshot renders the configuration the binary would read with env set on top of the
// current environment, so a check can tell whether a variable is read at all.
func (s ServiceInfo) Snapshot(t testing.TB, env map[string]string) string {
	t.Helper()
	saved := map[string]*string{}
	for k, v := range env {
		if old, ok := os.LookupEnv(k); ok {
			saved[k] = &old
		} else {
			saved[k] = nil
		}
		os.Setenv(k, v)
	}
	defer func() {
		for k, v := range saved {
			if v == nil {
				os.Unsetenv(k)
			} else {
				os.Setenv(k, *v)
			}
		}
	}()
	cfg := s.newConfig()
	parse(cfg)
	return fmt.Sprintf("%+v", cfg)
}

// PlatformEnv are the variables every Lethe binary reads outside its Config: transport
// security (platform/transport), logging (platform/run) and the migration switch
// (platform/app).
var PlatformEnv = map[string]bool{
	"LETHE_SERVICE_TOKEN": true, "LETHE_TLS_CERT": true, "LETHE_TLS_KEY": true, "LETHE_TLS_CA": true,
	"LETHE_LOG_LEVEL": true, "LETHE_LOG_FORMAT": true, "LETHE_MIGRATE_ONLY": true,
}

// Temporal describes cmd/lethe-temporal, the Temporal server deployments run.
func Temporal() ServiceInfo {
	return ServiceInfo{"temporal", "TEMPORAL_PORT", func() interface{ RegisterFlags(*flag.FlagSet) } { return &temporaldev.Config{} }}
}

// Services lists every Lethe binary.
func Services() []ServiceInfo {
	return []ServiceInfo{
		{"identity", "IDENTITY_LISTEN", func() interface{ RegisterFlags(*flag.FlagSet) } { return &identity.Config{} }},
		{"preferences", "PREFERENCES_LISTEN", func() interface{ RegisterFlags(*flag.FlagSet) } { return &preferences.Config{} }},
		{"sharing", "SHARING_LISTEN", func() interface{ RegisterFlags(*flag.FlagSet) } { return &sharing.Config{} }},
		{"fulfillment", "FULFILLMENT_LISTEN", func() interface{ RegisterFlags(*flag.FlagSet) } { return &fulfillment.Config{} }},
		{"gateway", "GATEWAY_LISTEN", func() interface{ RegisterFlags(*flag.FlagSet) } { return &gateway.Config{} }},
	}
}
