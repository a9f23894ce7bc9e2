//go:build linux

package devstack_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// ruleExprs are the expressions of deploy/prometheus/alerts.yml, by alert.
func ruleExprs(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert, Record, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	out := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out["alert "+r.Alert+r.Record] = r.Expr
		}
	}
	return out
}

// dashboardExprs are the query expressions of deploy/grafana/lethe.json, by panel.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "deploy", "grafana", "lethe.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr, RefID string }
		}
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("lethe.json: %v", err)
	}
	out := map[string]string{}
	for _, p := range d.Panels {
		for i, tg := range p.Targets {
			out["panel "+p.Title+" #"+string(rune('A'+i))] = tg.Expr
		}
	}
	return out
}

var (
	promStrings   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers  = regexp.MustCompile(`\{[^}]*\}`)
	promGrouping  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promRanges    = regexp.MustCompile(`\[[^\]]*\]`)
	promIdent     = regexp.MustCompile(`\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(\s*\()?`)
	promKeywords  = map[string]bool{"and": true, "or": true, "unless": true, "offset": true, "bool": true, "by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true}
	metricPrefixe = []string{"lethe_", "rpc_", "http_", "temporal_"}
)

// metricNames are the metric names a PromQL expression selects: identifiers that are
// not functions, keywords, label names (in matchers and groupings) or strings.
func metricNames(expr string) []string {
	e := promStrings.ReplaceAllString(expr, `""`)
	e = promMatchers.ReplaceAllString(e, " ")
	e = promGrouping.ReplaceAllString(e, " ")
	e = promRanges.ReplaceAllString(e, " ")
	var out []string
	for _, m := range promIdent.FindAllStringSubmatch(e, -1) {
		name := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(m[0]), "("))
		if m[1] != "" || promKeywords[strings.ToLower(name)] {
			continue // a function call or a keyword
		}
		out = append(out, name)
	}
	return out
}

func TestMetricNamesOfAnExpression(t *testing.T) {
	got := metricNames(`sum by (kind, le) (rate(lethe_x_bucket{state="A",b=~"c|d"}[1d])) > max by (kind) (lethe_y offset 10m) or histogram_quantile(0.9, lethe_z) unless on (a) temporal_w_total`)
	want := []string{"lethe_x_bucket", "lethe_y", "lethe_z", "temporal_w_total"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("metricNames = %v, want %v", got, want)
	}
}

// checkMetricNames fails for every metric that an alerting rule or a dashboard panel
// selects but the dev stack does not export after TestDomainMetrics's journeys: a
// renamed metric breaks this test, not a rule in production. Every expression must
// select at least one Lethe, gRPC, HTTP or Temporal metric.
func checkMetricNames(t *testing.T, exported map[string]bool) {
	exprs := ruleExprs(t)
	for k, v := range dashboardExprs(t) {
		exprs[k] = v
	}
	if len(exprs) < 10 {
		t.Fatalf("only %d expressions in the rules and the dashboard", len(exprs))
	}
	var where []string
	for w := range exprs {
		where = append(where, w)
	}
	sort.Strings(where)
	for _, w := range where {
		names := metricNames(exprs[w])
		ours := 0
		for _, n := range names {
			for _, p := range metricPrefixe {
				if strings.HasPrefix(n, p) {
					ours++
				}
			}
			if !exported[n] {
				t.Errorf("%s uses %s, which the dev stack does not export", w, n)
			}
		}
		if ours == 0 {
			t.Errorf("%s selects no Lethe, gRPC, HTTP or Temporal metric: %q", w, exprs[w])
		}
	}
}
