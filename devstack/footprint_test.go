package devstack_test

import (
	"archive/zip"
	"bytes"
	"database/sql"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the scan's CHECKPOINT

	"lethe.dev/devstack"
	"lethe.dev/platform/shred"
	"lethe.dev/platform/storage"
	"lethe.dev/platform/storage/storagetest"
)

// TestFootprint is the whole-system erasure check: a member signs up with every kind of
// personal value, connects a social account, watches, rates, exports and downloads, and
// is erased; then every byte the stack wrote is scanned for every value entered — each
// file under the data directory (databases with their WAL and SHM files, the archive
// bucket, Temporal's database, the log file) and, on PostgreSQL, the server's data
// directory after a CHECKPOINT. Only the dev mailbox is excepted: it stands in for an
// outside mail server. Zero hits.
func TestFootprint(t *testing.T) {
	eachEngine(t, func(t *testing.T, env map[string]string) {
		base := "" // on PostgreSQL the scan covers the server's data directory too
		if env["IDENTITY_DATABASE_URL"] != "" {
			base = os.Getenv(storagetest.PostgresURLEnv)
		}
		footprint(t, env, base)
	})
}

// values are what the member enters; each is distinctive enough that a hit anywhere is
// theirs.
var footprintValues = map[string]string{
	"name": "Ottoline Quennell-Vargas", "email": "ottoline.qv@example.org", "phone": "+442079460958",
	"address": "77 Wyvern Mews", "postal": "QX9 4ZZ", "locality": "Little Snoring", "payment": "pm_card_visa_qv7731",
	"social": "@ottoline_qv_on_mastodon",
}

