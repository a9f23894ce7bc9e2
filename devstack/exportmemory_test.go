//go:build linux

package devstack_test

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"lethe.dev/devstack/internal/figures"
	"lethe.dev/devstack/temporaldev"
	"lethe.dev/platform/storage"
	"lethe.dev/services/fulfillment"
)

// peakRSS reads a process's peak resident set size (VmHWM) in bytes.
func peakRSS(t testing.TB, pid int) int64 { t.Helper(); return procStatus(t, pid, "VmHWM:") }

// procStatus reads one size field of /proc/PID/status in bytes.
func procStatus(t testing.TB, pid int, field string) int64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// resetPeakRSS starts a new peak: writing 5 to clear_refs resets VmHWM to the current RSS.
func resetPeakRSS(t testing.TB, pid int) {
	t.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		t.Fatal(err)
	}
}

// services runs identity, preferences, sharing, fulfillment and the gateway as their
// own binaries (as production does) on SQLite in one data directory against temporal,
// and returns the processes by name and the gateway's address.
func services(t *testing.T, temporal string) (map[string]*exec.Cmd, string, string) {
	t.Helper()
	bin := t.TempDir()
	pkgs := []string{"identity", "preferences", "sharing", "fulfillment", "gateway"}
	args := []string{"build", "-o", bin + "/"}
	for _, p := range pkgs {
		args = append(args, "lethe.dev/services/"+p+"/cmd/"+p)
	}
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// Ports are picked by binding and releasing them, so a test running beside this one
	// can take one before its service binds it: a start that meets "address already in
	// use" is retried on fresh ports.
	for attempt := 1; ; attempt++ {
		procs, gateway, dir, retry := startServices(t, bin, pkgs, temporal)
		if !retry {
			return procs, gateway, dir
		}
		if attempt == 3 {
			t.Fatal("the services met ports already in use three times")
		}
	}
}

