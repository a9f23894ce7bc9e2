//go:build linux

// Package topology_test runs Lethe as production does: Temporal on PostgreSQL from
// lethe-temporal, and every service binary as its own OS process on PostgreSQL, with two
// fulfillment and two gateway replicas that share nothing but the database, the archive
// bucket and the keysets. It kills and restarts replicas for real.
package topology_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	tclient "go.temporal.io/sdk/client"

	"lethe.dev/devstack/internal/figures"
	"lethe.dev/platform/storage/storagetest"
)

var binaries = []string{"lethe.dev/devstack/cmd/lethe-temporal", "lethe.dev/services/identity/cmd/identity", "lethe.dev/services/preferences/cmd/preferences",
	"lethe.dev/services/sharing/cmd/sharing", "lethe.dev/services/fulfillment/cmd/fulfillment", "lethe.dev/services/gateway/cmd/gateway"}

// build compiles every binary into one temporary directory.
func build(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("go", append([]string{"build", "-o", dir + "/"}, binaries...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// process is one running binary; its output goes to a log file kept with the test.
type process struct {
	t    *testing.T
	name string
	bin  string
	env  []string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
	out  *os.File
}

func start(t *testing.T, bin, name string, env map[string]string) *process {
	t.Helper()
	p := &process{t: t, name: name, bin: bin, log: filepath.Join(t.TempDir(), name+".log")}
	p.env = os.Environ()
	for k, v := range env {
		p.env = append(p.env, k+"="+v)
	}
	p.launch()
	t.Cleanup(func() { p.kill(syscall.SIGKILL) })
	return p
}

func (p *process) launch() {
	p.t.Helper()
	out, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	p.out = out
	p.cmd = exec.Command(p.bin)
	p.cmd.Env, p.cmd.Stdout, p.cmd.Stderr = p.env, out, out
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
	p.done = make(chan struct{})
	go func() { _ = p.cmd.Wait(); out.Close(); close(p.done) }()
}

// kill sends sig and waits for the process to exit (SIGTERM: a graceful stop).
func (p *process) kill(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *process) tail() string {
	raw, _ := os.ReadFile(p.log)
	if len(raw) > 3000 {
		raw = raw[len(raw)-3000:]
	}
	return string(raw)
}

// waitFor polls ok until it holds, failing with the process's log when it does not.
func (p *process) waitFor(what string, timeout time.Duration, ok func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		select {
		case <-p.done:
			p.t.Fatalf("%s exited while waiting for %s:\n%s", p.name, what, p.tail())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: no %s after %s:\n%s", p.name, what, timeout, p.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func listening(addr string) func() bool {
	return func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
}

// api talks JSON to one gateway.
type api struct {
	t    *testing.T
	base string
}

func (a api) do(method, path, token string, body any) (int, map[string]any) {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, a.base+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, map[string]any{"transport": err.Error()}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

func (a api) must(method, path, token string, body any) map[string]any {
	a.t.Helper()
	code, m := a.do(method, path, token, body)
	if code != 200 {
		a.t.Fatalf("%s %s via %s: %d %v", method, path, a.base, code, m)
	}
	return m
}

func (a api) await(name, token, state string, timeout time.Duration) map[string]any {
	a.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		_, m := a.do("GET", "/v1/"+name, token, nil)
		if m["state"] == state {
			return m
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("%s stuck in %v (want %s): %v", name, m["state"], state, m)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// verifyReceipt checks a receipt against the published key it names.
func (a api) verifyReceipt(rc map[string]any) error {
	keys := a.must("GET", "/v1/receipts:keys", "", nil)
	payload, _ := base64.StdEncoding.DecodeString(fmt.Sprint(rc["payload"]))
	sig, _ := base64.StdEncoding.DecodeString(fmt.Sprint(rc["signature"]))
	var named struct {
		KeyID string `json:"key_id"`
	}
	_ = json.Unmarshal(payload, &named)
	if named.KeyID == "" || rc["keyId"] != named.KeyID {
		return fmt.Errorf("the receipt names key %v, its payload %q", rc["keyId"], named.KeyID)
	}
	for _, k := range keys["keys"].([]any) {
		key := k.(map[string]any)
		if key["keyId"] == named.KeyID {
			pub, _ := base64.StdEncoding.DecodeString(key["publicKey"].(string))
			if !ed25519.Verify(pub, payload, sig) {
				return fmt.Errorf("the receipt does not verify with published key %s", named.KeyID)
			}
			return nil
		}
	}
	return fmt.Errorf("key %s is not published: %v", named.KeyID, keys)
}

type member struct {
	name, token string
}

func signUp(a api, email string) member {
	a.t.Helper()
	m := a.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": "Replica Tester", "email": email, "birthDate": "1990-01-01"}, "password": "a long enough password", "requestId": "signup-" + strings.Split(email, "@")[0]})
	tok := a.must("POST", "/v1/auth:signIn", "", map[string]any{"email": email, "password": "a long enough password"})["accessToken"].(string)
	return member{m["name"].(string), tok}
}

func random() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// TestProductionTopology: Temporal on PostgreSQL, identity, preferences, sharing, two
// fulfillment and two gateway processes, each service on its own PostgreSQL schema.
// A member's journey crosses replicas (filed through one gateway, downloaded through the
// other fulfillment replica, receipt verified with the published keys); 30 erasures
// finish with verifiable receipts although one fulfillment replica is SIGKILLed while
// they run; then a rolling restart of both fulfillment replicas fails no request.
func TestProductionTopology(t *testing.T) {
	base := os.Getenv(storagetest.PostgresURLEnv)
	if base == "" {
		t.Skipf("the multi-process test needs PostgreSQL: set %s", storagetest.PostgresURLEnv)
	}
	timings := [][2]string{}
	mark := func(what string, since time.Time) {
		timings = append(timings, [2]string{what, time.Since(since).Round(time.Millisecond).String()})
	}
	t.Cleanup(func() {
		var b strings.Builder
		for _, tm := range timings {
			fmt.Fprintf(&b, "\n  %-58s %s", tm[0], tm[1])
		}
		figures.Report(t, "timings:%s", b.String())
	})

	tp := startTopology(t, base, []string{"a", "b"}, []string{"a", "b"}, mark)
	addr, procs := tp.addr, tp.procs
	gwA, gwB := tp.gateways[0], tp.gateways[1]

	// Preferences runs its policy change-notice worker against Temporal on PostgreSQL.
	tc, err := tclient.Dial(tclient.Options{HostPort: tp.temporalAddr, Namespace: "lethe"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		q, err := tc.DescribeTaskQueue(t.Context(), "lethe-preferences", enumspb.TASK_QUEUE_TYPE_WORKFLOW)
		if err == nil && len(q.GetPollers()) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no worker polls preferences' task queue lethe-preferences: %v", err)
		}
	}

	// The journey, crossing replicas at every step.
	began := time.Now()
	m := signUp(gwA, "ada-"+random()+"@example.com")
	gwB.must("POST", "/v1/"+m.name+"/viewingEvents?requestId=v1", m.token, map[string]any{"titleId": "the-analytical-engine", "durationSeconds": 600})
	exp := gwA.must("POST", "/v1/"+m.name+"/privacyRequests?requestId=export-1", m.token, map[string]any{"kind": "REQUEST_KIND_ACCESS"})
	gwB.await(exp["name"].(string), m.token, "REQUEST_STATE_COMPLETED", 90*time.Second)
	link := gwA.must("GET", "/v1/"+exp["name"].(string)+"/exportDownload", m.token, nil)["downloadUri"].(string)
	var sums []string
	// Straight from each fulfillment replica's download server (so each replica serves
	// an archive that one of them wrote, under a link that one of them signed), and
	// through each gateway.
	for _, base := range []string{"http://" + addr["fulfillment-a-http"], "http://" + addr["fulfillment-b-http"], gwA.base, gwB.base} {
		resp, err := http.Get(base + link)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Contains(body, []byte("the-analytical-engine")) && len(body) < 100 {
			t.Fatalf("download via %s: %d %.200s", base, resp.StatusCode, body)
		}
		sums = append(sums, strconv.Itoa(len(body)))
	}
	if sums[0] != sums[1] || sums[1] != sums[2] || sums[2] != sums[3] {
		t.Fatalf("replicas served different archives: sizes %v", sums)
	}
	er := gwB.must("POST", "/v1/"+m.name+"/privacyRequests?requestId=erase-1", m.token, map[string]any{"kind": "REQUEST_KIND_ERASURE"})
	reqID := er["name"].(string)[strings.LastIndex(er["name"].(string), "/")+1:]
	// The erasure ends the member's sessions, so its end is watched through the public
	// receipt, which exists only once the erasure completed.
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		code, rc := gwA.do("POST", "/v1/receipts/"+reqID+":fetch", "", map[string]any{"receiptToken": er["receiptToken"].(string)})
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("erasure %s: no receipt after 90 s: %d %v", er["name"], code, rc)
		}
	}
	for _, g := range []api{gwA, gwB, gwA, gwB} { // the gateways balance: both replicas answer
		rc := g.must("POST", "/v1/receipts/"+reqID+":fetch", "", map[string]any{"receiptToken": er["receiptToken"].(string)})
		if err := g.verifyReceipt(rc); err != nil {
			t.Fatal(err)
		}
	}
	mark("member journey across replicas (export, 4 downloads, erasure)", began)

	// 30 erasures, one fulfillment replica SIGKILLed while they run.
	const n = 30
	members := make([]member, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			members[i] = signUp([]api{gwA, gwB}[i%2], fmt.Sprintf("erase-%d-%s@example.com", i, random()))
		}()
	}
	wg.Wait()
	began = time.Now()
	type filed struct{ name, token, receipt string }
	requests := make([]filed, n)
	for i, mb := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := []api{gwA, gwB}[i%2].must("POST", "/v1/"+mb.name+"/privacyRequests?requestId=erase-"+strconv.Itoa(i), mb.token, map[string]any{"kind": "REQUEST_KIND_ERASURE"})
			requests[i] = filed{r["name"].(string), mb.token, r["receiptToken"].(string)}
		}()
	}
	wg.Wait()
	mark("30 erasures filed through both gateways", began)
	time.Sleep(300 * time.Millisecond) // mid-flight: workers on both replicas are busy
	completedAtKill := 0
	// The erasure ends the member's sessions early on, so completion is watched through
	// the receipt (public with its token), which exists only once the erasure completed.
	fetchReceipt := func(g api, r filed) (int, map[string]any) {
		return g.do("POST", "/v1/receipts/"+r.name[strings.LastIndex(r.name, "/")+1:]+":fetch", "", map[string]any{"receiptToken": r.receipt})
	}
	for _, r := range requests {
		if code, _ := fetchReceipt(gwA, r); code == http.StatusOK {
			completedAtKill++
		}
	}
	procs["fulfillment-a"].kill(syscall.SIGKILL)
	killedAt := time.Now()
	for i, r := range requests {
		g := []api{gwA, gwB}[i%2]
		deadline := time.Now().Add(3 * time.Minute)
		code, rc := fetchReceipt(g, r)
		for ; code != http.StatusOK && time.Now().Before(deadline); code, rc = fetchReceipt(g, r) {
			time.Sleep(100 * time.Millisecond)
		}
		if code != http.StatusOK {
			t.Fatalf("erasure %d (%s): no receipt 3 minutes after the SIGKILL: %d %v", i, r.name, code, rc)
		}
		if err := g.verifyReceipt(rc); err != nil {
			t.Fatalf("erasure %d: %v", i, err)
		}
	}
	mark(fmt.Sprintf("all 30 completed after the SIGKILL (%d done before it)", completedAtKill), killedAt)
	mark("30 erasures, filing to the last verified receipt", began)

	// Rolling restart under load: A comes back, then B is stopped (SIGTERM) and started
	// again. Clients keep calling both gateways the whole time; none may fail.
	var calls, failures atomic.Int64
	var failed sync.Map
	stop := make(chan struct{})
	var load sync.WaitGroup
	for w := range 4 {
		load.Add(1)
		go func() {
			defer load.Done()
			g := []api{gwA, gwB}[w%2]
			r := requests[w]
			rid := r.name[strings.LastIndex(r.name, "/")+1:]
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var code int
				var body map[string]any
				if i%2 == 0 {
					code, body = g.do("POST", "/v1/receipts/"+rid+":fetch", "", map[string]any{"receiptToken": r.receipt})
				} else {
					code, body = g.do("GET", "/v1/receipts:keys", "", nil)
				}
				calls.Add(1)
				if code != 200 {
					failures.Add(1)
					failed.Store(fmt.Sprintf("%d %v", code, body), true)
				}
			}
		}()
	}
	began = time.Now()
	procs["fulfillment-a"].launch()
	procs["fulfillment-a"].waitFor("listener after restart", 60*time.Second, listening(addr["fulfillment-a"]))
	time.Sleep(2 * time.Second) // gateways reconnect to A
	procs["fulfillment-b"].kill(syscall.SIGTERM)
	procs["fulfillment-b"].launch()
	procs["fulfillment-b"].waitFor("listener after restart", 60*time.Second, listening(addr["fulfillment-b"]))
	time.Sleep(2 * time.Second)
	close(stop)
	load.Wait()
	mark(fmt.Sprintf("rolling restart of both fulfillment replicas (%d calls)", calls.Load()), began)
	if failures.Load() > 0 {
		var kinds []string
		failed.Range(func(k, _ any) bool { kinds = append(kinds, k.(string)); return len(kinds) < 5 })
		t.Fatalf("%d of %d calls failed during the rolling restart: %v", failures.Load(), calls.Load(), kinds)
	}
	// After the restart both replicas work: a new export completes and downloads from each.
	late := signUp(gwB, "late-"+random()+"@example.com")
	exp2 := gwA.must("POST", "/v1/"+late.name+"/privacyRequests?requestId=export-late", late.token, map[string]any{"kind": "REQUEST_KIND_ACCESS"})
	gwB.await(exp2["name"].(string), late.token, "REQUEST_STATE_COMPLETED", 90*time.Second)
	link2 := gwB.must("GET", "/v1/"+exp2["name"].(string)+"/exportDownload", late.token, nil)["downloadUri"].(string)
	for _, h := range []string{addr["fulfillment-a-http"], addr["fulfillment-b-http"]} {
		if resp, err := http.Get("http://" + h + link2); err != nil || resp.StatusCode != 200 {
			t.Fatalf("download from %s after the restart: %v %v", h, resp, err)
		}
	}
}
