package devstack_test

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"lethe.dev/devstack"
)

func download(t *testing.T, c client, uri, rangeHeader string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", c.base+uri, nil)
	if rangeHeader != "" {
		req.Header.Set("Range", rangeHeader)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestExportArchivesAreEncryptedAndDieWithTheAccount: archives and their staging parts
// are ciphertext on disk (0600 files, 0700 folders), the parts are gone once the ZIP is
// written, ranged downloads still work, a second export inside the archive's 7 days is
// possible, and the erasure deletes every archive of the member and kills its links.
func TestExportArchivesAreEncryptedAndDieWithTheAccount(t *testing.T) {
	dir := t.TempDir()
	s, err := devstack.Start(t.Context(), devstack.Options{DataDir: dir, UIPort: -1, Env: map[string]string{"FULFILLMENT_COOLING_OFF": "0s"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	c := client{t, "http://" + s.Addresses["gateway"]}
	const fullName, email = "Radia Joy Perlman", "radia.perlman@example.com"
	m := c.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": fullName, "email": email, "birthDate": "1981-12-18"},
		"password": "spanning tree protocol", "requestId": "signup-rp"})
	name := m["name"].(string)
	tok := c.must("POST", "/v1/auth:signIn", "", map[string]any{"email": email, "password": "spanning tree protocol"})["accessToken"].(string)
	c.must("POST", "/v1/"+name+"/viewingEvents?requestId=v1", tok, map[string]any{"titleId": "algorhyme", "durationSeconds": 300})

	var links []string
	for _, id := range []string{"export-1", "export-2"} { // the second inside the first's 7 days
		req := c.must("POST", "/v1/"+name+"/privacyRequests?requestId="+id, tok, map[string]any{"kind": "REQUEST_KIND_ACCESS"})
		c.awaitState(req["name"].(string), tok, "REQUEST_STATE_COMPLETED")
		links = append(links, c.must("GET", "/v1/"+req["name"].(string)+"/exportDownload", tok, nil)["downloadUri"].(string))
	}
	if links[0] == links[1] {
		t.Fatal("the second export answered with the first")
	}
	code, full := download(t, c, links[1], "")
	if code != 200 {
		t.Fatalf("download: %d", code)
	}
	zr, err := zip.NewReader(bytes.NewReader(full), int64(len(full)))
	if err != nil || len(zr.File) < 3 {
		t.Fatalf("archive: %v", err)
	}
	// Every file the manifest lists is a JSON array of as many records as it says, with
	// the checksum it says.
	mf, err := zr.Open("manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	var man struct {
		Files []struct {
			Path    string `json:"path"`
			Records int    `json:"records"`
			SHA256  string `json:"sha256"`
		} `json:"files"`
	}
	if err := json.NewDecoder(mf).Decode(&man); err != nil || len(man.Files) == 0 {
		t.Fatalf("manifest: %v %+v", err, man)
	}
	for _, f := range man.Files {
		rc, err := zr.Open(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(rc)
		rc.Close()
		var records []json.RawMessage
		sum := sha256.Sum256(raw)
		if err := json.Unmarshal(raw, &records); err != nil || len(records) != f.Records || hex.EncodeToString(sum[:]) != f.SHA256 {
			t.Fatalf("%s: %d records (manifest %d), sha256 %x (manifest %s), %v", f.Path, len(records), f.Records, sum, f.SHA256, err)
		}
	}
	for _, rg := range [][2]int{{0, 99}, {len(full) - 200, len(full) - 1}, {len(full) / 2, len(full)/2 + 10}} {
		code, part := download(t, c, links[1], "bytes="+strconv.Itoa(rg[0])+"-"+strconv.Itoa(rg[1]))
		if code != http.StatusPartialContent || !bytes.Equal(part, full[rg[0]:rg[1]+1]) {
			t.Fatalf("range %v: %d, %d bytes, match %v", rg, code, len(part), bytes.Equal(part, full[rg[0]:rg[1]+1]))
		}
	}

	archives := filepath.Join(dir, "fulfillment", "archives")
	files := 0
	filepath.WalkDir(archives, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, _ := d.Info()
		rel, _ := filepath.Rel(archives, p)
		switch {
		case d.IsDir() && info.Mode().Perm() != 0o700:
			t.Errorf("folder %s is %v, want 0700", rel, info.Mode().Perm())
		case !d.IsDir():
			files++
			if info.Mode().Perm() != 0o600 {
				t.Errorf("file %s is %v, want 0600", rel, info.Mode().Perm())
			}
			if strings.Contains(rel, "/parts/") {
				t.Errorf("staging part %s outlived its archive", rel)
			}
			raw, _ := os.ReadFile(p)
			for _, v := range []string{fullName, email, "algorhyme", "manifest.json"} {
				if bytes.Contains(raw, []byte(v)) {
					t.Errorf("%s holds %q in plaintext", rel, v)
				}
			}
		}
		return nil
	})
	if files != 2 {
		t.Errorf("%d files in archive storage, want the 2 archives", files)
	}

	er := c.must("POST", "/v1/"+name+"/privacyRequests?requestId=erase-1", tok, map[string]any{"kind": "REQUEST_KIND_ERASURE"})
	// The erasure ends the member's sessions early on (refused within seconds): an
	// operator watches it finish.
	opTok := c.must("POST", "/v1/operators:signIn", "", map[string]any{"email": s.Operator.Email, "password": s.Operator.Password, "totpCode": s.Operator.TOTPCode(time.Now())})["accessToken"].(string)
	c.awaitState(er["name"].(string), opTok, "REQUEST_STATE_COMPLETED")
	for _, l := range links {
		if code, _ := download(t, c, l, ""); code != http.StatusNotFound {
			t.Errorf("a download link still answers %d after the erasure", code)
		}
	}
	filepath.WalkDir(archives, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("%s survived the erasure", p)
		}
		return nil
	})
	var keys int
	if err := s.Fulfillment.Activities.DB.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM subject_keys`).Scan(&keys); err != nil || keys != 0 {
		t.Errorf("%d archive keys left after the erasure (%v)", keys, err)
	}
}
