//go:build linux

package topology_test

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"lethe.dev/devstack/temporaldev/temporaldevtest"
	"lethe.dev/platform/storage/storagetest"
)

// topology is Lethe running as production does: lethe-temporal on PostgreSQL and every
// service binary as its own OS process, each service on its own PostgreSQL schema.
type topology struct {
	temporal     *process
	temporalAddr string
	addr         map[string]string   // listen addresses by process name (and "<name>-http")
	procs        map[string]*process // the service processes by name, without Temporal
	gateways     []api               // one per gateway replica, in the order asked for
	// preferencesDB is preferences' database URL (its own schema), for bulk seeding.
	preferencesDB string
	// temporalDB is the Temporal server's main database URL (its visibility database is
	// the same name with "_visibility").
	temporalDB string
	// admin is each service process's admin listener (with pprof) when profiling was
	// asked for (LETHE_LOAD_PROFILE), by process name.
	admin map[string]string
}

// Connection pools: PostgreSQL's max_connections (100 by default, and shared with the
// test process and whatever else runs on the server) must hold the whole topology. At
// their defaults (20 per service process, 20 per pool of Temporal's, which has one per
// store in each of its services) a load filled it and requests failed UNAVAILABLE. The
// URLs size them with pool_max_conns: Temporal's pools at temporalPool, every service
// process at servicePool (LETHE_TOPOLOGY_TEMPORAL_POOL and LETHE_TOPOLOGY_SERVICE_POOL
// change them, to compare).
const (
	temporalPool = 8
	servicePool  = 8
)

// poolSize is def unless the environment variable name sets another size.
func poolSize(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a whole number of at least 1", name, v)
	}
	return n
}

// withPool adds pool_max_conns=n to a PostgreSQL URL.
func withPool(t *testing.T, raw string, n int) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("postgres URL: %v", err)
	}
	q := u.Query()
	q.Set("pool_max_conns", strconv.Itoa(n))
	u.RawQuery = q.Encode()
	return u.String()
}

