//go:build linux

package devstack_test

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lethe.dev/devstack/internal/figures"
)

// Crash-test sizes: the operator scenario.
const (
	crashErasures     = 100
	crashExports      = 20
	crashHistoryItems = 300
)

// filer is one client of the crash test: a member and the request it files.
type filer struct {
	email, member, token string
	export               bool
	requestID            string // the client's idempotency key
	name, receiptToken   string // from the first 200
	// sessionEnded: a retry was refused because the member's erasure had already ended
	// their sessions (issue 10: a revoked session is refused within seconds). Such a
	// client cannot re-file, so it never learns a receipt token it missed.
	sessionEnded bool
}

func (f *filer) path() string { return "/v1/" + f.member + "/privacyRequests?requestId=" + f.requestID }

func (f *filer) body() map[string]any {
	if f.export {
		return map[string]any{"kind": "REQUEST_KIND_ACCESS"}
	}
	return map[string]any{"kind": "REQUEST_KIND_ERASURE"}
}

// file files (or re-files) the request; a 200 must agree with every earlier 200.
func (f *filer) file(a api) (bool, error) {
	code, m, err := a.call("POST", f.path(), f.token, f.body())
	if err == nil && code == http.StatusUnauthorized && !f.export && reasonOf(m) == "SESSION_REVOKED" {
		f.sessionEnded = true
		return true, nil
	}
	if err != nil || code != 200 {
		return false, nil // the stack is down or going down: the client retries later
	}
	name, _ := m["name"].(string)
	tok, _ := m["receiptToken"].(string)
	if f.name != "" && (name != f.name || tok != f.receiptToken) {
		return true, fmt.Errorf("a retry of %s answered %s/%q, the first answer was %s/%q", f.requestID, name, tok, f.name, f.receiptToken)
	}
	if !f.export && tok == "" {
		return true, fmt.Errorf("erasure %s answered without a receipt token", f.requestID)
	}
	f.name, f.receiptToken = name, tok
	return true, nil
}

// TestCrashAndRestartLosesNothing is the operator's scenario from issue 12, with lethe-dev
// as its own OS process: 100 erasures and 20 exports (300 history items each) filed at
// once through the gateway, the process SIGKILLed at one moment — during filing, in the
// middle of the workflows, or while archives are being built — restarted on the same
// data, and every client whose filing failed retries with the same request id. Then every
// erasure has completed with a receipt its token fetches and that verifies, every export
// archive holds exactly the 300 history items once each, no member got any mail twice,
// and every erased member is refused at sign-in. It prints how long the stack took to
// drain after the restart.
func TestCrashAndRestartLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs lethe-dev as a process")
	}
	for _, point := range []string{"during-filing", "mid-workflows", "mid-archive"} {
		t.Run(point, func(t *testing.T) { crashAt(t, point) })
	}
}

