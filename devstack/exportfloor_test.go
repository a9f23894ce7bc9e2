package devstack_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	enumspb "go.temporal.io/api/enums/v1"
	tclient "go.temporal.io/sdk/client"

	"lethe.dev/devstack"
	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	subjectv1 "lethe.dev/gen/lethe/subject/v1"
	"lethe.dev/platform/storage"
	"lethe.dev/platform/storage/storagetest"
)

// bulkHistory writes n viewing events for a member with one INSERT … SELECT (a recursive
// CTE on SQLite, generate_series on PostgreSQL): 10^6 rows in seconds, where one
// statement per row would take minutes.
func bulkHistory(tb testing.TB, db *sql.DB, dialect storage.Dialect, member string, n int) {
	tb.Helper()
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	q := `WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < $1 - 1)
		INSERT INTO viewing_events (id, owner, title_id, view_time, duration_seconds, device_type)
		SELECT $2 || '-' || printf('%07d', i), $2, 'title-' || (i % 500), $3 + i * 1000000, 60, 'tv' FROM c`
	if dialect == storage.Postgres {
		q = `INSERT INTO viewing_events (id, owner, title_id, view_time, duration_seconds, device_type)
		SELECT $2 || '-' || lpad(i::text, 7, '0'), $2, 'title-' || (i % 500), $3 + i * 1000000, 60, 'tv' FROM generate_series(0, $1::bigint - 1) AS i`
	}
	if _, err := db.Exec(q, n, member, base); err != nil {
		tb.Fatalf("seed %d viewing events: %v", n, err)
	}
}

// floorJSON is the raw floor: the same rows with one SQL query, written as JSON lines
// by the simplest Go loop (encoding/json over a struct, buffered file).
func floorJSON(ctx context.Context, db *sql.DB, member, path string) (int, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rows, err := db.QueryContext(ctx, `SELECT id, title_id, view_time, duration_seconds, device_type FROM viewing_events WHERE owner = $1 ORDER BY view_time DESC, id DESC`, member)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	bw := bufio.NewWriter(f)
	enc := json.NewEncoder(bw)
	n := 0
	for rows.Next() {
		var r struct {
			ID       string `json:"id"`
			Title    string `json:"titleId"`
			At       int64  `json:"viewTime"`
			Duration int64  `json:"durationSeconds"`
			Device   string `json:"deviceType"`
		}
		if err := rows.Scan(&r.ID, &r.Title, &r.At, &r.Duration, &r.Device); err != nil {
			return n, err
		}
		if err := enc.Encode(&r); err != nil {
			return n, err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, err
	}
	return n, bw.Flush()
}

// floorCopy is PostgreSQL's own floor: COPY (the same query) TO STDOUT into a file.
func floorCopy(ctx context.Context, db *sql.DB, member, path string) (int, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	bw := bufio.NewWriterSize(f, 64<<10)
	var n int64
	err = conn.Raw(func(dc any) error {
		tag, err := dc.(*stdlib.Conn).Conn().PgConn().CopyTo(ctx, bw,
			`COPY (SELECT id, title_id, view_time, duration_seconds, device_type FROM viewing_events WHERE owner = '`+strings.ReplaceAll(member, "'", "''")+`' ORDER BY view_time DESC, id DESC) TO STDOUT`)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return int(n), err
	}
	return int(n), bw.Flush()
}

// serviceStream consumes preferences' export stream as fulfillment's exporter does,
// writing every record as a JSON line, and counts the viewing-history records.
func serviceStream(ctx context.Context, c subjectv1.DataSubjectServiceClient, member, path string) (int, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	stream, err := c.ExportSubjectData(ctx, &subjectv1.ExportSubjectDataRequest{Subject: "members/" + member, RequestId: "floor-bench"})
	if err != nil {
		return 0, err
	}
	bw := bufio.NewWriterSize(f, 64<<10)
	n := 0
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, err
		}
		for _, rec := range chunk.GetRecords() {
			bw.Write(rec)
			bw.WriteByte('\n')
		}
		if chunk.GetDataset() == "viewing_history" {
			n += len(chunk.GetRecords())
		}
	}
	return n, bw.Flush()
}