// startServices starts the service binaries once; retry is true when one of them could
// not bind its port (the processes are then stopped again).
func startServices(t *testing.T, bin string, pkgs []string, temporal string) (map[string]*exec.Cmd, string, string, bool) {
	dir := t.TempDir()
	addr := map[string]string{}
	for _, n := range []string{"identity", "preferences", "sharing", "fulfillment", "fulfillment-http", "gateway"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr[n] = l.Addr().String()
		l.Close()
	}
	env := []string{"LETHE_DATA_DIR=" + dir, "TEMPORAL_ADDRESS=" + temporal, "TEMPORAL_NAMESPACE=lethe", "LETHE_LOG_LEVEL=warn",
		"LETHE_SERVICE_TOKEN=" + strings.Repeat("t0ken", 10), "FULFILLMENT_COOLING_OFF=0s", "GATEWAY_SENSITIVE_PER_MINUTE=100000",
		// The Go runtime's soft memory limit, as docs/services.md recommends for every
		// service, so freed heap goes back to the system sooner (docs/performance.md).
		"GOMEMLIMIT=48MiB",
		"IDENTITY_ADDRESS=" + addr["identity"], "PREFERENCES_ADDRESS=" + addr["preferences"], "SHARING_ADDRESS=" + addr["sharing"],
		"FULFILLMENT_ADDRESS=" + addr["fulfillment"], "FULFILLMENT_HTTP_ADDRESS=http://" + addr["fulfillment-http"],
		"FULFILLMENT_HTTP_LISTEN=" + addr["fulfillment-http"], "SHARING_PUBLIC_URL=http://" + addr["gateway"], "DRP_API_BASE=http://" + addr["gateway"] + "/drp"}
	for _, p := range pkgs[:4] {
		env = append(env, strings.ToUpper(p)+"_DATABASE_URL=sqlite:"+filepath.Join(dir, p+".db"))
	}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !strings.Contains(k, "_") || strings.HasPrefix(k, "GO") || k == "HOME" || k == "PATH" || k == "TMPDIR" {
			env = append(env, kv)
		}
	}
	procs := map[string]*exec.Cmd{}
	var stops []func(report bool)
	stopAll := func(report bool) {
		for _, stop := range stops {
			stop(report)
		}
	}
	for _, p := range pkgs {
		cmd := exec.Command(filepath.Join(bin, p))
		cmd.Env = append(append([]string{}, env...), strings.ToUpper(p)+"_LISTEN="+addr[p])
		log, _ := os.Create(filepath.Join(dir, p+".log"))
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		stops = append(stops, func(report bool) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			log.Close()
			if report && t.Failed() {
				raw, _ := os.ReadFile(log.Name())
				if len(raw) > 2000 {
					raw = raw[len(raw)-2000:]
				}
				t.Logf("%s log (tail):\n%s", p, raw)
			}
		})
		procs[p] = cmd
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if resp, err := http.Get("http://" + addr["gateway"] + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		for _, p := range pkgs {
			if raw, _ := os.ReadFile(filepath.Join(dir, p+".log")); strings.Contains(string(raw), "address already in use") {
				stopAll(false)
				return nil, "", "", true
			}
		}
		if time.Now().After(deadline) {
			t.Cleanup(func() { stopAll(true) })
			t.Fatal("the services did not come up in 2 minutes")
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Cleanup(func() { stopAll(true) })
	return procs, "http://" + addr["gateway"], dir, false
}

// TestExportMemoryIsFlat exports viewing histories of 10^4 and 10^6 events through the
// service binaries running as their own OS processes (Temporal runs in the test) and
// requires the peak RSS of the exporting processes — preferences, which streams the
// history, and fulfillment, whose worker writes the parts and the encrypted archive —
// to stay under 100 MiB during each export: the history moves a chunk at a time from
// the database to the archive, never whole. The rows are bulk-inserted straight into
// preferences' SQLite file (one INSERT … SELECT).
func TestExportMemoryIsFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("exports a million rows through the service binaries")
	}
	const limit = 100 << 20
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts, err := temporaldev.Start(ctx, temporaldev.Config{DataDir: t.TempDir(), IP: "127.0.0.1", UIPort: -1, Namespace: "lethe", SearchAttributes: fulfillment.SearchAttributes})
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Stop()
	procs, gateway, dir := services(t, ts.FrontendAddress())
	a := api{gateway}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "preferences.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var lines []string
	for _, n := range []int{10_000, 1_000_000} {
		name, tok := a.signUp(t, fmt.Sprintf("flat-%d@example.com", n), "a long enough password")
		member := strings.TrimPrefix(name, "members/")
		began := time.Now()
		bulkHistory(t, db, storage.SQLite, member, n)
		seeded := time.Since(began)
		idle := map[string]int64{}
		for _, p := range []string{"preferences", "fulfillment"} {
			resetPeakRSS(t, procs[p].Process.Pid)
			idle[p] = procStatus(t, procs[p].Process.Pid, "VmRSS:")
		}
		began = time.Now()
		req := a.must(t, "POST", "/v1/"+name+"/privacyRequests?requestId=flat-"+strconv.Itoa(n), tok, map[string]any{"kind": "REQUEST_KIND_ACCESS"})
		deadline := time.Now().Add(10 * time.Minute)
		var got map[string]any
		for {
			_, got, _ = a.call("GET", "/v1/"+req["name"].(string), tok, nil)
			if got["state"] == "REQUEST_STATE_COMPLETED" || got["state"] == "REQUEST_STATE_FAILED" || time.Now().After(deadline) {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		took := time.Since(began)
		if got["state"] != "REQUEST_STATE_COMPLETED" {
			t.Fatalf("export of %d events: %v", n, got)
		}
		// Every event is in the archive: the archive step counts the records it wrote.
		var archived int64
		for _, st := range got["progress"].([]any) {
			if st := st.(map[string]any); st["step"] == "archive" {
				archived, _ = strconv.ParseInt(fmt.Sprint(st["count"]), 10, 64)
			}
		}
		if archived < int64(n) {
			t.Fatalf("the archive holds %d records, want at least %d: %v", archived, n, got["progress"])
		}
		line := fmt.Sprintf("%9d events: export %s (%.0f events/s end to end), seeded in %s; peak RSS", n, took.Round(time.Millisecond), float64(n)/took.Seconds(), seeded.Round(time.Millisecond))
		for _, p := range []string{"preferences", "fulfillment"} {
			peak := peakRSS(t, procs[p].Process.Pid)
			line += fmt.Sprintf(" %s %.1f MiB (%.1f before the export)", p, float64(peak)/(1<<20), float64(idle[p])/(1<<20))
			if peak > limit {
				t.Errorf("exporting %d events took %s's peak RSS to %.1f MiB (limit %d MiB)", n, p, float64(peak)/(1<<20), limit>>20)
			}
		}
		lines = append(lines, line)
	}
	figures.Report(t, "export memory:\n  %s", strings.Join(lines, "\n  "))
}
