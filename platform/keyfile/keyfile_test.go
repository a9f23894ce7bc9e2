package keyfile_test

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"

	"lethe.dev/platform/keyfile"
)

// TestReplicasStartingTogetherShareOneKeyset starts many "replicas" on a missing keyset
// file at once: all must end up with the same key, so a token sealed by one opens on
// every other.
func TestReplicasStartingTogetherShareOneKeyset(t *testing.T) {
	for round := 0; round < 5; round++ {
		url := "file:" + filepath.Join(t.TempDir(), "shared", "tokens.json")
		const replicas = 8
		ids := make([]uint32, replicas)
		var wg sync.WaitGroup
		for i := range replicas {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h, err := keyfile.LoadOrCreate(url, aead.AES256GCMKeyTemplate())
				if err != nil {
					t.Error(err)
					return
				}
				ids[i] = h.KeysetInfo().GetPrimaryKeyId()
			}()
		}
		wg.Wait()
		for i := range ids {
			if ids[i] != ids[0] {
				t.Fatalf("round %d: replicas hold different keys: %v", round, ids)
			}
		}
	}
}

func TestKeysetURLs(t *testing.T) {
	for _, tc := range []struct{ url, path, kek, err string }{
		{url: "/var/lib/lethe/k.json", path: "/var/lib/lethe/k.json"},
		{url: "file:/var/lib/lethe/k.json", path: "/var/lib/lethe/k.json"},
		{url: "file:///var/lib/lethe/k.json?kek=gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k", path: "/var/lib/lethe/k.json", kek: "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k"},
		{url: "s3://bucket/k.json", err: "path or file:PATH"},
		{url: "", err: "empty"},
	} {
		l, err := keyfile.Parse(tc.url)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err = %v, want %q", tc.url, err, tc.err)
			}
			continue
		}
		if err != nil || l.Path != tc.path || l.KEK != tc.kek {
			t.Errorf("%q: %+v %v", tc.url, l, err)
		}
	}
	// A KMS whose client is not linked fails with a message that names the scheme.
	_, err := keyfile.LoadOrCreate("file:"+filepath.Join(t.TempDir(), "k.json")+"?kek=aws-kms://arn:aws:kms:eu-west-1:1:key/x", aead.AES256GCMKeyTemplate())
	if err == nil || !strings.Contains(err.Error(), "aws-kms:") {
		t.Fatalf("unregistered KMS: %v", err)
	}
}
