package shred_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"

	"lethe.dev/platform/shred"
	"lethe.dev/platform/storage"
	"lethe.dev/platform/storage/storagetest"
)

func open(t testing.TB, db *storage.DB) *shred.Keys {
	t.Helper()
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	a, err := aead.New(h)
	if err != nil {
		t.Fatal(err)
	}
	k, err := shred.Open(context.Background(), db, a)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealUnsealDestroy(t *testing.T) {
	storagetest.Engines(t, nil, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		k := open(t, db)
		ct, err := k.Seal(ctx, "member000001", "social.handle", []byte("@grace"))
		if err != nil || bytes.Contains(ct, []byte("@grace")) {
			t.Fatalf("seal: %v %q", err, ct)
		}
		if pt, err := k.Unseal(ctx, "member000001", "social.handle", ct); err != nil || string(pt) != "@grace" {
			t.Fatalf("unseal: %q %v", pt, err)
		}
		if _, err := k.Unseal(ctx, "member000001", "notes", ct); err == nil {
			t.Fatal("a ciphertext opened under another field")
		}
		other, _ := k.Seal(ctx, "member000002", "social.handle", []byte("@ada"))
		n, err := k.Destroy(ctx, "member000001")
		if err != nil || n != 1 {
			t.Fatalf("destroy: %d %v", n, err)
		}
		if _, err := k.Unseal(ctx, "member000001", "social.handle", ct); !errors.Is(err, shred.ErrShredded) {
			t.Fatalf("after destroy: %v", err)
		}
		if pt, err := k.Unseal(ctx, "member000002", "social.handle", other); err != nil || string(pt) != "@ada" {
			t.Fatalf("another member's value: %q %v", pt, err)
		}
		if n, _ := k.Destroy(ctx, "member000001"); n != 0 {
			t.Fatalf("destroy twice: %d", n)
		}
		if v := k.Vacuumer(); v != nil {
			if !v.Pending() {
				t.Fatal("a destroyed key was not queued for VACUUM")
			}
			if _, err := v.VacuumNow(ctx); err != nil || v.Pending() {
				t.Fatalf("vacuum: %v", err)
			}
		}
	})
}

// TestDestroyedKeyLeavesNoBytesInSQLiteFiles: with secure_delete and the WAL truncated,
// neither the database file nor the WAL holds the wrapped key once it is destroyed.
func TestDestroyedKeyLeavesNoBytesInSQLiteFiles(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	db, err := storage.Open(ctx, "sqlite:"+filepath.Join(dir, "x.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	k := open(t, db)
	for i := range 50 { // other members' keys, so pages are shared and not simply freed
		if _, err := k.Seal(ctx, "other"+strings.Repeat("0", 3)+string(rune('a'+i%26))+string(rune('a'+i/26)), "f", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := k.Seal(ctx, "member000001", "f", []byte("x")); err != nil {
		t.Fatal(err)
	}
	var wrapped []byte
	if err := db.QueryRowContext(ctx, `SELECT keyset FROM subject_keys WHERE subject = 'member000001'`).Scan(&wrapped); err != nil {
		t.Fatal(err)
	}
	needle := wrapped[len(wrapped)-32:]
	scan := func() int {
		hits := 0
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, f := range files {
			raw, _ := os.ReadFile(f)
			hits += bytes.Count(raw, needle)
		}
		return hits
	}
	if scan() == 0 {
		t.Fatal("the scan cannot find the key even before it is destroyed")
	}
	if _, err := k.Destroy(ctx, "member000001"); err != nil {
		t.Fatal(err)
	}
	if n := scan(); n != 0 {
		t.Fatalf("the destroyed key is still in the SQLite files (%d hits)", n)
	}
}
