package devstack_test

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"lethe.dev/devstack"
)

const k8sDir = "../deploy/k8s"

// kustomization is the part of kustomization.yaml we use; decoded strictly, so a typo'd
// field fails the test.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Labels     []struct {
		Pairs map[string]string `json:"pairs"`
	} `json:"labels"`
	Resources []string `json:"resources"`
	Images    []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

// manifests holds every object of deploy/k8s, decoded strictly into the Kubernetes API
// types (an unknown or misspelt field fails).
type manifests struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	pdbs        []*policyv1.PodDisruptionBudget
	jobs        []*batchv1.Job
	policies    []*networkingv1.NetworkPolicy
	other       int
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(k8sDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(raw, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && !slices.Contains(k.Resources, b) {
			t.Errorf("%s is not listed in kustomization.yaml", b)
		}
	}
	m := manifests{deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{}}
	for _, res := range k.Resources {
		raw, err := os.ReadFile(filepath.Join(k8sDir, res))
		if err != nil {
			t.Fatalf("kustomization.yaml lists %s: %v", res, err)
		}
		for i, doc := range bytes.Split(raw, []byte("\n---\n")) {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s #%d: %v", res, i, err)
			}
			var obj any
			switch tm.APIVersion + "/" + tm.Kind {
			case "apps/v1/Deployment":
				obj = &appsv1.Deployment{}
			case "v1/Service":
				obj = &corev1.Service{}
			case "policy/v1/PodDisruptionBudget":
				obj = &policyv1.PodDisruptionBudget{}
			case "batch/v1/Job":
				obj = &batchv1.Job{}
			case "networking.k8s.io/v1/NetworkPolicy":
				obj = &networkingv1.NetworkPolicy{}
			case "v1/PersistentVolumeClaim":
				obj = &corev1.PersistentVolumeClaim{}
			case "v1/Namespace":
				obj = &corev1.Namespace{}
			default:
				t.Fatalf("%s #%d: unexpected %s %s", res, i, tm.APIVersion, tm.Kind)
			}
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Fatalf("%s #%d (%s): %v", res, i, tm.Kind, err)
			}
			switch o := obj.(type) {
			case *appsv1.Deployment:
				m.deployments[o.Name] = o
			case *corev1.Service:
				m.services[o.Name] = o
			case *policyv1.PodDisruptionBudget:
				m.pdbs = append(m.pdbs, o)
			case *batchv1.Job:
				m.jobs = append(m.jobs, o)
			case *networkingv1.NetworkPolicy:
				m.policies = append(m.policies, o)
			default:
				m.other++
			}
		}
	}
	return m
}

// envOf renders a container's environment for the configuration check: literal values as
// they are, values from Secrets as a plausible stand-in.
func envOf(t *testing.T, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = "from-secret-" + e.ValueFrom.SecretKeyRef.Key
		case e.ValueFrom != nil:
			t.Errorf("%s: %s takes its value from something other than a Secret", c.Name, e.Name)
		default:
			env[e.Name] = e.Value
		}
	}
	return env
}

