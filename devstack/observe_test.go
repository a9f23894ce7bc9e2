package devstack_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"lethe.dev/devstack"
)

// TestObservability runs one member's erasure through the dev stack with an in-memory
// span exporter installed, then requires (1) the erasure's trace, started by the caller's
// traceparent, to run gateway → fulfillment → workflow → activities → each service's
// erase RPC under that one trace id, with no personal data in any span attribute; (2) the
// admin listener to answer /livez and /readyz; (3) /metrics to hold gRPC, HTTP, Temporal
// SDK and domain metrics with plausible values.
func TestObservability(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev); tp.Shutdown(context.Background()) })

	s, err := devstack.Start(t.Context(), devstack.Options{DataDir: t.TempDir(), UIPort: -1, Env: map[string]string{"FULFILLMENT_COOLING_OFF": "0s"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	c := client{t, "http://" + s.Addresses["gateway"]}
	const email, fullName = "ada.lovelace@example.com", "Augusta Ada King"
	m := c.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": fullName, "email": email, "birthDate": "1985-12-10"}, "password": "analytical engine", "requestId": "signup-obs"})
	name := m["name"].(string)
	tok := c.must("POST", "/v1/auth:signIn", "", map[string]any{"email": email, "password": "analytical engine"})["accessToken"].(string)

	// The caller's trace: the gateway must continue it, not start another.
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest("POST", c.base+"/v1/"+name+"/privacyRequests?requestId=erase-obs", strings.NewReader(`{"kind":"REQUEST_KIND_ERASURE"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("file erasure: %d %s", resp.StatusCode, body)
	}
	reqName := strings.Split(strings.Split(string(body), `"name":"`)[1], `"`)[0]
	// The erasure ends the member's sessions: an operator watches it finish.
	opTok := c.must("POST", "/v1/operators:signIn", "", map[string]any{"email": s.Operator.Email, "password": s.Operator.Password, "totpCode": s.Operator.TOTPCode(time.Now())})["accessToken"].(string)
	c.awaitState(reqName, opTok, "REQUEST_STATE_COMPLETED")

	const eraseRPC = "lethe.subject.v1.DataSubjectService/EraseSubjectData"
	t.Run("one trace from the gateway to every service's erase", func(t *testing.T) {
		want := map[string]func(string) bool{
			"gateway":         func(n string) bool { return strings.HasPrefix(n, "POST ") && strings.Contains(n, "privacyRequests") },
			"fulfillment API": func(n string) bool { return n == "lethe.fulfillment.v1.FulfillmentService/CreatePrivacyRequest" },
			"workflow":        func(n string) bool { return strings.HasPrefix(n, "RunWorkflow:") },
			"activity":        func(n string) bool { return strings.HasPrefix(n, "RunActivity:") },
			"erase":           func(n string) bool { return n == eraseRPC },
		}
		var names []string
		err := pollUntil(30*time.Second, func() bool {
			names = names[:0]
			for _, sp := range spans.GetSpans() {
				if sp.SpanContext.TraceID().String() == traceID {
					names = append(names, sp.Name)
				}
			}
			for _, ok := range want {
				if !anyOf(names, ok) {
					return false
				}
			}
			return true
		})
		if err != nil {
			for what, ok := range want {
				if !anyOf(names, ok) {
					t.Errorf("trace %s has no %s span", traceID, what)
				}
			}
			t.Fatalf("spans in the trace: %v", names)
		}
		// Each service's erase is a server span in the trace, told apart by its port.
		erased := map[string]bool{}
		for _, sp := range spans.GetSpans() {
			if sp.SpanContext.TraceID().String() != traceID || sp.Name != eraseRPC || sp.SpanKind != trace.SpanKindServer {
				continue
			}
			for _, a := range sp.Attributes {
				if a.Key == "server.port" {
					for _, svc := range []string{"identity", "preferences", "sharing"} {
						if strings.HasSuffix(s.Addresses[svc], ":"+a.Value.Emit()) {
							erased[svc] = true
						}
					}
				}
			}
		}
		for _, svc := range []string{"identity", "preferences", "sharing"} {
			if !erased[svc] {
				t.Errorf("no %s server span in trace %s (found %v)", eraseRPC, traceID, erased)
			}
		}
		for _, sp := range spans.GetSpans() {
			for _, a := range sp.Attributes {
				v := strings.ToLower(a.Value.Emit())
				for _, pii := range []string{email, strings.ToLower(fullName), "lovelace", "1985-12-10"} {
					if strings.Contains(v, pii) {
						t.Errorf("span %q attribute %s holds personal data: %q", sp.Name, a.Key, v)
					}
				}
			}
		}
	})

	admin := "http://" + s.Addresses["admin"]
	t.Run("livez and readyz", func(t *testing.T) {
		for _, p := range []string{"/livez", "/readyz"} {
			resp, err := http.Get(admin + p)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("%s: %d", p, resp.StatusCode)
			}
		}
	})

	t.Run("metrics", func(t *testing.T) {
		resp, err := http.Get(admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		series := map[string]float64{} // metric line without value → value
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var all strings.Builder
		for sc.Scan() {
			line := sc.Text()
			all.WriteString(line + "\n")
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			i := strings.LastIndexByte(line, ' ')
			v, _ := strconv.ParseFloat(line[i+1:], 64)
			series[line[:i]] = v
		}
		// sum of every series of a metric whose labels contain all of labels.
		sum := func(metric string, labels ...string) (float64, bool) {
			total, found := 0.0, false
		next:
			for k, v := range series {
				if k != metric && !strings.HasPrefix(k, metric+"{") {
					continue
				}
				for _, l := range labels {
					if !strings.Contains(k, l) {
						continue next
					}
				}
				total, found = total+v, true
			}
			return total, found
		}
		checks := []struct {
			what   string
			metric string
			labels []string
			min    float64
		}{
			{"gRPC server calls to fulfillment", "rpc_server_call_duration_seconds_count", []string{`rpc_method="lethe.fulfillment.v1.FulfillmentService/CreatePrivacyRequest"`, `rpc_response_status_code="OK"`}, 1},
			{"gRPC server erase calls", "rpc_server_call_duration_seconds_count", []string{`rpc_method="lethe.subject.v1.DataSubjectService/EraseSubjectData"`}, 3},
			{"gRPC client calls", "rpc_client_call_duration_seconds_count", nil, 3},
			{"gateway HTTP requests", "http_server_request_duration_seconds_count", []string{`http_route=`, `http_response_status_code="200"`}, 3},
			{"Temporal SDK workflow end-to-end latencies", "temporal_workflow_endtoend_latency_seconds_count", []string{`workflow_type="PrivacyRequest"`}, 1},
			{"Temporal SDK activity latencies", "temporal_activity_execution_latency_seconds_count", nil, 3},
			{"completed erasures", "lethe_privacy_requests", []string{`kind="ERASURE"`, `state="COMPLETED"`}, 1},
			{"time to completion by kind", "lethe_privacy_request_completion_seconds_count", []string{`kind="ERASURE"`}, 1},
			{"requests at risk", "lethe_privacy_requests_at_risk", nil, 0},
			{"requests overdue", "lethe_privacy_requests_overdue", nil, 0},
		}
		for _, c := range checks {
			v, ok := sum(c.metric, c.labels...)
			if !ok || v < c.min {
				t.Errorf("%s: %s%v = %v (found %v), want ≥ %v", c.what, c.metric, c.labels, v, ok, c.min)
			}
		}
		if t.Failed() {
			t.Logf("scrape:\n%s", grepLethe(all.String()))
		}
		for _, pii := range []string{email, "lovelace", "Augusta"} {
			if strings.Contains(strings.ToLower(all.String()), strings.ToLower(pii)) {
				t.Errorf("metrics hold personal data %q", pii)
			}
		}
	})
}

func grepLethe(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "#") && (strings.HasPrefix(l, "lethe_") || strings.HasPrefix(l, "rpc_") || strings.HasPrefix(l, "http_") || strings.HasPrefix(l, "temporal_")) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func anyOf(names []string, ok func(string) bool) bool {
	for _, n := range names {
		if ok(n) {
			return true
		}
	}
	return false
}

func pollUntil(limit time.Duration, ok func() bool) error {
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			return context.DeadlineExceeded
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}
