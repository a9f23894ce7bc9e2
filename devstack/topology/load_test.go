//go:build linux

package topology_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	tclient "go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"lethe.dev/devstack/internal/figures"
	"lethe.dev/platform/storage/storagetest"
)

// envInt reads a positive integer setting of the load test.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, v)
	}
	return n
}

// vmHWM reads a process's peak resident set size (VmHWM) in bytes, 0 if it is gone.
func vmHWM(pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpuTime is a process's CPU time so far (user + system), 0 if it is gone.
func cpuTime(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name is in parentheses and may hold spaces: fields follow the last ')'.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)       // utime, field 14
	s, _ := strconv.ParseInt(f[12], 10, 64)       // stime, field 15
	return time.Duration(u+s) * time.Second / 100 // USER_HZ is 100 on Linux
}

// postgresCPU is the CPU time of every PostgreSQL process on the machine (the server is
// shared with whatever else runs here, so this is an upper bound for the test's share).
func postgresCPU() time.Duration {
	entries, _ := os.ReadDir("/proc")
	var total time.Duration
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "postgres" {
			total += cpuTime(pid)
		}
	}
	return total
}

// profile fetches a CPU profile of seconds from each admin listener into dir.
func profile(t *testing.T, admin map[string]string, dir string, seconds int) *sync.WaitGroup {
	var wg sync.WaitGroup
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Error(err)
		return &wg
	}
	for name, addr := range admin {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds))
			if err != nil {
				t.Logf("profile of %s: %v", name, err)
				return
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Logf("profile of %s: %d %s", name, resp.StatusCode, raw)
				return
			}
			if err := os.WriteFile(filepath.Join(dir, name+".cpu.pprof"), raw, 0o644); err != nil {
				t.Error(err)
			}
		}()
	}
	return &wg
}

// settle prepares PostgreSQL the same way before each measured phase: VACUUM ANALYZE of
// the Temporal server's main and visibility databases and of base's (the services'), so
// no phase runs on another's dead rows (autovacuum may be off), then a CHECKPOINT, so
// each starts with the same full-page writes ahead of it rather than wherever the
// server's checkpoint timer happens to be.
func settle(ctx context.Context, temporalURL, base string) error {
	u, err := url.Parse(temporalURL)
	if err != nil {
		return err
	}
	var urls []string
	for _, path := range []string{u.Path, u.Path + "_visibility"} {
		v := *u
		v.Path = path
		urls = append(urls, v.String())
	}
	urls = append(urls, base)
	for i, dsn := range urls {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			return err
		}
		_, err = db.ExecContext(ctx, `VACUUM ANALYZE`)
		if err == nil && i == len(urls)-1 {
			_, err = db.ExecContext(ctx, `CHECKPOINT`)
		}
		db.Close()
		if err != nil {
			return fmt.Errorf("settle PostgreSQL: %w", err)
		}
	}
	return nil
}

// pgBackends maps every PostgreSQL client backend to its database and CPU time so far;
// the server's own processes (WAL writer, checkpointer, ...) are under "(server)".
type pgBackends map[int]struct {
	db  string
	cpu time.Duration
}

