package devstack_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"lethe.dev/devstack"
	"lethe.dev/platform/app"
)

// composeService is the part of a docker-compose.yml service the test reads.
type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string            `yaml:"context"`
		Dockerfile string            `yaml:"dockerfile"`
		Args       map[string]string `yaml:"args"`
	} `yaml:"build"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Profiles    []string          `yaml:"profiles"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var node yaml.Node // yaml.v3 resolves the x-* anchors and << merges
	if err := yaml.Unmarshal(raw, &node); err != nil {
		t.Fatalf("docker-compose.yml does not parse: %v", err)
	}
	var f composeFile
	if err := node.Decode(&f); err != nil {
		t.Fatalf("docker-compose.yml (depends_on must use the long form with a condition): %v", err)
	}
	return f
}

// checkEnv fails for every variable in env that the binary does not read: a variable is
// read when changing its value changes the parsed configuration, or when it is one the
// platform reads for every binary (devstack.PlatformEnv).
func checkEnv(t *testing.T, svc devstack.ServiceInfo, env map[string]string) {
	t.Helper()
	for k, v := range env {
		if devstack.PlatformEnv[k] {
			continue
		}
		if k == strings.ToUpper(svc.Name)+"_METRICS_ADDR" {
			// Read by platform/app for every binary, outside its Config.
			var a app.AdminConfig
			fs := flag.NewFlagSet(svc.Name, flag.ContinueOnError)
			t.Setenv(k, v)
			a.RegisterFlags(fs, svc.Name)
			if a.Addr != v {
				t.Errorf("%s=%s is not the admin address %s's binary reads (%q)", k, v, svc.Name, a.Addr)
			}
			continue
		}
		if svc.Snapshot(t, map[string]string{k: v}) == svc.Snapshot(t, map[string]string{k: v + "0"}) {
			t.Errorf("%s=%s does not change %s's configuration: the binary does not read it", k, v, svc.Name)
		}
	}
}

// TestPlatformEnvIsRead keeps devstack.PlatformEnv honest: each name appears in the
// platform package that reads it.
func TestPlatformEnvIsRead(t *testing.T) {
	var src strings.Builder
	for _, f := range []string{"transport/transport.go", "run/run.go", "app/app.go"} {
		raw, err := os.ReadFile(filepath.Join("..", "platform", f))
		if err != nil {
			t.Fatal(err)
		}
		src.Write(raw)
	}
	for k := range devstack.PlatformEnv {
		if !strings.Contains(src.String(), `"`+k+`"`) {
			t.Errorf("%s is listed as read by the platform, but no platform main-loop code names it", k)
		}
	}
}

// TestComposeMatchesWhatTheBinariesRead checks docker-compose.yml: Temporal is the
// project's own lethe-temporal (the server version the code embeds, not the auto-setup
// image); every Lethe service is built from the Dockerfile with its own cmd, sets the
// service credential, sets only variables its binary reads, and serves its admin
// listener on :9100 for Prometheus; only the gateway, the Temporal Web UI and the
// optional ("observe" profile) Prometheus and Grafana are published; mounted files exist;
// every service has a health check and waits for what it needs to be healthy.
func TestComposeMatchesWhatTheBinariesRead(t *testing.T) {
	f := loadCompose(t)
	published := map[string][]string{"gateway": {"8080:8080"}, "temporal": {"8233:8233"}, "prometheus": {"9090:9090"}, "grafana": {"3000:3000"}}
	for name, c := range f.Services {
		if strings.Join(c.Ports, ",") != strings.Join(published[name], ",") {
			t.Errorf("%s publishes %v; only the gateway (8080), the Temporal Web UI (8233), Prometheus (9090) and Grafana (3000) may be published", name, c.Ports)
		}
		if c.Healthcheck == nil || len(c.Healthcheck.Test) < 2 {
			t.Errorf("%s has no health check", name)
		}
		for dep, d := range c.DependsOn {
			if _, ok := f.Services[dep]; !ok || d.Condition != "service_healthy" {
				t.Errorf("%s depends on %s with condition %q; want an existing service and service_healthy", name, dep, d.Condition)
			}
		}
		if (name == "prometheus" || name == "grafana") && strings.Join(c.Profiles, ",") != "observe" {
			t.Errorf("%s must be in the optional profile observe, not %v", name, c.Profiles)
		}
		for _, v := range c.Volumes {
			if src := strings.Split(v, ":")[0]; strings.HasPrefix(src, "./") {
				if _, err := os.Stat(filepath.Join("..", src)); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			}
		}
		if strings.Contains(c.Image, "temporalio/") {
			t.Errorf("%s uses image %s; Temporal runs from the project's lethe-temporal", name, c.Image)
		}
	}

	tc, ok := f.Services["temporal"]
	if !ok || tc.Build == nil || tc.Build.Args["PACKAGE"] != "./devstack/cmd/lethe-temporal" {
		t.Fatalf("temporal must be built from ./devstack/cmd/lethe-temporal: %+v", tc.Build)
	}
	checkEnv(t, devstack.Temporal(), tc.Environment)
	if !strings.Contains(strings.Join(tc.Healthcheck.Test, " "), strings.TrimPrefix(tc.Environment["TEMPORAL_HEALTH_LISTEN"], "0.0.0.0")) {
		t.Errorf("temporal's health check %v does not probe TEMPORAL_HEALTH_LISTEN", tc.Healthcheck.Test)
	}

	for _, svc := range devstack.Services() {
		t.Run(svc.Name, func(t *testing.T) {
			c, ok := f.Services[svc.Name]
			if !ok {
				t.Fatalf("compose lacks service %s", svc.Name)
			}
			if c.Build == nil || c.Build.Args["SERVICE"] != svc.Name {
				t.Fatalf("%s must be built with SERVICE=%s", svc.Name, svc.Name)
			}
			if _, err := os.Stat(filepath.Join("..", c.Build.Dockerfile)); err != nil {
				t.Errorf("Dockerfile: %v", err)
			}
			if _, err := os.Stat(filepath.Join("..", "services", svc.Name, "cmd", svc.Name, "main.go")); err != nil {
				t.Errorf("the Dockerfile builds ./services/%s/cmd/%s: %v", svc.Name, svc.Name, err)
			}
			if tok := c.Environment["LETHE_SERVICE_TOKEN"]; !strings.HasPrefix(tok, "${LETHE_SERVICE_TOKEN:?") {
				t.Errorf("%s must take the service credential from LETHE_SERVICE_TOKEN and refuse to start without it; has %q", svc.Name, tok)
			}
			_, port, ok := strings.Cut(c.Environment[svc.ListenEnv], ":")
			if !ok {
				t.Fatalf("%s=%q has no port", svc.ListenEnv, c.Environment[svc.ListenEnv])
			}
			if !strings.Contains(strings.Join(c.Healthcheck.Test, " "), "127.0.0.1:"+port) {
				t.Errorf("%s's health check %v does not probe its listen port %s", svc.Name, c.Healthcheck.Test, port)
			}
			checkEnv(t, svc, c.Environment)
			if c.Environment[strings.ToUpper(svc.Name)+"_METRICS_ADDR"] != "0.0.0.0:9100" {
				t.Errorf("%s must serve its admin listener on :9100, where deploy/prometheus/prometheus.yml scrapes it", svc.Name)
			}
		})
	}
}
