package devstack

import (
	"flag"
	"fmt"
	"os"
	"testing"

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