// startTopology builds the six binaries and starts Temporal on a fresh PostgreSQL
// database, then identity, preferences, sharing, one fulfillment process per name in
// fulfillments and one gateway per name in gateways (replicas share nothing but the
// database, the archive bucket and the keysets). mark records how long each stage took.
func startTopology(t *testing.T, base string, fulfillments, gateways []string, mark func(string, time.Time)) *topology {
	t.Helper()
	began := time.Now()
	bin := build(t)
	mark("go build of the six binaries", began)

	// Temporal on PostgreSQL, from the project's own program.
	tp := &topology{temporalAddr: freePort(t), addr: map[string]string{}, procs: map[string]*process{}}
	temporalPool, servicePool := poolSize(t, "LETHE_TOPOLOGY_TEMPORAL_POOL", temporalPool), poolSize(t, "LETHE_TOPOLOGY_SERVICE_POOL", servicePool)
	_, tport, _ := net.SplitHostPort(tp.temporalAddr)
	began = time.Now()
	tp.temporalDB = temporaldevtest.DatabaseURL(t, base)
	temporalEnv := map[string]string{
		"TEMPORAL_POSTGRES_URL": withPool(t, tp.temporalDB, temporalPool), "TEMPORAL_PORT": tport, "TEMPORAL_UI_PORT": "-1", "LETHE_LOG_LEVEL": "warn",
	}
	tp.admin = map[string]string{}
	if os.Getenv("LETHE_LOAD_PROFILE") != "" { // the server's profile too
		tp.admin["temporal"] = freePort(t)
		temporalEnv["TEMPORAL_PPROF_LISTEN"] = tp.admin["temporal"]
	}
	temporal := start(t, filepath.Join(bin, "lethe-temporal"), "temporal", temporalEnv)
	temporal.waitFor("ready", 120*time.Second, func() bool {
		raw, _ := os.ReadFile(temporal.log)
		return bytes.Contains(raw, []byte("Temporal is ready"))
	})
	tp.temporal = temporal
	mark("Temporal on PostgreSQL: fresh schema to namespace ready", began)

	shared := t.TempDir() // what every replica shares: keysets and the archive bucket
	common := map[string]string{
		"LETHE_SERVICE_TOKEN": random() + random(), "LETHE_LOG_LEVEL": "warn", "TEMPORAL_ADDRESS": tp.temporalAddr, "TEMPORAL_NAMESPACE": "lethe",
	}
	with := func(extra map[string]string) map[string]string {
		out := map[string]string{"LETHE_DATA_DIR": t.TempDir()} // nothing local is shared
		for k, v := range common {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	addr := tp.addr
	names := []string{"identity", "preferences", "sharing"}
	for _, r := range fulfillments {
		names = append(names, "fulfillment-"+r, "fulfillment-"+r+"-http")
	}
	for _, r := range gateways {
		names = append(names, "gateway-"+r)
	}
	for _, n := range names {
		addr[n] = freePort(t)
	}
	// Profiles of the load (LETHE_LOAD_PROFILE=DIR): every service serves pprof on its
	// admin listener.
	profiling := os.Getenv("LETHE_LOAD_PROFILE") != ""
	admin := func(proc, service string, env map[string]string) map[string]string {
		if profiling {
			tp.admin[proc] = freePort(t)
			env[strings.ToUpper(service)+"_METRICS_ADDR"] = tp.admin[proc]
			env["LETHE_PPROF"] = "1"
		}
		return env
	}
	common["IDENTITY_ADDRESS"], common["PREFERENCES_ADDRESS"], common["SHARING_ADDRESS"] = addr["identity"], addr["preferences"], addr["sharing"]
	// Identity, preferences and sharing ask fulfillment for legal holds (failing closed)
	// and record operator actions in its audit log.
	var fulfillmentAddrs []string
	for _, r := range fulfillments {
		fulfillmentAddrs = append(fulfillmentAddrs, addr["fulfillment-"+r])
	}
	common["FULFILLMENT_ADDRESS"] = strings.Join(fulfillmentAddrs, ",")
	fulfillmentDB := withPool(t, storagetest.PostgresSchemaURL(t, base), servicePool)
	tp.preferencesDB = storagetest.PostgresSchemaURL(t, base)

	began = time.Now()
	procs := tp.procs
	procs["identity"] = start(t, filepath.Join(bin, "identity"), "identity", admin("identity", "identity", with(map[string]string{
		"IDENTITY_LISTEN": addr["identity"], "IDENTITY_DATABASE_URL": withPool(t, storagetest.PostgresSchemaURL(t, base), servicePool)})))
	procs["preferences"] = start(t, filepath.Join(bin, "preferences"), "preferences", admin("preferences", "preferences", with(map[string]string{
		"PREFERENCES_LISTEN": addr["preferences"], "PREFERENCES_DATABASE_URL": withPool(t, tp.preferencesDB, servicePool),
		"PREFERENCES_TOKEN_KEY": filepath.Join(shared, "unsubscribe.keyset.json"),
		"PREFERENCES_KEK_URI":   "file:" + filepath.Join(shared, "preferences-kek.json")})))
	procs["sharing"] = start(t, filepath.Join(bin, "sharing"), "sharing", admin("sharing", "sharing", with(map[string]string{
		"SHARING_LISTEN": addr["sharing"], "SHARING_DATABASE_URL": withPool(t, storagetest.PostgresSchemaURL(t, base), servicePool),
		"SHARING_SECRETS_KEYSET": filepath.Join(shared, "secrets.keyset.json"), "SHARING_PSEUDONYM_KEYSET": filepath.Join(shared, "pseudonyms.keyset.json")})))
	fulfillmentEnv := func(replica string) map[string]string {
		return with(map[string]string{
			"FULFILLMENT_LISTEN": addr["fulfillment-"+replica], "FULFILLMENT_HTTP_LISTEN": addr["fulfillment-"+replica+"-http"],
			"FULFILLMENT_DATABASE_URL": fulfillmentDB, "FULFILLMENT_COOLING_OFF": "0s",
			"FULFILLMENT_ARCHIVE_BUCKET":  "file://" + filepath.Join(shared, "archives") + "?create_dir=1",
			"FULFILLMENT_RECEIPT_KEYSET":  "file:" + filepath.Join(shared, "receipts.keyset.json"),
			"FULFILLMENT_DOWNLOAD_KEYSET": "file:" + filepath.Join(shared, "download-links.keyset.json"),
			"FULFILLMENT_TOKEN_KEYSET":    "file:" + filepath.Join(shared, "receipt-tokens.keyset.json"),
			// The per-export archive keys are wrapped by this KEK: every replica needs it.
			"FULFILLMENT_KEK_URI": "file:" + filepath.Join(shared, "fulfillment-kek.json"),
		})
	}
	// All replicas start at once on a fresh schema: the migration lock and the exclusive
	// keyset creation are what let them.
	var grpcAddrs, httpAddrs []string
	for _, r := range fulfillments {
		procs["fulfillment-"+r] = start(t, filepath.Join(bin, "fulfillment"), "fulfillment-"+r, admin("fulfillment-"+r, "fulfillment", fulfillmentEnv(r)))
		grpcAddrs = append(grpcAddrs, addr["fulfillment-"+r])
		httpAddrs = append(httpAddrs, "http://"+addr["fulfillment-"+r+"-http"])
	}
	gatewayEnv := func(replica string) map[string]string {
		return with(map[string]string{
			"GATEWAY_LISTEN": addr["gateway-"+replica], "GATEWAY_SENSITIVE_PER_MINUTE": "100000",
			"FULFILLMENT_ADDRESS":      strings.Join(grpcAddrs, ","),
			"FULFILLMENT_HTTP_ADDRESS": strings.Join(httpAddrs, ","),
		})
	}
	for _, r := range gateways {
		procs["gateway-"+r] = start(t, filepath.Join(bin, "gateway"), "gateway-"+r, admin("gateway-"+r, "gateway", gatewayEnv(r)))
	}
	for name, p := range procs {
		p.waitFor("listener", 60*time.Second, listening(addr[name]))
	}
	for _, r := range gateways {
		tp.gateways = append(tp.gateways, api{t, "http://" + addr["gateway-"+r]})
	}
	for _, g := range tp.gateways {
		procs["gateway-"+gateways[0]].waitFor("healthy backends", 30*time.Second, func() bool { code, _ := g.do("GET", "/healthz", "", nil); return code == 200 })
	}
	mark(fmt.Sprintf("identity, preferences, sharing, %d fulfillment, %d gateways up", len(fulfillments), len(gateways)), began)
	return tp
}
