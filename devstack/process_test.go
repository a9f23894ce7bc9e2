//go:build linux

package devstack_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	tclient "go.temporal.io/sdk/client"
	_ "modernc.org/sqlite" // reads the services' databases after a crash
)

// This file runs lethe-dev as a separate OS process, so crashes are real: SIGKILL, no
// deferred cleanup, restart on the same data directory.

var letheDev struct {
	once      sync.Once
	dir, path string
	err       error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if letheDev.dir != "" {
		os.RemoveAll(letheDev.dir)
	}
	os.Exit(code)
}

// buildLetheDev builds lethe-dev once per test binary, with the lethe_faults tag so
// LETHE_FAULT_INTAKE can crash intake at a chosen step (without it the build behaves
// like the normal one).
func buildLetheDev(t testing.TB) string {
	t.Helper()
	letheDev.once.Do(func() {
		if letheDev.dir, letheDev.err = os.MkdirTemp("", "lethe-dev-bin-"); letheDev.err != nil {
			return
		}
		letheDev.path = filepath.Join(letheDev.dir, "lethe-dev")
		out, err := exec.Command("go", "build", "-tags", "lethe_faults", "-o", letheDev.path, "lethe.dev/devstack/cmd/lethe-dev").CombinedOutput()
		if err != nil {
			letheDev.err = fmt.Errorf("go build lethe-dev: %v\n%s", err, out)
		}
	})
	if letheDev.err != nil {
		t.Fatal(letheDev.err)
	}
	return letheDev.path
}

// proc is lethe-dev running as its own process on ports picked once, so a restart finds
// the same addresses (and the same data directory).
type proc struct {
	t     *testing.T
	bin   string
	dir   string
	ports map[string]int
	cmd   *exec.Cmd
	done  chan struct{}
	log   *os.File
}

func newProc(t *testing.T) *proc {
	t.Helper()
	p := &proc{t: t, bin: buildLetheDev(t), dir: t.TempDir(), ports: map[string]int{}}
	for _, name := range []string{"temporal", "identity", "preferences", "sharing", "fulfillment", "fulfillment-http", "gateway"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p.ports[name] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	var err error
	if p.log, err = os.Create(filepath.Join(p.dir, "lethe-dev.log")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.kill()
		p.log.Close()
		if t.Failed() {
			raw, _ := os.ReadFile(p.log.Name())
			if len(raw) > 8000 {
				raw = raw[len(raw)-8000:]
			}
			t.Logf("lethe-dev output (tail):\n%s", raw)
		}
	})
	return p
}

func (p *proc) gateway() string  { return "http://127.0.0.1:" + strconv.Itoa(p.ports["gateway"]) }
func (p *proc) temporal() string { return "127.0.0.1:" + strconv.Itoa(p.ports["temporal"]) }

// start runs lethe-dev with extra environment and waits until the gateway answers.
func (p *proc) start(env ...string) {
	p.t.Helper()
	// The ports were picked once, and another test process may bind one of them between
	// runs: lethe-dev then exits naming it, and a later attempt may find it free again.
	for attempt := 1; ; attempt++ {
		if p.startOnce(env, attempt == 3) {
			return
		}
		time.Sleep(time.Duration(attempt) * time.Second)
	}
}

// startOnce is one attempt of start; it reports false when lethe-dev exited because a
// picked port was taken and last is false.
func (p *proc) startOnce(env []string, last bool) bool {
	p.t.Helper()
	p.kill() // one process per data directory
	logStart, _ := p.log.Seek(0, io.SeekCurrent)
	args := []string{"-data", p.dir, "-ui-port", "-1"}
	for name, port := range p.ports {
		args = append(args, "-"+name+"-port", strconv.Itoa(port))
	}
	cmd := exec.Command(p.bin, args...)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "LETHE_"), strings.HasPrefix(k, "TEMPORAL_"), strings.HasPrefix(k, "IDENTITY_"), strings.HasPrefix(k, "PREFERENCES_"),
			strings.HasPrefix(k, "SHARING_"), strings.HasPrefix(k, "FULFILLMENT_"), strings.HasPrefix(k, "GATEWAY_"):
			continue // the test decides
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, "FULFILLMENT_COOLING_OFF=0s", "LETHE_LOG_LEVEL=warn")
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = p.log, p.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case <-done:
			raw, _ := os.ReadFile(p.log.Name())
			if !last && int64(len(raw)) > logStart && strings.Contains(string(raw[logStart:]), "picked port was taken") {
				return false
			}
			p.t.Fatalf("lethe-dev exited during start-up: %v", cmd.ProcessState)
		default:
		}
		if resp, err := http.Get(p.gateway() + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return true
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatal("lethe-dev did not come up in 90 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.cmd = nil
}

// awaitExit waits for the process to die by itself (a fault-injected crash).
func (p *proc) awaitExit(d time.Duration) {
	p.t.Helper()
	select {
	case <-p.done:
		p.cmd = nil
	case <-time.After(d):
		p.t.Fatalf("lethe-dev did not crash at the injected fault within %s", d)
	}
}

// db opens a service's SQLite database beside the running process.
func (p *proc) db(service string) *sql.DB {
	p.t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(p.dir, service+".db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { db.Close() })
	return db
}

// workflowRuns counts the runs (open or closed) under a workflow id.
func (p *proc) workflowRuns(workflowID string) int {
	p.t.Helper()
	c, err := tclient.Dial(tclient.Options{HostPort: p.temporal(), Namespace: "lethe"})
	if err != nil {
		p.t.Fatal(err)
	}
	defer c.Close()
	n := 0
	var token []byte
	for {
		res, err := c.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{Query: "WorkflowId = '" + workflowID + "'", NextPageToken: token})
		if err != nil {
			p.t.Fatal(err)
		}
		n += len(res.GetExecutions())
		if token = res.GetNextPageToken(); len(token) == 0 {
			return n
		}
	}
}

// api is a JSON client of the gateway that reports transport failures instead of
// failing the test (filings that meet a crash fail, and clients retry them).
type api struct{ base string }

var httpClient = &http.Client{Timeout: 60 * time.Second}

func (a api) call(method, path, token string, body any) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, a.base+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out, nil
}