func crashAt(t *testing.T, point string) {
	p := newProc(t)
	// Every client comes from 127.0.0.1: lift the per-IP limit on filings and sign-ins.
	env := "GATEWAY_SENSITIVE_PER_MINUTE=1000000"
	p.start(env)
	a := api{p.gateway()}

	filers := make([]*filer, crashErasures+crashExports)
	setup := make([]error, len(filers))
	parallel(4, len(filers), func(i int) {
		f := &filer{email: fmt.Sprintf("crash-%s-%03d@example.com", point, i), export: i >= crashErasures, requestID: fmt.Sprintf("%s-%03d", point, i)}
		f.member, f.token, setup[i] = a.trySignUp(f.email, "a long enough password")
		filers[i] = f
	})
	for _, err := range setup {
		if err != nil {
			t.Fatal(err)
		}
	}
	seedHistoryIn(t, p, filers[crashErasures:])

	// File everything at once; kill at the chosen moment.
	var answered atomic.Int64
	var filing sync.WaitGroup
	errs := make(chan error, len(filers))
	filing.Add(1)
	go func() {
		defer filing.Done()
		parallel(16, len(filers), func(i int) {
			ok, err := filers[i].file(a)
			if err != nil {
				errs <- err
			}
			if ok {
				answered.Add(1)
			}
		})
	}()
	fdb := p.db("fulfillment")
	count := func(q string) int {
		var n int
		_ = fdb.QueryRow(q).Scan(&n)
		return n
	}
	archives := func() int {
		zips, _ := filepath.Glob(filepath.Join(p.dir, "fulfillment", "archives", "*", "export.zip"))
		return len(zips)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var now bool
		switch point {
		case "during-filing":
			now = answered.Load() >= int64(len(filers))/3
		case "mid-workflows":
			now = count(`SELECT COUNT(*) FROM requests WHERE state = 5`) >= len(filers)/5
		case "mid-archive":
			now = archives() >= 1
		}
		if now {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the kill moment %s never came", point)
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.kill()
	filing.Wait()
	killedAt := fmt.Sprintf("%d of %d filings answered, %d requests completed, %d of %d archives built",
		answered.Load(), len(filers), count(`SELECT COUNT(*) FROM requests WHERE state = 5`), archives(), crashExports)

	restart := time.Now()
	p.start(env)
	started := time.Since(restart)
	// Every client retries with the same id: those that failed get their answer, those
	// that were answered must get the same one.
	parallel(16, len(filers), func(i int) {
		f := filers[i]
		for try := 0; ; try++ {
			ok, err := f.file(a)
			if err != nil {
				errs <- err
			}
			if ok {
				return
			}
			if try == 50 {
				errs <- fmt.Errorf("filing %s never succeeded after the restart", f.requestID)
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	lastLog := time.Now()
	for {
		open := count(`SELECT COUNT(*) FROM requests WHERE is_open`)
		done := count(`SELECT COUNT(*) FROM requests WHERE state = 5`)
		if open == 0 && done == len(filers) {
			break
		}
		if time.Since(lastLog) > 10*time.Second {
			t.Logf("%s after the restart: %d completed, %d open", time.Since(restart).Round(time.Second), done, open)
			lastLog = time.Now()
		}
		if time.Since(restart) > 4*time.Minute {
			t.Fatalf("4 minutes after the restart: %d open, %d completed of %d", open, done, len(filers))
		}
		time.Sleep(100 * time.Millisecond)
	}
	drained := time.Since(restart)
	if n := count(`SELECT COUNT(*) FROM requests`); n != len(filers) {
		t.Errorf("%d request rows for %d filings", n, len(filers))
	}

	// Erasures: a receipt that verifies, and no sign-in. A client that never saw an answer
	// and whose retry met its ended session has exactly one completed erasure on record.
	missed := 0
	for _, f := range filers[:crashErasures] {
		if f.name == "" && f.sessionEnded {
			missed++
			if n := count(fmt.Sprintf(`SELECT COUNT(*) FROM requests WHERE member_id = '%s' AND state = 5`, strings.TrimPrefix(f.member, "members/"))); n != 1 {
				t.Errorf("%s: %d completed requests, want its one erasure", f.requestID, n)
			}
		} else if err := a.verifyReceipt(t, f.name, f.receiptToken); err != nil {
			t.Error(err)
		}
		if code, _, err := a.call("POST", "/v1/auth:signIn", "", map[string]any{"email": f.email, "password": "a long enough password"}); err != nil || code != http.StatusUnauthorized {
			t.Errorf("erased member %s signs in: %d %v", f.member, code, err)
		}
	}
	// Exports: every history item exactly once.
	for _, f := range filers[crashErasures:] {
		if err := checkArchive(a, f); err != nil {
			t.Error(err)
		}
	}
	// Mail: the confirmation and the export notice once each, nothing twice.
	sent := map[string]int{}
	mb, err := os.Open(filepath.Join(p.dir, "identity", "mailbox.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(mb)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m struct{ To, Subject string }
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		sent[strings.ToLower(m.To)+"\x00"+m.Subject]++
	}
	mb.Close()
	for k, n := range sent {
		if n > 1 {
			t.Errorf("%q was mailed %d times", strings.ReplaceAll(k, "\x00", ": "), n)
		}
	}
	for _, f := range filers {
		subject := "Your account is being erased"
		if f.export {
			subject = "Your data export is ready"
		}
		if sent[f.email+"\x00"+subject] != 1 {
			t.Errorf("%s was sent %q %d times", f.email, subject, sent[f.email+"\x00"+subject])
		}
	}
	figures.Report(t, "kill point %s: killed with %s; restart took %s; drained (all %d requests completed) %s after the restart; %d erasure clients never saw an answer and met their ended session on retry",
		point, killedAt, started.Round(10*time.Millisecond), len(filers), drained.Round(10*time.Millisecond), missed)
}

// parallel runs fn(0..n-1) on workers goroutines.
func parallel(workers, n int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// seedHistoryIn writes the export members' viewing histories into preferences' database
// beside the running process (setup, not the behaviour under test).
func seedHistoryIn(t *testing.T, p *proc, filers []*filer) {
	t.Helper()
	db := p.db("preferences")
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	for _, f := range filers {
		owner := strings.TrimPrefix(f.member, "members/")
		for i := range crashHistoryItems {
			if _, err := tx.Exec(`INSERT INTO viewing_events (id, owner, title_id, view_time, duration_seconds, device_type) VALUES (?, ?, ?, ?, 60, 'tv')`,
				fmt.Sprintf("%s-%04d", owner, i), owner, fmt.Sprintf("title-%d", i), base+int64(i)*1e6); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// checkArchive downloads an export through the gateway and checks its viewing history.
func checkArchive(a api, f *filer) error {
	code, dl, err := a.call("GET", "/v1/"+f.name+"/exportDownload", f.token, nil)
	if err != nil || code != 200 {
		return fmt.Errorf("export %s: no download: %d %v %v", f.requestID, code, dl, err)
	}
	resp, err := httpClient.Get(a.base + dl["downloadUri"].(string))
	if err != nil {
		return err
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		return fmt.Errorf("export %s: %v", f.requestID, err)
	}
	for _, zf := range zr.File {
		if zf.Name != "preferences/viewing_history.json" {
			continue
		}
		rc, _ := zf.Open()
		var items []map[string]any
		err := json.NewDecoder(rc).Decode(&items)
		rc.Close()
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, it := range items {
			b, _ := json.Marshal(it)
			if seen[string(b)] {
				return fmt.Errorf("export %s holds a history item twice", f.requestID)
			}
			seen[string(b)] = true
		}
		if len(items) != crashHistoryItems {
			return fmt.Errorf("export %s holds %d history items, want %d", f.requestID, len(items), crashHistoryItems)
		}
		return nil
	}
	return fmt.Errorf("export %s has no viewing history", f.requestID)
}