func footprint(t *testing.T, env map[string]string, postgresURL string) {
	dir := t.TempDir()
	logFile, err := os.Create(filepath.Join(dir, "stack.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	env["FULFILLMENT_COOLING_OFF"] = "0s"
	s, err := devstack.Start(t.Context(), devstack.Options{DataDir: dir, UIPort: -1, Env: env,
		Logger: slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			s.Stop()
		}
	})
	c := client{t, "http://" + s.Addresses["gateway"]}
	v := footprintValues
	m := c.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{
		"fullName": v["name"], "email": v["email"], "phoneNumber": v["phone"], "birthDate": "1979-03-14", "paymentMethodRef": v["payment"],
		"postalAddress": map[string]any{"regionCode": "GB", "postalCode": v["postal"], "locality": v["locality"], "addressLines": []string{v["address"]}},
	}, "password": "a sufficiently long secret", "requestId": "signup-fp"})
	name := m["name"].(string)
	tok := c.must("POST", "/v1/auth:signIn", "", map[string]any{"email": v["email"], "password": "a sufficiently long secret", "deviceName": "Kitchen tablet"})["accessToken"].(string)
	c.must("POST", "/v1/"+name+"/socialConnections?requestId=social-1", tok, map[string]any{"network": "mastodon", "externalAccountRef": v["social"], "shareRatings": true})
	for i, title := range []string{"the-lighthouse", "quiet-harbour"} {
		c.must("POST", "/v1/"+name+"/viewingEvents?requestId=view-"+title, tok, map[string]any{"titleId": title, "durationSeconds": 900 + i})
	}
	c.must("PUT", "/v1/"+name+"/ratings/quiet-harbour", tok, map[string]any{"stars": 4})
	ex := c.must("POST", "/v1/"+name+"/privacyRequests?requestId=export-fp", tok, map[string]any{"kind": "REQUEST_KIND_ACCESS"})
	c.awaitState(ex["name"].(string), tok, "REQUEST_STATE_COMPLETED")
	dl := c.must("GET", "/v1/"+ex["name"].(string)+"/exportDownload", tok, nil)
	code, archive := download(t, c, dl["downloadUri"].(string), "")
	if code != 200 || !bytes.Contains(archive, []byte("PK")) {
		t.Fatalf("download: %d", code)
	}
	// The scan must be able to see the values: before the erasure they are in the export.
	for k, val := range v {
		if !zipContains(t, archive, val) {
			t.Fatalf("the export lacks the %s the member entered, so the scan would prove nothing", k)
		}
	}
	// The member's keys as stored (wrapped by each service's KEK): after the erasure no
	// copy may remain, or the ciphertext left in pages and WAL could be opened again.
	id := strings.TrimPrefix(name, "members/")
	exportID := ex["name"].(string)[strings.LastIndex(ex["name"].(string), "/")+1:]
	wrappedKeys, rawKeys := map[string][]byte{}, map[string][]byte{}
	for k, q := range map[string]struct {
		db       *storage.DB
		sql, arg string
		kek      string
		ad       []byte
	}{
		"identity member key":     {s.Identity.Domain.DB, `SELECT wrapped_key FROM members WHERE id = $1`, id, "identity", []byte("member:" + id)},
		"preferences member key":  {s.Preferences.Server.DB, `SELECT keyset FROM subject_keys WHERE subject = $1`, id, "preferences", shred.Associated(id, false)},
		"fulfillment archive key": {s.Fulfillment.Activities.DB, `SELECT keyset FROM subject_keys WHERE subject = $1`, "archive/" + exportID, "fulfillment", shred.Associated("archive/"+exportID, true)},
	} {
		var blob []byte
		if err := q.db.QueryRowContext(t.Context(), q.sql, q.arg).Scan(&blob); err != nil || len(blob) < 64 {
			t.Fatalf("%s: %v (%d bytes)", k, err, len(blob))
		}
		wrappedKeys[k+" (wrapped)"] = blob[len(blob)/2-16 : len(blob)/2+16]
		raw, err := shred.RawKeyMaterial("file:"+filepath.Join(dir, q.kek, "kek.json"), blob, q.ad)
		if err != nil {
			t.Fatalf("%s: unwrap: %v", k, err)
		}
		rawKeys[k+" (raw)"] = raw
	}
	er := c.must("POST", "/v1/"+name+"/privacyRequests?requestId=erase-fp", tok, map[string]any{"kind": "REQUEST_KIND_ERASURE"})
	// The erasure ends the member's sessions: an operator watches it finish.
	opTok := c.must("POST", "/v1/operators:signIn", "", map[string]any{"email": s.Operator.Email, "password": s.Operator.Password, "totpCode": s.Operator.TOTPCode(time.Now())})["accessToken"].(string)
	c.awaitState(er["name"].(string), opTok, "REQUEST_STATE_COMPLETED")

	// PostgreSQL keeps dead rows until VACUUM: wait for the services' batched vacuums,
	// then flush everything to the data directory.
	if postgresURL != "" {
		deadline := time.Now().Add(30 * time.Second)
		for _, v := range []interface{ Pending() bool }{s.Identity.Domain.Vacuum, s.Preferences.Server.Keys.Vacuumer(), s.Fulfillment.Activities.Archives.Keys.Vacuumer()} {
			for v.Pending() && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			if v.Pending() {
				t.Errorf("the key table was not vacuumed within 30 s of the erasure")
			}
		}
	}
	roots := []string{dir}
	if postgresURL != "" {
		db, err := sql.Open("pgx", postgresURL)
		if err != nil {
			t.Fatal(err)
		}
		var pgdata string
		if _, err := db.Exec(`CHECKPOINT`); err != nil {
			t.Logf("CHECKPOINT: %v", err)
		}
		if err := db.QueryRow(`SHOW data_directory`).Scan(&pgdata); err != nil {
			t.Logf("PostgreSQL data directory not scanned: %v", err)
		} else if _, err := os.Stat(filepath.Join(pgdata, "base")); err != nil {
			t.Logf("PostgreSQL data directory %s not scanned: not readable by this test (%v); run as the server's user or root", pgdata, err)
		} else {
			roots = append(roots, pgdata)
		}
		db.Close()
	}
	needles := map[string][]byte{}
	for k, val := range v {
		needles[k] = []byte(val)
		needles[k+" (lower case)"] = []byte(strings.ToLower(val))
	}
	for k, n := range wrappedKeys {
		needles[k] = n
	}
	for k, n := range rawKeys {
		needles[k] = n
	}
	mailbox := filepath.Join(dir, "identity", "mailbox.jsonl")
	// The control: the scan finds a value where it is meant to be (the mailbox).
	if raw, _ := os.ReadFile(mailbox); !bytes.Contains(raw, []byte(v["email"])) {
		t.Fatal("the scan cannot find the member's email even in the dev mailbox")
	}
	var scanned int64
	var files int
	hits := map[string][]string{}
	for _, root := range roots {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || p == mailbox {
				return nil
			}
			raw, err := os.ReadFile(p)
			if err != nil {
				return nil // sockets, files vanishing under a running server
			}
			files++
			scanned += int64(len(raw))
			for k, n := range needles {
				if bytes.Contains(raw, n) {
					hits[k] = append(hits[k], p)
				}
			}
			return nil
		})
	}
	t.Logf("footprint scan: %d files, %d bytes under %v; %d of %d needles (values and keys) with hits", files, scanned, roots, len(hits), len(needles))
	for k, where := range hits {
		// PostgreSQL's WAL keeps every row ever written until its segment is recycled and
		// overwritten (retention follows max_wal_size, a server setting): the key rows
		// written there are the wrapped keys, ciphertext under the KEK. Raw keys and
		// personal values must not be anywhere, pg_wal included.
		if strings.HasSuffix(k, "(wrapped)") {
			var outside []string
			for _, p := range where {
				if !strings.Contains(p, string(filepath.Separator)+"pg_wal"+string(filepath.Separator)) {
					outside = append(outside, p)
				}
			}
			if len(outside) == 0 {
				t.Logf("%s only in PostgreSQL's WAL %v (recycled by the server; ciphertext under the KEK)", k, where)
				continue
			}
			where = outside
		}
		t.Errorf("the member's %s is still on disk after the erasure in %v", k, where)
	}
	if err := s.Stop(); err != nil {
		t.Logf("stop: %v", err)
	}
	stopped = true

}

func zipContains(t *testing.T, archive []byte, val string) bool {
	t.Helper()
	zr, err := zipReader(archive)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range zr.File {
		rc, _ := f.Open()
		b, _ := io.ReadAll(rc)
		rc.Close()
		// Values are JSON-escaped in the archive ("+" stays, but check both forms).
		esc, _ := json.Marshal(val)
		if bytes.Contains(b, []byte(val)) || bytes.Contains(b, esc[1:len(esc)-1]) {
			return true
		}
	}
	return false
}

func zipReader(b []byte) (*zip.Reader, error) {
	return zip.NewReader(bytes.NewReader(b), int64(len(b)))
}
