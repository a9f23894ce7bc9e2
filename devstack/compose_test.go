package devstack_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"lethe.dev/devstack"
)

// composeFile is the subset of docker-compose.yml the test reads.
type composeFile struct {
	Services map[string]struct {
		Image string `yaml:"image"`
		Build *struct {
			Context    string            `yaml:"context"`
			Dockerfile string            `yaml:"dockerfile"`
			Args       map[string]string `yaml:"args"`
		} `yaml:"build"`
		Environment map[string]string `yaml:"environment"`
		Ports       []string          `yaml:"ports"`
		DependsOn   any               `yaml:"depends_on"`
	} `yaml:"services"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var node yaml.Node // yaml.v3 resolves the x-temporal-env anchor and << merges
	if err := yaml.Unmarshal(raw, &node); err != nil {
		t.Fatalf("docker-compose.yml does not parse: %v", err)
	}
	var f composeFile
	if err := node.Decode(&f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return f
}

// TestComposeMatchesWhatTheBinariesRead checks that every Lethe service in
// docker-compose.yml is built from the Dockerfile with its own cmd, publishes the port
// its listen variable names, and sets only environment variables that the service's
// configuration actually reads.
func TestComposeMatchesWhatTheBinariesRead(t *testing.T) {
	f := loadCompose(t)
	for _, name := range []string{"postgres", "temporal", "temporal-ui"} {
		if _, ok := f.Services[name]; !ok {
			t.Errorf("compose lacks %s", name)
		}
	}
	if ui := f.Services["temporal-ui"]; ui.Environment["TEMPORAL_ADDRESS"] != "temporal:7233" {
		t.Errorf("temporal-ui points at %q", ui.Environment["TEMPORAL_ADDRESS"])
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
			listen := c.Environment[svc.ListenEnv]
			_, port, ok := strings.Cut(listen, ":")
			if !ok {
				t.Fatalf("%s=%q has no port", svc.ListenEnv, listen)
			}
			published := false
			for _, p := range c.Ports {
				published = published || strings.HasSuffix(p, ":"+port)
			}
			if !published {
				t.Errorf("port %s of %s is not published (ports %v)", port, svc.ListenEnv, c.Ports)
			}
			for k, v := range c.Environment {
				// A variable is read when changing its value changes the parsed config.
				if svc.Snapshot(t, map[string]string{k: v}) == svc.Snapshot(t, map[string]string{k: v + "0"}) {
					t.Errorf("%s=%s does not change %s's configuration: the binary does not read it", k, v, svc.Name)
				}
			}
		})
	}
}