func (a api) must(t testing.TB, method, path, token string, body any) map[string]any {
	t.Helper()
	code, m, err := a.call(method, path, token, body)
	if err != nil || code != 200 {
		t.Fatalf("%s %s: %d %v %v", method, path, code, m, err)
	}
	return m
}

// signUp creates a member over the gateway and signs in (a fresh sign-in verifies
// privacy requests at once).
func (a api) signUp(t testing.TB, email, password string) (member, token string) {
	t.Helper()
	m := a.must(t, "POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": "Crash Test", "email": email, "birthDate": "1990-01-01"}, "password": password, "requestId": "signup-" + email})
	tok := a.must(t, "POST", "/v1/auth:signIn", "", map[string]any{"email": email, "password": password})["accessToken"].(string)
	return m["name"].(string), tok
}

// trySignUp is signUp for goroutines: it reports failure instead of failing the test.
func (a api) trySignUp(email, password string) (member, token string, err error) {
	code, m, err := a.call("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": "Crash Test", "email": email, "birthDate": "1990-01-01"}, "password": password, "requestId": "signup-" + email})
	if err != nil || code != 200 {
		return "", "", fmt.Errorf("sign-up: %d %v %v", code, m, err)
	}
	code, s, err := a.call("POST", "/v1/auth:signIn", "", map[string]any{"email": email, "password": password})
	if err != nil || code != 200 {
		return "", "", fmt.Errorf("sign-in: %d %v %v", code, s, err)
	}
	return m["name"].(string), s["accessToken"].(string), nil
}

// verifyReceipt fetches an erasure receipt with its token and checks its signature
// against the published keys.
func (a api) verifyReceipt(t testing.TB, requestName, receiptToken string) error {
	t.Helper()
	id := requestName[strings.LastIndex(requestName, "/")+1:]
	code, rc, err := a.call("POST", "/v1/receipts/"+id+":fetch", "", map[string]any{"receiptToken": receiptToken})
	if err != nil || code != 200 {
		return fmt.Errorf("receipt of %s: %d %v %v", id, code, rc, err)
	}
	keys := a.must(t, "GET", "/v1/receipts:keys", "", nil)
	pub, _ := base64.StdEncoding.DecodeString(keys["keys"].([]any)[0].(map[string]any)["publicKey"].(string))
	payload, _ := base64.StdEncoding.DecodeString(rc["payload"].(string))
	sig, _ := base64.StdEncoding.DecodeString(rc["signature"].(string))
	if !ed25519.Verify(pub, payload, sig) {
		return fmt.Errorf("receipt of %s does not verify", id)
	}
	return nil
}

// TestIntakeConvergesFromEveryCrashPoint kills lethe-dev (SIGKILL, from inside intake)
// right after each step of filing an erasure: after the member check, after the row is
// written, after the workflow is started. The client sees its filing fail, the process
// restarts on the same data, and the client retries with the same request id. Each time:
// exactly one request row, one workflow run, the same receipt token on every answer, and
// the erasure completes with a receipt that token fetches and that verifies.
func TestIntakeConvergesFromEveryCrashPoint(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs lethe-dev as a process")
	}
	p := newProc(t)
	a := api{p.gateway()}
	for _, point := range []string{"member-checked", "row-inserted", "workflow-started"} {
		t.Run(point, func(t *testing.T) {
			p.start("LETHE_FAULT_INTAKE=" + point)
			member, tok := a.signUp(t, point+"@example.com", "a long enough password")
			path := "/v1/" + member + "/privacyRequests?requestId=erase-" + point
			body := map[string]any{"kind": "REQUEST_KIND_ERASURE"}
			if code, m, err := a.call("POST", path, tok, body); err == nil {
				t.Fatalf("the filing was answered (%d %v) although intake crashed", code, m)
			}
			p.awaitExit(30 * time.Second)

			p.start()
			first := a.must(t, "POST", path, tok, body)
			again := a.must(t, "POST", path, tok, body)
			token, _ := first["receiptToken"].(string)
			if token == "" || again["receiptToken"] != token || again["name"] != first["name"] {
				t.Fatalf("retries disagree: %v vs %v", first, again)
			}
			name := first["name"].(string)
			deadline := time.Now().Add(120 * time.Second)
			for {
				err := a.verifyReceipt(t, name, token)
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no receipt 120 s after the retry: %v", err)
				}
				time.Sleep(200 * time.Millisecond)
			}
			var rows int
			if err := p.db("fulfillment").QueryRow(`SELECT COUNT(*) FROM requests WHERE member_id = ?`, strings.TrimPrefix(member, "members/")).Scan(&rows); err != nil {
				t.Fatal(err)
			}
			if runs := p.workflowRuns("privacy-request/erasure/" + strings.TrimPrefix(member, "members/")); rows != 1 || runs != 1 {
				t.Fatalf("after the crash at %s: %d request rows and %d workflow runs, want 1 and 1", point, rows, runs)
			}
			p.kill()
		})
	}
}
