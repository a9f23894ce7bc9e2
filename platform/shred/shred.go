// Package shred is crypto-shredding for every service: each subject (a member, an export
// archive) gets its own Tink data key, wrapped by the service's key-encryption key and
// kept in the service's own key table (subject_keys), apart from the data rows. Personal
// values are stored only as ciphertext under that key; destroying the key makes every
// copy of the ciphertext unreadable — database pages, WAL, backups, object storage.
//
// Deleting a key row must not leave the key recoverable either: SQLite databases run with
// secure_delete (storage.Open) and Destroy checkpoints the WAL with TRUNCATE; on
// PostgreSQL a Vacuumer reclaims the dead key rows in batches (see Vacuumer).
package shred

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/core/registry"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"github.com/tink-crypto/tink-go/v2/streamingaead"
	"github.com/tink-crypto/tink-go/v2/tink"

	"lethe.dev/platform/keyfile"
	"lethe.dev/platform/storage"
)

// ErrShredded means the subject's key is gone (or never existed): its data is unreadable.
var ErrShredded = errors.New("shred: the subject's key was destroyed")

// Kinds of key a subject can have.
const (
	kindAEAD      = "aead"      // AES-256-GCM, for values in rows
	kindStreaming = "streaming" // AES-256-GCM-HKDF 4 KiB segments (keys made before: 1 MiB), for files and objects
)

// schema is the key table. It is created by Open rather than by each service's
// migrations, so every service gets the same one; it holds nothing but wrapped keys.
const schema = `CREATE TABLE IF NOT EXISTS subject_keys (
    subject    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    keyset     BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (subject, kind)
)`

// Keys is a service's key table.
type Keys struct {
	db  *storage.DB
	kek tink.AEAD
	now func() time.Time

	mu    sync.Mutex
	cache map[string]any // subject+kind → primitive; dropped on Destroy
	vac   *Vacuumer
}

// Open creates the key table if needed and returns the service's Keys. kek wraps every
// data key (see OpenKEK).
func Open(ctx context.Context, db *storage.DB, kek tink.AEAD) (*Keys, error) {
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return nil, fmt.Errorf("shred: key table: %w", err)
	}
	k := &Keys{db: db, kek: kek, now: time.Now, cache: map[string]any{}}
	k.vac = NewVacuumer(db, "subject_keys")
	return k, nil
}

// OpenKEK returns a key-encryption key. "file:PATH" is a Tink keyset file (development;
// created 0600 when missing). Any other URI (gcp-kms://, aws-kms://, hcvault://…) goes to
// the Tink KMS client registered for it, so the KEK never leaves the KMS.
func OpenKEK(uri string) (tink.AEAD, error) {
	if path, ok := strings.CutPrefix(uri, "file:"); ok {
		h, err := keyfile.LoadOrCreate(path, aead.AES256GCMKeyTemplate())
		if err != nil {
			return nil, fmt.Errorf("shred: KEK: %w", err)
		}
		return aead.New(h)
	}
	client, err := registry.GetKMSClient(uri)
	if err != nil {
		return nil, fmt.Errorf("shred: no Tink KMS client is registered for the KEK URI (use file:PATH, or register a KMS client in the service's cmd)")
	}
	return client.GetAEAD(uri)
}

// Vacuumer returns the PostgreSQL vacuum batcher (nil on SQLite).
func (k *Keys) Vacuumer() *Vacuumer { return k.vac }

func associated(subject, kind string) []byte {
	return []byte("subject-key\x00" + kind + "\x00" + subject)
}

// handle returns the subject's keyset of a kind, creating it when create is set.
func (k *Keys) handle(ctx context.Context, subject, kind string, template *tinkpb.KeyTemplate, create bool) (*keyset.Handle, error) {
	read := func() (*keyset.Handle, error) {
		var wrapped []byte
		err := k.db.QueryRowContext(ctx, `SELECT keyset FROM subject_keys WHERE subject = $1 AND kind = $2`, subject, kind).Scan(&wrapped)
		if err != nil {
			return nil, err
		}
		return keyset.ReadWithAssociatedData(keyset.NewBinaryReader(bytes.NewReader(wrapped)), k.kek, associated(subject, kind))
	}
	h, err := read()
	if err == nil || !errors.Is(err, sql.ErrNoRows) {
		return h, err
	}
	if !create {
		return nil, ErrShredded
	}
	h, err = keyset.NewHandle(template)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := h.WriteWithAssociatedData(keyset.NewBinaryWriter(&buf), k.kek, associated(subject, kind)); err != nil {
		return nil, err
	}
	// Two writers racing: the first key wins and both use it.
	if _, err := k.db.ExecContext(ctx, `INSERT INTO subject_keys (subject, kind, keyset, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (subject, kind) DO NOTHING`,
		subject, kind, buf.Bytes(), k.now().UnixMicro()); err != nil {
		return nil, err
	}
	return read()
}

func (k *Keys) cached(subject, kind string) (any, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	p, ok := k.cache[kind+"\x00"+subject]
	return p, ok
}

func (k *Keys) remember(subject, kind string, p any) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.cache) > 10000 {
		clear(k.cache)
	}
	k.cache[kind+"\x00"+subject] = p
}

