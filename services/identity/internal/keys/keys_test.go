package keys_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tink-crypto/tink-go/v2/core/registry"
	"github.com/tink-crypto/tink-go/v2/testing/fakekms"

	"lethe.dev/services/identity/internal/keys"
)

// TestKEKFromAKMS wraps member keys with a KEK held by a (fake, in-process) Tink KMS
// client, as a production deployment does with a cloud KMS: keys written under it read
// back after a restart, and the data directory holds no usable KEK.
func TestKEKFromAKMS(t *testing.T) {
	uri, err := fakekms.NewKeyURI()
	if err != nil {
		t.Fatal(err)
	}
	client, err := fakekms.NewClient("fake-kms://")
	if err != nil {
		t.Fatal(err)
	}
	registry.RegisterKMSClient(client)
	t.Cleanup(registry.ClearKMSClients)
	dir := t.TempDir()
	ring, err := keys.Open(uri, dir, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	wrapped, a, err := ring.NewMemberKey("member0001")
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := a.Encrypt([]byte("ada@example.com"), nil)
	again, err := keys.Open(uri, dir, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a2, err := again.MemberKey("member0001", wrapped)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := a2.Decrypt(ct, nil); err != nil || string(pt) != "ada@example.com" {
		t.Fatalf("decrypt after reopening: %q %v", pt, err)
	}
	if _, err := again.MemberKey("member0002", wrapped); err == nil {
		t.Fatal("a member key unwrapped under another member's id")
	}
	if again.BlindIndex("email", "x") == nil || !bytes.Equal(again.BlindIndex("email", "x"), ring.BlindIndex("email", "x")) {
		t.Fatal("the blind index changed across restarts")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), "kek") {
			t.Errorf("a KEK file %s was written although the KEK lives in the KMS", filepath.Join(dir, e.Name()))
		}
	}
}

func TestUnregisteredKMSSchemeFailsClearly(t *testing.T) {
	_, err := keys.Open("aws-kms://arn:aws:kms:eu-west-1:1:key/x", t.TempDir(), time.Hour, time.Now())
	if err == nil || !strings.Contains(err.Error(), "aws-kms:") || !strings.Contains(err.Error(), "file:PATH") {
		t.Fatalf("err = %v", err)
	}
}