// postgresBackends snapshots pgBackends through pg_stat_activity on base's server.
func postgresBackends(ctx context.Context, base string) (pgBackends, error) {
	db, err := sql.Open("pgx", base)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT pid, COALESCE(datname, '(server)') FROM pg_stat_activity`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := pgBackends{}
	for rows.Next() {
		var pid int
		var name string
		if err := rows.Scan(&pid, &name); err != nil {
			return nil, err
		}
		out[pid] = struct {
			db  string
			cpu time.Duration
		}{name, cpuTime(pid)}
	}
	return out, rows.Err()
}

// since sums, by database, the CPU time each backend spent after before (a backend that
// started since counts whole; one that ended since is lost, which pools keep rare).
func (b pgBackends) since(before pgBackends) map[string]time.Duration {
	out := map[string]time.Duration{}
	for pid, now := range b {
		d := now.cpu
		if was, ok := before[pid]; ok && was.db == now.db {
			d -= was.cpu
		}
		out[now.db] += d
	}
	return out
}

// byDatabase formats since's map, the largest first, naming the test's databases by role.
func byDatabase(m map[string]time.Duration, temporalDB string) string {
	names := slices.Collect(maps.Keys(m))
	slices.SortFunc(names, func(a, b string) int { return int(m[b] - m[a]) })
	var parts []string
	for _, n := range names {
		label := n
		switch n {
		case temporalDB:
			label = "temporal"
		case temporalDB + "_visibility":
			label = "temporal visibility"
		}
		if m[n] > 0 {
			parts = append(parts, fmt.Sprintf("%s %.1f", label, m[n].Seconds()))
		}
	}
	return strings.Join(parts, ", ")
}

func sumDurations(m map[string]time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range m {
		sum += d
	}
	return sum
}

// resetHWM starts a new peak: writing 5 to clear_refs resets VmHWM to the current RSS.
// sampleConnections counts PostgreSQL's client connections (every process's, by database)
// five times a second until the returned stop is called, which reports the peak.
func sampleConnections(t *testing.T, base string) (stop func() string) {
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	done, finished := make(chan struct{}), make(chan string)
	go func() {
		peak, at := 0, ""
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			rows, err := db.Query(`SELECT datname, count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY datname ORDER BY datname`)
			if err == nil {
				total, split := 0, []string{}
				for rows.Next() {
					var name string
					var n int
					if rows.Scan(&name, &n) == nil {
						total += n
						split = append(split, fmt.Sprintf("%s %d", name, n))
					}
				}
				rows.Close()
				if total > peak {
					peak, at = total, strings.Join(split, ", ")
				}
			}
			select {
			case <-done:
				db.Close()
				finished <- fmt.Sprintf("%d (%s)", peak, at)
				return
			case <-tick.C:
			}
		}
	}()
	return func() string { close(done); return <-finished }
}

func resetHWM(pid int) { _ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) }

// pool runs fn(0..n-1) on at most size goroutines and returns the first error.
func pool(n, size int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for range min(size, max(n, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// floorStep is one round of an erasure's workflow: the activities and local activities
// one workflow task scheduled together, which the workflow then waited for.
type floorStep struct{ Activities, Local int }

const (
	floorQueue    = "lethe-load-floor"
	floorWorkflow = "LetheLoadFloor"
	floorActivity = "LetheLoadFloorActivity"
)

func trivialActivity(context.Context) error { return nil }

// trivialWorkflow is the Temporal floor: the erasure's rounds of activities, each doing
// nothing, so what it costs is Temporal's own work (and a worker's) per activity.
func trivialWorkflow(ctx workflow.Context, steps []floorStep) error {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: time.Minute})
	for _, s := range steps {
		var fs []workflow.Future
		for range s.Activities {
			fs = append(fs, workflow.ExecuteActivity(actx, floorActivity))
		}
		for range s.Local {
			fs = append(fs, workflow.ExecuteLocalActivity(lctx, trivialActivity))
		}
		for _, f := range fs {
			if err := f.Get(ctx, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// historyShape reads a workflow's history: its events, and its activities grouped by the
// workflow task that scheduled them (local activities are the LocalActivity markers).
func historyShape(ctx context.Context, c tclient.Client, id string) (events int, steps []floorStep, err error) {
	index := map[int64]int{}
	add := func(task int64, local bool) {
		i, ok := index[task]
		if !ok {
			i = len(steps)
			index[task] = i
			steps = append(steps, floorStep{})
		}
		if local {
			steps[i].Local++
		} else {
			steps[i].Activities++
		}
	}
	iter := c.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		e, err := iter.Next()
		if err != nil {
			return 0, nil, err
		}
		events++
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			add(e.GetActivityTaskScheduledEventAttributes().GetWorkflowTaskCompletedEventId(), false)
		case enumspb.EVENT_TYPE_MARKER_RECORDED:
			if a := e.GetMarkerRecordedEventAttributes(); a.GetMarkerName() == "LocalActivity" {
				add(a.GetWorkflowTaskCompletedEventId(), true)
			}
		}
	}
	return events, steps, nil
}

// closeTime waits for a workflow to close and returns when it closed (by the server's
// clock, which is this machine's), or an error if it did not complete.
func closeTime(ctx context.Context, c tclient.Client, id string) (time.Time, error) {
	for {
		err := c.GetWorkflow(ctx, id, "").Get(ctx, nil)
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) && ctx.Err() == nil {
			time.Sleep(100 * time.Millisecond) // not started yet
			continue
		}
		if err != nil {
			return time.Time{}, err
		}
		d, err := c.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			return time.Time{}, err
		}
		return d.GetWorkflowExecutionInfo().GetCloseTime().AsTime(), nil
	}
}

// timing summarizes one kind of work filed at once: throughput from the first filing to
// the last completion, and percentiles of each item's filing-to-completion time.
type timing struct {
	n              int
	span, p50, p99 time.Duration
}

func summarize(started, closed []time.Time) timing {
	first, last := started[0], closed[0]
	var took []time.Duration
	for i := range started {
		if started[i].Before(first) {
			first = started[i]
		}
		if closed[i].After(last) {
			last = closed[i]
		}
		took = append(took, closed[i].Sub(started[i]))
	}
	slices.Sort(took)
	pct := func(p int) time.Duration { return took[(len(took)-1)*p/100].Round(time.Millisecond) }
	return timing{n: len(took), span: last.Sub(first).Round(time.Millisecond), p50: pct(50), p99: pct(99)}
}

func (s timing) rate() float64 { return float64(s.n) / s.span.Seconds() }

func (s timing) String() string {
	return fmt.Sprintf("%d in %s = %.1f/s; filing to completion p50 %s, p99 %s", s.n, s.span, s.rate(), s.p50, s.p99)
}

func loadAverage() string {
	raw, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// TestLoad is the load test on the production topology (Temporal on PostgreSQL, every
// service its own OS process on PostgreSQL): it creates LETHE_LOAD_MEMBERS members
// (10,000) through the public API, then files LETHE_LOAD_ERASURES erasures (1,000) and
// LETHE_LOAD_EXPORTS exports (100) of members with LETHE_LOAD_ITEMS viewing events each
// (10,000, bulk-inserted into preferences' schema) all at once, and prints throughput,
// p50/p99 filing-to-completion time and the peak RSS of every process. Then, on the same
// Temporal server, it runs the Temporal floor: as many trivial workflows as erasures,
// each with the erasure's activities (counted from an erasure's history, in the same
// rounds, doing nothing) on a worker in the test process, and prints the ratio of the
// floor's throughput to the erasures'. Opt-in: LETHE_LOAD=1 (`make load`).
func TestLoad(t *testing.T) {
	if os.Getenv("LETHE_LOAD") != "1" {
		t.Skip("the load test runs with LETHE_LOAD=1 (make load)")
	}
	base := os.Getenv(storagetest.PostgresURLEnv)
	if base == "" {
		t.Skipf("the load test needs PostgreSQL: set %s", storagetest.PostgresURLEnv)
	}
	members, erasures, exports := envInt(t, "LETHE_LOAD_MEMBERS", 10_000), envInt(t, "LETHE_LOAD_ERASURES", 1_000), envInt(t, "LETHE_LOAD_EXPORTS", 100)
	items, conc := envInt(t, "LETHE_LOAD_ITEMS", 10_000), max(1, envInt(t, "LETHE_LOAD_CONCURRENCY", 16))
	if erasures+exports > members || erasures == 0 {
		t.Fatalf("LETHE_LOAD_ERASURES (%d) + LETHE_LOAD_EXPORTS (%d) must be at most LETHE_LOAD_MEMBERS (%d), and erasures at least 1", erasures, exports, members)
	}
	// Many requests at once to one gateway: keep the connections instead of one per call.
	tr := http.DefaultTransport.(*http.Transport)
	idle := tr.MaxIdleConnsPerHost
	tr.MaxIdleConnsPerHost = 2 * (erasures + exports)
	t.Cleanup(func() { tr.MaxIdleConnsPerHost = idle })

	var lines []string
	line := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	t.Cleanup(func() {
		if len(lines) > 0 {
			figures.Report(t, "load on the multi-process topology (Temporal on PostgreSQL):\n  %s", strings.Join(lines, "\n  "))
		}
	})
	mark := func(what string, since time.Time) {
		line("%-58s %s", what, time.Since(since).Round(time.Millisecond))
	}
	hostname, _ := os.Hostname()
	line("machine %s, %d CPUs; load average at start %s", hostname, runtime.NumCPU(), loadAverage())
	tp := startTopology(t, base, []string{"a"}, []string{"a"}, mark)
	g := tp.gateways[0]
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()

	// Members through the public API, a bounded pool at a time (each sign-up hashes a
	// password with argon2id, which is what bounds the rate).
	began := time.Now()
	names := make([]string, members)
	emails := make([]string, members)
	run := random()
	err := pool(members, conc, func(i int) error {
		emails[i] = fmt.Sprintf("load-%d-%s@example.com", i, run)
		code, m := g.do("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": "Load Tester", "email": emails[i], "birthDate": "1990-01-01"},
			"password": "a long enough password", "requestId": fmt.Sprintf("signup-%d-%s", i, run)})
		if code != http.StatusOK {
			return fmt.Errorf("sign-up %d: %d %v", i, code, m)
		}
		names[i] = m["name"].(string)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(began)
	line("%-58s %s (%.1f/s, %d at a time)", fmt.Sprintf("%d members created through the public API", members), took.Round(time.Millisecond), float64(members)/took.Seconds(), conc)

	// Sessions for the members who file requests.
	began = time.Now()
	tokens := make([]string, erasures+exports)
	if err := pool(len(tokens), conc, func(i int) error {
		code, m := g.do("POST", "/v1/auth:signIn", "", map[string]any{"email": emails[i], "password": "a long enough password"})
		if code != http.StatusOK {
			return fmt.Errorf("sign-in %d: %d %v", i, code, m)
		}
		tokens[i] = m["accessToken"].(string)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	mark(fmt.Sprintf("%d members signed in", len(tokens)), began)

	// The exporting members' viewing histories, bulk-inserted into preferences' schema.
	if exports > 0 {
		began = time.Now()
		db, err := sql.Open("pgx", tp.preferencesDB)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var owners []string
		for _, n := range names[erasures : erasures+exports] {
			owners = append(owners, strings.TrimPrefix(n, "members/"))
		}
		start := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
		if _, err := db.ExecContext(ctx, `INSERT INTO viewing_events (id, owner, title_id, view_time, duration_seconds, device_type)
			SELECT m || '-' || lpad(i::text, 7, '0'), m, 'title-' || (i % 500), $3 + i * 1000000, 60, 'tv'
			FROM unnest($1::text[]) AS m, generate_series(0, $2::bigint - 1) AS i`, owners, items, start); err != nil {
			t.Fatalf("seed viewing events: %v", err)
		}
		if _, err := db.ExecContext(ctx, `ANALYZE viewing_events`); err != nil {
			t.Fatal(err)
		}
		mark(fmt.Sprintf("%d viewing events seeded by SQL (%d members × %d)", exports*items, exports, items), began)
	}

	// The SDK logs every activity at debug level: warnings only.
	quiet := tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	c, err := tclient.Dial(tclient.Options{HostPort: tp.temporalAddr, Namespace: "lethe", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// PostgreSQL settled (vacuumed, checkpointed) before the load, as before the floor.
	began = time.Now()
	if err := settle(ctx, tp.temporalDB, base); err != nil {
		t.Fatal(err)
	}
	mark("PostgreSQL vacuumed and checkpointed before the load", began)

	// The peaks so far are the sign-ups'; from here they are the load's.
	procNames := []string{"temporal"}
	pids := map[string]int{"temporal": tp.temporal.cmd.Process.Pid}
	for name, p := range tp.procs {
		procNames = append(procNames, name)
		pids[name] = p.cmd.Process.Pid
	}
	slices.Sort(procNames[1:])
	signupPeak := map[string]int64{}
	cpuBefore := map[string]time.Duration{}
	for _, name := range procNames {
		signupPeak[name] = vmHWM(pids[name])
		resetHWM(pids[name])
		cpuBefore[name] = cpuTime(pids[name])
	}
	pgBefore := postgresCPU()
	temporalDBName := ""
	if u, err := url.Parse(tp.temporalDB); err == nil {
		temporalDBName = strings.TrimPrefix(u.Path, "/")
	}
	backendsBefore, err := postgresBackends(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	// LETHE_LOAD_PROFILE=DIR: CPU profiles of every service during the load.
	profiled := &sync.WaitGroup{}
	if dir := os.Getenv("LETHE_LOAD_PROFILE"); dir != "" {
		profiled = profile(t, tp.admin, dir, envInt(t, "LETHE_LOAD_PROFILE_SECONDS", 15))
	}

	connections := sampleConnections(t, base)
	// Every erasure and export filed at once.
	type filed struct {
		name, receipt string
		started       time.Time
		closed        time.Time
		err           error
	}
	work := make([]filed, erasures+exports)
	var wg sync.WaitGroup
	var refiled atomic.Int64
	loadAtFiling := loadAverage()
	began = time.Now()
	for i := range work {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kind, rid := "REQUEST_KIND_ERASURE", fmt.Sprintf("load-erase-%d-%s", i, run)
			if i >= erasures {
				kind, rid = "REQUEST_KIND_ACCESS", fmt.Sprintf("load-export-%d-%s", i, run)
			}
			work[i].started = time.Now()
			code, m := g.do("POST", "/v1/"+names[i]+"/privacyRequests?requestId="+rid, tokens[i], map[string]any{"kind": kind})
			// A filing refused for now (503: every workflow start slot taken, a backend or
			// the database out of connections under this burst) or not answered in time
			// (504) is filed again with the same requestId, which makes it the same
			// request, as a client would; its time still counts from the first attempt.
			for try := 0; (code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout) && try < 10; try++ {
				refiled.Add(1)
				time.Sleep(time.Second)
				code, m = g.do("POST", "/v1/"+names[i]+"/privacyRequests?requestId="+rid, tokens[i], map[string]any{"kind": kind})
			}
			if code != http.StatusOK {
				work[i].err = fmt.Errorf("filing %s for %s: %d %v", kind, names[i], code, m)
				return
			}
			work[i].name, _ = m["name"].(string)
			work[i].receipt, _ = m["receiptToken"].(string)
		}()
	}
	wg.Wait()
	mark(fmt.Sprintf("%d erasures and %d exports filed at once (%d filings again after a 503 or 504)", erasures, exports, refiled.Load()), began)
	for _, w := range work {
		if w.err != nil {
			// The cause is in the services' logs (t.TempDir, gone after the test): show
			// their ends, and who held PostgreSQL's connections.
			for _, name := range slices.Sorted(maps.Keys(tp.procs)) {
				t.Logf("%s log, last lines:\n%s", name, tp.procs[name].tail())
			}
			t.Logf("peak PostgreSQL client connections so far: %s", connections())
			t.Fatal(w.err)
		}
	}
	// Completion: each request's workflow closing, timed by the server's close time.
	for i := range work {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kind := "erasure"
			if i >= erasures {
				kind = "access"
			}
			work[i].closed, work[i].err = closeTime(ctx, c, "privacy-request/"+kind+"/"+strings.TrimPrefix(names[i], "members/"))
		}()
	}
	wg.Wait()
	for i, w := range work {
		if w.err != nil {
			t.Fatalf("request %d (%s) did not complete: %v", i, w.name, w.err)
		}
	}
	loadPeak := map[string]int64{}
	cpuLoad := map[string]time.Duration{}
	for _, name := range procNames {
		loadPeak[name] = vmHWM(pids[name])
		cpuLoad[name] = cpuTime(pids[name]) - cpuBefore[name]
	}
	pgLoad := postgresCPU() - pgBefore
	backendsAfter, err := postgresBackends(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	pgLoadByDB := backendsAfter.since(backendsBefore)
	pgLoadByDB["(other PostgreSQL processes and ended backends)"] = pgLoad - sumDurations(pgLoadByDB)
	line("peak PostgreSQL client connections during the load (max_connections is shared): %s", connections())
	loadSpan := time.Since(began)
	profiled.Wait()
	// Every erasure has its receipt, public with its token; every export is completed
	// with every event in its archive.
	if err := pool(erasures, conc, func(i int) error {
		w := work[i]
		code, rc := g.do("POST", "/v1/receipts/"+w.name[strings.LastIndex(w.name, "/")+1:]+":fetch", "", map[string]any{"receiptToken": w.receipt})
		// The topology's pools can fill the shared PostgreSQL's connections under this
		// load; a receipt that cannot be read now (503) is asked for again, a missing one
		// (404) fails.
		for try := 0; code == http.StatusServiceUnavailable && try < 10; try++ {
			time.Sleep(time.Second)
			code, rc = g.do("POST", "/v1/receipts/"+w.name[strings.LastIndex(w.name, "/")+1:]+":fetch", "", map[string]any{"receiptToken": w.receipt})
		}
		if code != http.StatusOK {
			return fmt.Errorf("erasure %s: receipt %d %v", w.name, code, rc)
		}
		if i == 0 {
			return g.verifyReceipt(rc)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := pool(exports, conc, func(j int) error {
		i := erasures + j
		code, got := g.do("GET", "/v1/"+work[i].name, tokens[i], nil)
		for try := 0; code == http.StatusServiceUnavailable && try < 10; try++ { // as for receipts
			time.Sleep(time.Second)
			code, got = g.do("GET", "/v1/"+work[i].name, tokens[i], nil)
		}
		if got["state"] != "REQUEST_STATE_COMPLETED" {
			return fmt.Errorf("export %s: %v", work[i].name, got)
		}
		progress, _ := got["progress"].([]any)
		for _, st := range progress {
			if st, _ := st.(map[string]any); st["step"] == "archive" {
				if n, _ := strconv.Atoi(fmt.Sprint(st["count"])); n < items {
					return fmt.Errorf("export %s: the archive holds %d records, want at least %d", work[i].name, n, items)
				}
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	split := func(ws []filed) (s, c []time.Time) {
		for _, w := range ws {
			s, c = append(s, w.started), append(c, w.closed)
		}
		return s, c
	}
	erased := summarize(split(work[:erasures]))
	line("load average when filing %s, after completion %s", loadAtFiling, loadAverage())
	line("erasures: %s", erased)
	if exports > 0 {
		exported := summarize(split(work[erasures:]))
		line("exports of %d events: %s (%.0f events/s)", items, exported, exported.rate()*float64(items))
	}

	// The floor: the erasure's activities in the erasure's rounds, doing nothing.
	events, steps, err := historyShape(ctx, c, "privacy-request/erasure/"+strings.TrimPrefix(names[0], "members/"))
	if err != nil {
		t.Fatal(err)
	}
	acts, locals := 0, 0
	var shape []string
	for _, s := range steps {
		acts, locals = acts+s.Activities, locals+s.Local
		shape = append(shape, fmt.Sprintf("%d+%dL", s.Activities, s.Local))
	}
	line("an erasure's history: %d events, %d activities and %d local activities in %d rounds [%s]", events, acts, locals, len(steps), strings.Join(shape, " "))

	// Both phases start from the same state of PostgreSQL (settle).
	began = time.Now()
	if err := settle(ctx, tp.temporalDB, base); err != nil {
		t.Fatal(err)
	}
	mark("PostgreSQL vacuumed and checkpointed before the floor", began)

	w := worker.New(c, floorQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(trivialWorkflow, workflow.RegisterOptions{Name: floorWorkflow})
	w.RegisterActivityWithOptions(trivialActivity, activity.RegisterOptions{Name: floorActivity})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	resetHWM(pids["temporal"])
	temporalBeforeFloor, testBeforeFloor, pgBeforeFloor := cpuTime(pids["temporal"]), cpuTime(os.Getpid()), postgresCPU()
	backendsBeforeFloor, err := postgresBackends(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	floor := make([]filed, erasures)
	loadAtFloor := loadAverage()
	if dir := os.Getenv("LETHE_LOAD_PROFILE"); dir != "" && tp.admin["temporal"] != "" { // the server during the floor
		profiled = profile(t, map[string]string{"temporal-floor": tp.admin["temporal"]}, dir, envInt(t, "LETHE_LOAD_PROFILE_SECONDS", 15))
		defer profiled.Wait()
	}
	var floorRestarts atomic.Int64
	for i := range floor {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("load-floor/%s/%d", run, i)
			floor[i].started = time.Now()
			// Started as the erasures' filings are: a start the burst keeps past the SDK's
			// deadline (or refused for now) is sent again; the id is never reused, so a
			// start that did get through is not run twice.
			opts := tclient.StartWorkflowOptions{ID: id, TaskQueue: floorQueue, WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE}
			for try := 0; ; try++ {
				_, err := c.ExecuteWorkflow(ctx, opts, floorWorkflow, steps)
				var already *serviceerror.WorkflowExecutionAlreadyStarted
				if err == nil || errors.As(err, &already) {
					break
				}
				var dl *serviceerror.DeadlineExceeded
				var un *serviceerror.Unavailable
				var busy *serviceerror.ResourceExhausted
				if try == 10 || !(errors.As(err, &dl) || errors.As(err, &un) || errors.As(err, &busy) || errors.Is(err, context.DeadlineExceeded)) {
					floor[i].err = err
					return
				}
				floorRestarts.Add(1)
				time.Sleep(time.Second)
			}
			floor[i].closed, floor[i].err = closeTime(ctx, c, id)
		}()
	}
	wg.Wait()
	for i, f := range floor {
		if f.err != nil {
			t.Fatalf("floor workflow %d: %v", i, f.err)
		}
	}
	floorTemporal := vmHWM(pids["temporal"])
	temporalFloorCPU, testFloorCPU, pgFloorCPU := cpuTime(pids["temporal"])-temporalBeforeFloor, cpuTime(os.Getpid())-testBeforeFloor, postgresCPU()-pgBeforeFloor
	backendsAfterFloor, err := postgresBackends(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	pgFloorByDB := backendsAfterFloor.since(backendsBeforeFloor)
	pgFloorByDB["(other PostgreSQL processes and ended backends)"] = pgFloorCPU - sumDurations(pgFloorByDB)
	fl := summarize(split(floor))
	floorEvents, _, err := historyShape(ctx, c, fmt.Sprintf("load-floor/%s/0", run))
	if err != nil {
		t.Fatal(err)
	}
	line("floor (%d trivial workflows, %d events each; load average when started %s; %d starts sent again): %s", erasures, floorEvents, loadAtFloor, floorRestarts.Load(), fl)
	line("erasure throughput %.1f/s vs floor %.1f/s: the floor is %.2f× the erasures' throughput (goal ≤ 1.5×)", erased.rate(), fl.rate(), fl.rate()/erased.rate())
	mib := func(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }
	rss := "peak RSS MiB (VmHWM) during sign-ups / during the load:"
	for _, name := range procNames {
		rss += fmt.Sprintf(" %s %s / %s;", name, mib(signupPeak[name]), mib(loadPeak[name]))
	}
	line("%s temporal during the floor %s", rss, mib(floorTemporal))
	cpu := fmt.Sprintf("CPU seconds during the load (filing to last completion, %s):", loadSpan.Round(time.Millisecond))
	for _, name := range procNames {
		cpu += fmt.Sprintf(" %s %.1f;", name, cpuLoad[name].Seconds())
	}
	line("%s postgres (every process on the machine) %.1f", cpu, pgLoad.Seconds())
	line("CPU seconds during the floor: temporal %.1f; the test process (floor worker) %.1f; postgres (every process) %.1f", temporalFloorCPU.Seconds(), testFloorCPU.Seconds(), pgFloorCPU.Seconds())
	line("PostgreSQL CPU seconds by database, during the load: %s", byDatabase(pgLoadByDB, temporalDBName))
	line("PostgreSQL CPU seconds by database, during the floor: %s", byDatabase(pgFloorByDB, temporalDBName))
	// CPU per request is steadier than throughput on a shared machine (the machine runs
	// near its cores in both phases, so throughput follows it).
	var loadCPU time.Duration
	for _, name := range procNames {
		loadCPU += cpuLoad[name]
	}
	perErasure := (loadCPU + pgLoad).Seconds() / float64(erasures)
	perFloor := (temporalFloorCPU + testFloorCPU + pgFloorCPU).Seconds() / float64(erasures)
	line("CPU per erasure (every process and postgres, exports included) %.0f ms vs per floor workflow (temporal, floor worker, postgres) %.0f ms: %.2f×",
		1000*perErasure, 1000*perFloor, perErasure/perFloor)
}