// AEAD returns the subject's AEAD for values in rows; create makes the key on first use
// (writes), otherwise a missing key is ErrShredded (reads).
func (k *Keys) AEAD(ctx context.Context, subject string, create bool) (tink.AEAD, error) {
	if p, ok := k.cached(subject, kindAEAD); ok {
		return p.(tink.AEAD), nil
	}
	h, err := k.handle(ctx, subject, kindAEAD, aead.AES256GCMKeyTemplate(), create)
	if err != nil {
		return nil, err
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, err
	}
	k.remember(subject, kindAEAD, a)
	return a, nil
}

// Streaming returns the subject's streaming AEAD (AES-256-GCM-HKDF) for files and
// objects; create as for AEAD. New keys use 4 KiB segments: every reader and writer
// holds two segment buffers, and an export opens dozens of objects (staging parts,
// the archive), so 1 MiB segments cost megabytes of garbage per object. Keys made
// before keep their 1 MiB segments (the template is part of the stored keyset).
func (k *Keys) Streaming(ctx context.Context, subject string, create bool) (tink.StreamingAEAD, error) {
	if p, ok := k.cached(subject, kindStreaming); ok {
		return p.(tink.StreamingAEAD), nil
	}
	h, err := k.handle(ctx, subject, kindStreaming, streamingaead.AES256GCMHKDF4KBKeyTemplate(), create)
	if err != nil {
		return nil, err
	}
	s, err := streamingaead.New(h)
	if err != nil {
		return nil, err
	}
	k.remember(subject, kindStreaming, s)
	return s, nil
}

// Seal encrypts a personal value for subject (creating its key), bound to field (e.g.
// "social_connections.handle") so ciphertexts cannot be swapped between fields. Empty
// values stay empty.
func (k *Keys) Seal(ctx context.Context, subject, field string, plaintext []byte) ([]byte, error) {
	if len(plaintext) == 0 {
		return nil, nil
	}
	a, err := k.AEAD(ctx, subject, true)
	if err != nil {
		return nil, err
	}
	return a.Encrypt(plaintext, []byte(field+"\x00"+subject))
}

// Unseal decrypts what Seal produced; ErrShredded once the subject's key is destroyed.
func (k *Keys) Unseal(ctx context.Context, subject, field string, ciphertext []byte) ([]byte, error) {
	if len(ciphertext) == 0 {
		return nil, nil
	}
	a, err := k.AEAD(ctx, subject, false)
	if err != nil {
		return nil, err
	}
	return a.Decrypt(ciphertext, []byte(field+"\x00"+subject))
}

// Destroy deletes every key of the subjects, then makes sure the engine keeps no copy:
// on SQLite (secure_delete zeroes the freed cells) the WAL is checkpointed and truncated;
// on PostgreSQL the key table is queued for the next batched VACUUM. Idempotent; it
// returns how many keys were destroyed.
func (k *Keys) Destroy(ctx context.Context, subjects ...string) (int64, error) {
	var n int64
	for _, s := range subjects {
		res, err := k.db.ExecContext(ctx, `DELETE FROM subject_keys WHERE subject = $1`, s)
		if err != nil {
			return n, err
		}
		c, _ := res.RowsAffected()
		n += c
		k.mu.Lock()
		delete(k.cache, kindAEAD+"\x00"+s)
		delete(k.cache, kindStreaming+"\x00"+s)
		k.mu.Unlock()
	}
	if err := k.db.Scrub(ctx); err != nil {
		return n, err
	}
	if k.vac != nil && n > 0 {
		k.vac.Dirty()
	}
	return n, nil
}

// Has reports whether the subject has any key (the verification sweep asks).
func (k *Keys) Has(ctx context.Context, subject string) (bool, error) {
	var n int
	err := k.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM subject_keys WHERE subject = $1`, subject).Scan(&n)
	return n > 0, err
}

// Associated is the associated data a subject's wrapped keyset is bound to; streaming
// selects the streaming key. Forensic tools need it to unwrap (see RawKeyMaterial).
func Associated(subject string, streaming bool) []byte {
	if streaming {
		return associated(subject, kindStreaming)
	}
	return associated(subject, kindAEAD)
}

// RawKeyMaterial unwraps a stored keyset with the KEK at kekURI and returns the raw key
// bytes of its primary key (the last 32 bytes of the serialized key: the AES key of
// AES-GCM and AES-GCM-HKDF keys). It exists for footprint scans that look for leaked key
// material on disk; services never need it.
func RawKeyMaterial(kekURI string, wrapped, associatedData []byte) ([]byte, error) {
	kek, err := OpenKEK(kekURI)
	if err != nil {
		return nil, err
	}
	h, err := keyset.ReadWithAssociatedData(keyset.NewBinaryReader(bytes.NewReader(wrapped)), kek, associatedData)
	if err != nil {
		return nil, err
	}
	ks := insecurecleartextkeyset.KeysetMaterial(h)
	for _, k := range ks.GetKey() {
		if k.GetKeyId() == ks.GetPrimaryKeyId() {
			v := k.GetKeyData().GetValue()
			if len(v) < 32 {
				return nil, errors.New("shred: unexpected key format")
			}
			return v[len(v)-32:], nil
		}
	}
	return nil, errors.New("shred: keyset has no primary key")
}