// exportEndToEnd files an access request and waits until its archive is written.
func exportEndToEnd(tb testing.TB, s *devstack.Stack, member, requestID string) {
	tb.Helper()
	r, err := s.Fulfillment.API.CreatePrivacyRequest(fresh(), &fulfillmentv1.CreatePrivacyRequestRequest{Parent: "members/" + member, RequestId: requestID,
		PrivacyRequest: &fulfillmentv1.PrivacyRequest{Kind: fulfillmentv1.RequestKind_REQUEST_KIND_ACCESS}})
	if err != nil {
		tb.Fatal(err)
	}
	// Polled through the list, which reads only the database: GetPrivacyRequest would
	// query the running workflow for its progress 100 times a second and slow it down.
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var got *fulfillmentv1.PrivacyRequest
		list, err := s.Fulfillment.API.ListPrivacyRequests(context.Background(), &fulfillmentv1.ListPrivacyRequestsRequest{Parent: "members/" + member, PageSize: 500})
		for _, pr := range list.GetPrivacyRequests() {
			if pr.GetName() == r.GetName() {
				got = pr
			}
		}
		if got.GetState() == fulfillmentv1.RequestState_REQUEST_STATE_COMPLETED {
			return
		}
		if got.GetState() == fulfillmentv1.RequestState_REQUEST_STATE_FAILED || time.Now().After(deadline) {
			tb.Fatalf("export %s: %v %v", r.GetName(), got.GetState(), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// floorRows is the history size of BenchmarkExportFloor (LETHE_BENCH_ROWS overrides).
func floorRows() int {
	if n, err := strconv.Atoi(os.Getenv("LETHE_BENCH_ROWS")); err == nil && n > 0 {
		return n
	}
	return 100_000
}

// BenchmarkExportFloor measures, in one run and on the same rows, the raw floor (one SQL
// query written as JSON lines by the simplest Go loop; COPY … TO STDOUT on PostgreSQL),
// preferences' export stream as fulfillment consumes it, and the end-to-end export into
// the encrypted archive, and reports rows/s and the ratios to the floor. Each leg runs
// three times, alternating, and the fastest counts (the machine is shared). Run with
// -benchtime=1x; PostgreSQL runs when LETHE_TEST_POSTGRES_URL is set.
func BenchmarkExportFloor(b *testing.B) {
	engines := []string{"sqlite"}
	if os.Getenv(storagetest.PostgresURLEnv) != "" {
		engines = append(engines, "postgres")
	}
	for _, engine := range engines {
		b.Run(engine, func(b *testing.B) {
			env := map[string]string{"FULFILLMENT_COOLING_OFF": "0s"}
			if engine == "postgres" {
				env["PREFERENCES_DATABASE_URL"] = storagetest.PostgresSchemaURL(b, os.Getenv(storagetest.PostgresURLEnv))
			}
			s, err := devstack.Start(context.Background(), devstack.Options{DataDir: b.TempDir(), UIPort: -1, Env: env})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Stop() })
			n := floorRows()
			member := newMember(b, s, "floor-"+engine+"@example.com")
			db := s.Preferences.Server.DB
			bulkHistory(b, db.DB, db.Dialect, member, n)
			if db.Dialect == storage.Postgres {
				db.Exec(`ANALYZE viewing_events`)
			}
			dir := b.TempDir()
			ctx := context.Background()
			best := map[string]time.Duration{}
			timed := func(leg string, fn func() (int, error)) {
				start := time.Now()
				got, err := fn()
				d := time.Since(start)
				if err != nil || got != n {
					b.Fatalf("%s: %d rows of %d: %v", leg, got, n, err)
				}
				if old, ok := best[leg]; !ok || d < old {
					best[leg] = d
				}
			}
			for i := 0; b.Loop(); i++ {
				for rep := range 3 {
					timed("floor-json", func() (int, error) { return floorJSON(ctx, db.DB, member, filepath.Join(dir, "floor.jsonl")) })
					if db.Dialect == storage.Postgres {
						timed("floor-copy", func() (int, error) { return floorCopy(ctx, db.DB, member, filepath.Join(dir, "floor.copy")) })
					}
					timed("stream", func() (int, error) {
						return serviceStream(ctx, s.Fulfillment.Activities.Subjects["preferences"], member, filepath.Join(dir, "stream.jsonl"))
					})
					timed("end-to-end", func() (int, error) {
						exportEndToEnd(b, s, member, fmt.Sprintf("floor-%d-%d", i, rep))
						return n, nil
					})
				}
			}
			rate := func(leg string) float64 { return float64(n) / best[leg].Seconds() }
			legs := slices.Sorted(func(yield func(string) bool) {
				for k := range best {
					if !yield(k) {
						return
					}
				}
			})
			var lines []string
			for _, leg := range legs {
				b.ReportMetric(rate(leg), leg+"-rows/s")
				lines = append(lines, fmt.Sprintf("%-10s %8.3f s %10.0f rows/s", leg, best[leg].Seconds(), rate(leg)))
			}
			b.ReportMetric(rate("stream")/rate("floor-json"), "stream/floor")
			b.ReportMetric(rate("end-to-end")/rate("floor-json"), "e2e/floor")
			lines = append(lines, fmt.Sprintf("stream/floor-json %.2f (goal ≥ 0.50), end-to-end/floor-json %.2f (goal ≥ 0.35)",
				rate("stream")/rate("floor-json"), rate("end-to-end")/rate("floor-json")))
			if db.Dialect == storage.Postgres {
				lines = append(lines, fmt.Sprintf("stream/floor-copy %.2f, end-to-end/floor-copy %.2f", rate("stream")/rate("floor-copy"), rate("end-to-end")/rate("floor-copy")))
			}
			b.Logf("%s, %d viewing events, best of 3:\n  %s", engine, n, strings.Join(lines, "\n  "))
			if os.Getenv("LETHE_BENCH_TIMELINE") != "" {
				b.Logf("last end-to-end export's history (ms from the first event):\n  %s", strings.Join(exportTimeline(b, s, member), "\n  "))
			}
		})
	}
}

// exportTimeline lists the events of the member's latest export workflow with their
// offsets from its first event, and the activity each scheduled one runs: where the
// end-to-end time goes (LETHE_BENCH_TIMELINE=1).
func exportTimeline(tb testing.TB, s *devstack.Stack, member string) []string {
	tb.Helper()
	c, err := tclient.Dial(tclient.Options{HostPort: s.TemporalAddress, Namespace: "lethe"})
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	var lines []string
	var first time.Time
	iter := c.GetWorkflowHistory(context.Background(), "privacy-request/access/"+member, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		e, err := iter.Next()
		if err != nil {
			tb.Fatal(err)
		}
		at := e.GetEventTime().AsTime()
		if first.IsZero() {
			first = at
		}
		what := e.GetEventType().String()
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil {
			what += " " + a.GetActivityType().GetName()
		}
		if m := e.GetMarkerRecordedEventAttributes(); m != nil {
			what += " " + m.GetMarkerName()
		}
		lines = append(lines, fmt.Sprintf("%7.1f %s", float64(at.Sub(first).Microseconds())/1000, what))
	}
	return lines
}
