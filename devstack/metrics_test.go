//go:build linux

package devstack_test

import (
	"bufio"
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	tclient "go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/types/known/durationpb"

	"lethe.dev/devstack"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/platform/temporalclient"
	"lethe.dev/platform/transport"
)

// scrape is one /metrics answer: every series (the line without its value) → value.
type scrape map[string]float64

func scrapeMetrics(t *testing.T, admin string) (scrape, string) {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	series := scrape{}
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
	return series, all.String()
}

// sum adds every series of metric whose labels contain all of labels.
func (s scrape) sum(metric string, labels ...string) (float64, bool) {
	total, found := 0.0, false
next:
	for k, v := range s {
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

// names is every metric name in the scrape (histograms by their series names).
func (s scrape) names() map[string]bool {
	out := map[string]bool{}
	for k := range s {
		if i := strings.IndexByte(k, '{'); i >= 0 {
			k = k[:i]
		}
		out[k] = true
	}
	return out
}

// TestDomainMetrics runs the journeys behind each domain metric on one dev stack and
// requires each metric to move by what happened, read from the admin listener before and
// after (the registry is the process's, so earlier stacks in this binary count too):
//   - an export: lethe_export_archive_size_bytes grows by exactly the archive's size, and
//     lethe_export_downloaded_bytes_total by exactly the bytes downloaded;
//   - an erasure reaching two processors: one calls back after 200 ms, so
//     lethe_onward_erasure_ack_latency_seconds records one acknowledgement of at least
//     that; the other never answers, so lethe_onward_erasure_breaches counts it at its
//     3-second deadline;
//   - a member whose address the relay refuses: lethe_mail_deliveries_total counts the
//     failed attempt (outcome retry), the outbox holds it as pending and its oldest
//     pending age is positive, while the other mail counts as sent.
//
// Then every metric the alerting rules and the dashboard use must be in the scrape
// (TestRulesAndDashboardUseExportedMetrics reads them from the files).
func TestDomainMetrics(t *testing.T) {
	relay := newSMTPRelay(t, "bounce@example.com")
	env := map[string]string{
		"FULFILLMENT_COOLING_OFF": "0s", "FULFILLMENT_ONWARD_POLL_INTERVAL": "500ms",
		"IDENTITY_SMTP_ADDR": relay.lis.Addr().String(), "IDENTITY_SMTP_FROM": "privacy@lethe.test",
	}
	for k, v := range env {
		t.Setenv(k, v) // restored after the test: later stacks in this binary mail to the file again
	}
	s, err := devstack.Start(t.Context(), devstack.Options{DataDir: t.TempDir(), UIPort: -1, Env: env})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	admin := "http://" + s.Addresses["admin"]
	before, _ := scrapeMetrics(t, admin)

	c := client{t, "http://" + s.Addresses["gateway"]}
	conn, err := transport.FromEnv().Dial(s.Addresses["sharing"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sh := sharingv1.NewSharingServiceClient(conn)
	good, silent := newProcessor(t, true), newProcessor(t, false)
	for _, pr := range []struct {
		id       string
		p        *processor
		deadline time.Duration
	}{{"acme-pay", good, 72 * time.Hour}, {"silent-ads", silent, 3 * time.Second}} {
		if _, err := sh.CreatePartner(t.Context(), &sharingv1.CreatePartnerRequest{PartnerId: pr.id, Partner: &sharingv1.Partner{
			DisplayName: pr.id, Kind: sharingv1.PartnerKind_PARTNER_KIND_PROCESSOR, Purposes: []string{"payment_processing"},
			DataCategories: []string{"user.financial"}, AgreementRef: "DPA-" + pr.id, ErasureWebhookUrl: pr.p.srv.URL + "/erase",
			WebhookSecret: pr.p.secret, AckDeadline: durationpb.New(pr.deadline)}}); err != nil {
			t.Fatal(err)
		}
	}
	m := c.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": "Mary Jackson", "email": "mary@example.com", "birthDate": "1971-04-09"},
		"password": "wind tunnel engineer", "requestId": "signup-mj"})
	name := m["name"].(string)
	tok := c.must("POST", "/v1/auth:signIn", "", map[string]any{"email": "mary@example.com", "password": "wind tunnel engineer"})["accessToken"].(string)
	for _, p := range []string{"acme-pay", "silent-ads"} {
		if res, err := sh.AuthorizeDisclosure(t.Context(), &sharingv1.AuthorizeDisclosureRequest{Member: name, Partner: "partners/" + p, Purpose: "payment_processing",
			DataCategories: []string{"user.financial"}, RequestId: "pay-" + p}); err != nil || !res.GetAllowed() {
			t.Fatalf("disclosure to %s: %v %v", p, res, err)
		}
	}

	// An export, downloaded once.
	ex := c.must("POST", "/v1/"+name+"/privacyRequests?requestId=export-mj", tok, map[string]any{"kind": "REQUEST_KIND_ACCESS"})
	c.awaitState(ex["name"].(string), tok, "REQUEST_STATE_COMPLETED")
	link := c.must("GET", "/v1/"+ex["name"].(string)+"/exportDownload", tok, nil)["downloadUri"].(string)
	code, archive := download(t, c, link, "")
	if code != 200 || len(archive) == 0 {
		t.Fatalf("download: %d, %d bytes", code, len(archive))
	}

	// The erasure, watched by an operator (it ends the member's sessions).
	er := c.must("POST", "/v1/"+name+"/privacyRequests?requestId=erase-mj", tok, map[string]any{"kind": "REQUEST_KIND_ERASURE"})
	opTok := c.must("POST", "/v1/operators:signIn", "", map[string]any{"email": s.Operator.Email, "password": s.Operator.Password, "totpCode": s.Operator.TOTPCode(time.Now())})["accessToken"].(string)
	c.awaitState(er["name"].(string), opTok, "REQUEST_STATE_COMPLETED")

	// A workflow whose first workflow task panics, on a worker of this test: Temporal's
	// SDK counts the failed task (what LetheWorkflowTaskFailures alerts on) and the retry
	// completes it.
	failingWorkflowTask(t, s.TemporalAddress)

	// A refused address: a second sign-up with it mails its owner, and the relay refuses.
	for _, rid := range []string{"signup-b1", "signup-b2"} {
		c.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": "Bounce Back", "email": "bounce@example.com", "birthDate": "1990-01-01"},
			"password": "a long enough password", "requestId": rid})
	}
	var after scrape
	var all string
	if err := pollUntil(30*time.Second, func() bool {
		after, all = scrapeMetrics(t, admin)
		n, _ := after.sum("lethe_mail_deliveries_total", `outcome="retry"`)
		b, _ := before.sum("lethe_mail_deliveries_total", `outcome="retry"`)
		return n > b
	}); err != nil {
		t.Fatalf("no failed delivery counted within 30 s (the relay refused %d)\n%s", relay.refused, grepLethe(all))
	}
	delta := func(metric string, labels ...string) float64 {
		a, _ := after.sum(metric, labels...)
		b, _ := before.sum(metric, labels...)
		return a - b
	}
	value := func(metric string, labels ...string) float64 {
		v, ok := after.sum(metric, labels...)
		if !ok {
			t.Errorf("%s%v is not exported", metric, labels)
		}
		return v
	}

	if n, sum := delta("lethe_export_archive_size_bytes_count"), delta("lethe_export_archive_size_bytes_sum"); n != 1 || sum != float64(len(archive)) {
		t.Errorf("export archives: %v built, %v bytes; want 1 of %d bytes", n, sum, len(archive))
	}
	if got := delta("lethe_export_downloaded_bytes_total"); got != float64(len(archive)) {
		t.Errorf("downloaded bytes: %v, want %d", got, len(archive))
	}
	ack := []string{`partner="acme-pay"`}
	if n, sum := delta("lethe_onward_erasure_ack_latency_seconds_count", ack...), delta("lethe_onward_erasure_ack_latency_seconds_sum", ack...); n != 1 || sum < 0.2 || sum > 60 {
		t.Errorf("acme-pay acknowledgements: %v in %v s; want 1 taking 0.2 s to a minute (it calls back after 200 ms)", n, sum)
	}
	if n := delta("lethe_onward_erasure_ack_latency_seconds_count", `partner="silent-ads"`); n != 0 {
		t.Errorf("silent-ads never acknowledged, yet %v acknowledgements were measured", n)
	}
	if v := value("lethe_onward_erasures", `partner="acme-pay"`, `state="ACKNOWLEDGED"`); v != 1 {
		t.Errorf("acme-pay's acknowledged onward erasures: %v, want 1", v)
	}
	if v := value("lethe_onward_erasures", `partner="silent-ads"`, `state="SENT"`); v != 1 {
		t.Errorf("silent-ads's unacknowledged onward erasures: %v, want 1", v)
	}
	if v := value("lethe_onward_erasure_breaches", `partner="silent-ads"`); v != 1 {
		t.Errorf("silent-ads breaches: %v, want 1", v)
	}
	if _, ok := after.sum("lethe_onward_erasure_breaches", `partner="acme-pay"`); ok {
		t.Error("acme-pay acknowledged in time, yet a breach is counted")
	}
	if v := value("lethe_privacy_requests_breached", `kind="ERASURE"`); v != 1 {
		t.Errorf("breached erasures: %v, want 1 (the processor's missed deadline)", v)
	}
	if d := delta("temporal_workflow_task_execution_failed", `workflow_type="MetricsTestPanicOnce"`, `task_queue="metrics-test"`); d < 1 {
		t.Errorf("failed workflow tasks of MetricsTestPanicOnce: %v, want at least the panic", d)
	}
	if d := delta("lethe_mail_deliveries_total", `outcome="sent"`); d < 2 {
		t.Errorf("mail sent: %v, want the export's and the erasure's messages", d)
	}
	if d := delta("lethe_mail_deliveries_total", `outcome="dead_letter"`); d != 0 {
		t.Errorf("%v messages dead-lettered already; the first retry is 5 s away", d)
	}
	if v := value("lethe_mail_outbox", `state="pending"`); v != 1 {
		t.Errorf("pending mail: %v, want the refused message", v)
	}
	if v := value("lethe_mail_outbox", `state="dead"`); v != 0 {
		t.Errorf("dead-lettered mail: %v, want 0", v)
	}
	if age := value("lethe_mail_outbox_oldest_pending_age_seconds"); age <= 0 || age > 60 {
		t.Errorf("oldest pending mail age: %v s, want a few seconds", age)
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", grepLethe(all))
	}
	for _, pii := range []string{"mary@example.com", "bounce@example.com", "Jackson"} {
		if strings.Contains(all, pii) {
			t.Errorf("metrics hold personal data %q", pii)
		}
	}

	t.Run("rules and dashboard use exported metrics", func(t *testing.T) {
		checkMetricNames(t, after.names())
	})
}

var panicked atomic.Bool

// MetricsTestPanicOnce panics in its first workflow task in this process and completes
// in the retry.
func MetricsTestPanicOnce(ctx workflow.Context) error {
	if panicked.CompareAndSwap(false, true) {
		panic("a bug in workflow code")
	}
	return nil
}

// failingWorkflowTask runs MetricsTestPanicOnce to completion on a worker with the
// platform's Temporal client (so its SDK metrics reach the process's registry).
func failingWorkflowTask(t *testing.T, address string) {
	t.Helper()
	panicked.Store(false)
	c, err := temporalclient.Dial(address, "lethe", slog.New(slog.DiscardHandler)) // the panic is expected
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := worker.New(c, "metrics-test", worker.Options{})
	w.RegisterWorkflow(MetricsTestPanicOnce)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, tclient.StartWorkflowOptions{ID: "metrics-test-panic-once", TaskQueue: "metrics-test"}, MetricsTestPanicOnce)
	if err != nil {
		t.Fatal(err)
	}
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("the workflow did not complete after its failed task: %v", err)
	}
}