func selects(sel map[string]string, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func probePort(p *corev1.Probe) int {
	switch {
	case p == nil:
		return 0
	case p.GRPC != nil:
		return int(p.GRPC.Port)
	case p.HTTPGet != nil:
		return p.HTTPGet.Port.IntValue()
	}
	return 0
}

func portOf(addr string) int {
	_, p, _ := strings.Cut(addr, ":")
	n, _ := strconv.Atoi(p)
	return n
}

// TestKubernetesManifests checks deploy/k8s: every service a Deployment of at least two
// replicas, readiness and liveness probes on its gRPC health (the gateway: /healthz) at
// the port it listens on, the service credential from a Secret, and only environment
// variables its binary reads; a Service and a PodDisruptionBudget for each; a migration
// Job running every database-owning binary with -migrate; NetworkPolicies that deny all
// ingress except to the gateway and from the callers that need each backend.
func TestKubernetesManifests(t *testing.T) {
	m := loadManifests(t)
	for _, svc := range append(devstack.Services(), devstack.Temporal()) {
		t.Run(svc.Name, func(t *testing.T) {
			d, ok := m.deployments[svc.Name]
			if !ok {
				t.Fatalf("no Deployment %s", svc.Name)
			}
			if d.Spec.Selector == nil || !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
				t.Errorf("the Deployment's selector does not select its pods")
			}
			if len(d.Spec.Template.Spec.Containers) != 1 {
				t.Fatalf("want one container, have %d", len(d.Spec.Template.Spec.Containers))
			}
			c := d.Spec.Template.Spec.Containers[0]
			if c.Image != "lethe/"+svc.Name {
				t.Errorf("image %q, want lethe/%s (kustomization.yaml rewrites it)", c.Image, svc.Name)
			}
			env := envOf(t, c)
			checkEnv(t, svc, env)
			// A service address left at its loopback default reaches nothing in a pod.
			if snap := svc.Snapshot(t, env); svc.Name != "temporal" && strings.Contains(snap, "127.0.0.1:") {
				t.Errorf("%s keeps a loopback default address in the cluster: %s", svc.Name, snap)
			}
			if c.ReadinessProbe == nil || c.LivenessProbe == nil {
				t.Fatalf("readiness and liveness probes are required")
			}
			listen := portOf(env[svc.ListenEnv])
			if svc.Name == "temporal" {
				listen, _ = strconv.Atoi(env["TEMPORAL_PORT"])
				if probePort(c.ReadinessProbe) != portOf(env["TEMPORAL_HEALTH_LISTEN"]) || c.ReadinessProbe.HTTPGet == nil {
					t.Errorf("Temporal's readiness must be /healthz on TEMPORAL_HEALTH_LISTEN (ready once the namespace is)")
				}
				if probePort(c.LivenessProbe) != listen || c.LivenessProbe.GRPC == nil {
					t.Errorf("Temporal's liveness must be gRPC health on the frontend port %d", listen)
				}
			} else {
				if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
					t.Errorf("%s runs %v replicas; want at least 2", svc.Name, d.Spec.Replicas)
				}
				if env["LETHE_SERVICE_TOKEN"] != "from-secret-service-token" {
					t.Errorf("LETHE_SERVICE_TOKEN must come from the lethe-secrets Secret")
				}
				for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
					if probePort(p) != listen {
						t.Errorf("a probe checks port %d; %s listens on %d", probePort(p), svc.Name, listen)
					}
					if svc.Name != "gateway" && p.GRPC == nil {
						t.Errorf("probes of %s must be gRPC health checks", svc.Name)
					}
				}
				covered := false
				for _, p := range m.pdbs {
					covered = covered || (p.Spec.Selector != nil && selects(p.Spec.Selector.MatchLabels, d.Spec.Template.Labels))
				}
				if !covered {
					t.Errorf("no PodDisruptionBudget covers %s", svc.Name)
				}
			}
			s, ok := m.services[svc.Name]
			if !ok || !selects(s.Spec.Selector, d.Spec.Template.Labels) {
				t.Fatalf("no Service %s selecting its pods", svc.Name)
			}
			hasPort := false
			for _, p := range s.Spec.Ports {
				hasPort = hasPort || (int(p.Port) == listen && p.TargetPort.IntValue() == listen)
			}
			if !hasPort {
				t.Errorf("Service %s does not expose port %d", svc.Name, listen)
			}
		})
	}

	// The migration Job runs every binary that owns a database with -migrate.
	if len(m.jobs) != 1 {
		t.Fatalf("want one migration Job, have %d", len(m.jobs))
	}
	migrated := map[string]bool{}
	for _, c := range m.jobs[0].Spec.Template.Spec.Containers {
		name := strings.TrimPrefix(c.Image, "lethe/")
		i := slices.IndexFunc(devstack.Services(), func(s devstack.ServiceInfo) bool { return s.Name == name })
		if i < 0 || !slices.Equal(c.Args, []string{"-migrate"}) {
			t.Errorf("migration container %s: image %s args %v", c.Name, c.Image, c.Args)
			continue
		}
		env := envOf(t, c)
		checkEnv(t, devstack.Services()[i], env)
		if env[strings.ToUpper(name)+"_DATABASE_URL"] == "" {
			t.Errorf("migration container %s has no database URL", name)
		}
		migrated[name] = true
	}
	for _, s := range []string{"identity", "preferences", "sharing", "fulfillment"} {
		if !migrated[s] {
			t.Errorf("the migration Job does not migrate %s", s)
		}
	}

	// Only the gateway is reachable from outside; every other ingress rule names callers.
	denyAll := false
	for _, p := range m.policies {
		if len(p.Spec.PodSelector.MatchLabels) == 0 && len(p.Spec.PodSelector.MatchExpressions) == 0 {
			denyAll = denyAll || (len(p.Spec.Ingress) == 0 && slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress))
			continue
		}
		target := p.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"]
		for _, rule := range p.Spec.Ingress {
			if len(rule.From) == 0 && target != "gateway" {
				t.Errorf("NetworkPolicy %s lets anyone reach %s", p.Name, target)
			}
			for _, from := range rule.From {
				if from.PodSelector == nil || from.IPBlock != nil || from.NamespaceSelector != nil {
					t.Errorf("NetworkPolicy %s admits traffic from outside the Lethe pods", p.Name)
				}
			}
		}
	}
	if !denyAll {
		t.Error("no default-deny ingress NetworkPolicy")
	}

	// Every address a Deployment is given (X_ADDRESS=name:port) is one a NetworkPolicy
	// lets its pods reach: otherwise the call is silently dropped in the cluster.
	for caller, d := range m.deployments {
		for k, v := range envOf(t, d.Spec.Template.Spec.Containers[0]) {
			if !strings.HasSuffix(k, "_ADDRESS") {
				continue
			}
			for _, addr := range strings.Split(v, ",") {
				host, port, err := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(addr, "http://"), "https://"))
				if err != nil || m.deployments[host] == nil {
					continue
				}
				if !admits(m.policies, host, caller, port) {
					t.Errorf("%s is given %s=%s, but no NetworkPolicy lets %s reach %s on port %s", caller, k, v, caller, host, port)
				}
			}
		}
	}
}

// admits reports whether a NetworkPolicy lets pods of caller reach target's port.
func admits(policies []*networkingv1.NetworkPolicy, target, caller, port string) bool {
	for _, p := range policies {
		if p.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"] != target {
			continue
		}
		for _, rule := range p.Spec.Ingress {
			from := false
			for _, f := range rule.From {
				from = from || (f.PodSelector != nil && f.PodSelector.MatchLabels["app.kubernetes.io/name"] == caller)
			}
			open := len(rule.Ports) == 0
			for _, rp := range rule.Ports {
				open = open || (rp.Port != nil && rp.Port.String() == port)
			}
			if from && open {
				return true
			}
		}
	}
	return false
}
