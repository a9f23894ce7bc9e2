package temporaldev_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	enums "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"lethe.dev/devstack/temporaldev"
	"lethe.dev/devstack/temporaldev/temporaldevtest"
)

func greet(ctx workflow.Context, name string) (string, error) { return "hello " + name, nil }

func TestServerRunsWorkflowsServesUIAndSurvivesRestart(t *testing.T) {
	runsAndSurvivesRestart(t, temporaldev.Config{DataDir: t.TempDir()})
}

// TestServerOnPostgres is the same on PostgreSQL: the schema is set up on a fresh pair of
// databases by the server's own tools, the namespace and search attributes are
// registered through the API, and a restart (schema already there, namespace already
// registered) keeps the open workflow.
func TestServerOnPostgres(t *testing.T) {
	base := os.Getenv("LETHE_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("PostgreSQL tests skipped: set LETHE_TEST_POSTGRES_URL")
	}
	pgURL := temporaldevtest.DatabaseURL(t, base)
	runsAndSurvivesRestart(t, temporaldev.Config{PostgresURL: pgURL})
}

func runsAndSurvivesRestart(t *testing.T, cfg temporaldev.Config) {
	ctx := context.Background()
	cfg.SearchAttributes = map[string]enums.IndexedValueType{"LetheRequestKind": enums.INDEXED_VALUE_TYPE_KEYWORD, "LetheDueTime": enums.INDEXED_VALUE_TYPE_DATETIME}
	began := time.Now()
	srv, err := temporaldev.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first start (schema set up, namespace registered) took %s", time.Since(began).Round(time.Millisecond))
	t.Cleanup(func() { _ = srv.Stop() })

	c, err := client.Dial(client.Options{HostPort: srv.FrontendAddress(), Namespace: "lethe"})
	if err != nil {
		t.Fatal(err)
	}
	w := worker.New(c, "tq", worker.Options{})
	w.RegisterWorkflow(greet)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "greet-1", TaskQueue: "tq"}, greet, "lethe")
	if err != nil {
		t.Fatal(err)
	}
	var got string
	if err := run.Get(ctx, &got); err != nil || got != "hello lethe" {
		t.Fatalf("workflow = %q, %v", got, err)
	}

	sa, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: "lethe"})
	if err != nil {
		t.Fatal(err)
	}
	if sa.GetCustomAttributes()["LetheRequestKind"] != enums.INDEXED_VALUE_TYPE_KEYWORD || sa.GetCustomAttributes()["LetheDueTime"] != enums.INDEXED_VALUE_TYPE_DATETIME {
		t.Fatalf("custom search attributes = %v", sa.GetCustomAttributes())
	}

	resp, err := http.Get(srv.UIAddress() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(strings.ToLower(string(body)), "<html") {
		t.Fatalf("UI answered %d with %.80q", resp.StatusCode, body)
	}

	// A workflow left open before a restart is still there afterwards.
	if _, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "open-1", TaskQueue: "nobody-polls"}, greet, "x"); err != nil {
		t.Fatal(err)
	}
	w.Stop()
	c.Close()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	cfg.UIPort = -1
	began = time.Now()
	srv2, err := temporaldev.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("restart on the same data: %v", err)
	}
	t.Logf("restart took %s", time.Since(began).Round(time.Millisecond))
	t.Cleanup(func() { _ = srv2.Stop() })
	c2, err := client.Dial(client.Options{HostPort: srv2.FrontendAddress(), Namespace: "lethe"})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	d, err := c2.DescribeWorkflowExecution(dctx, "open-1", "")
	if err != nil {
		t.Fatalf("workflow started before restart: %v", err)
	}
	if d.GetWorkflowExecutionInfo().GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Fatalf("status after restart = %v", d.GetWorkflowExecutionInfo().GetStatus())
	}
}
