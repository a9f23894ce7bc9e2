// Package keys holds identity's key material, all managed with Tink: the key-encryption
// key (KEK) that wraps every member's data key, per-member data keys (crypto-shredding:
// destroying a member's wrapped key makes every copy of their ciphertext unreadable,
// backups included), the keyed blind index for email lookups, and the ES256 keyset that
// signs access tokens.
package keys

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/core/registry"
	"github.com/tink-crypto/tink-go/v2/jwt"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/prf"
	"github.com/tink-crypto/tink-go/v2/tink"

	"lethe.dev/platform/keyfile"
)

// Ring is identity's key ring.
type Ring struct {
	kek    tink.AEAD
	index  *prf.Set
	mu     sync.RWMutex
	signer jwt.Signer
	public *keyset.Handle
}

// Open loads (or, on first start, creates) the key ring. kekURI names the KEK:
// "file:PATH" is a Tink keyset file (dev; created 0600 when missing). Production
// deployments use a KMS URI; only file: is built in, others fail with a clear error.
// Keys other than the KEK live in dir, encrypted under the KEK. Signing keys rotate
// every rotateEvery; the previous public key stays in the JWKS so tokens it signed
// still verify.
func Open(kekURI, dir string, rotateEvery time.Duration, now time.Time) (*Ring, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	kek, err := openKEK(kekURI)
	if err != nil {
		return nil, err
	}
	r := &Ring{kek: kek}
	idx, err := r.loadOrCreateWrapped(filepath.Join(dir, "blind-index.keyset"), "blind-index")
	if err != nil {
		return nil, err
	}
	if r.index, err = prf.NewPRFSet(idx); err != nil {
		return nil, err
	}
	if err := r.loadSigner(filepath.Join(dir, "token-signing.keyset"), rotateEvery, now); err != nil {
		return nil, err
	}
	return r, nil
}

// openKEK returns the key-encryption key. "file:PATH" is a Tink keyset file (dev; created
// 0600 when missing). Any other URI (gcp-kms://, aws-kms://, hcvault://…) goes to the
// Tink KMS client registered for it, so the KEK never leaves the KMS; cmd/identity
// registers the clients a deployment needs.
func openKEK(uri string) (tink.AEAD, error) {
	if path, ok := strings.CutPrefix(uri, "file:"); ok {
		h, err := keyfile.LoadOrCreate(path, aead.AES256GCMKeyTemplate())
		if err != nil {
			return nil, fmt.Errorf("keys: KEK: %w", err)
		}
		return aead.New(h)
	}
	client, err := registry.GetKMSClient(uri)
	if err != nil {
		return nil, fmt.Errorf("keys: no Tink KMS client is registered for %s (use file:PATH, or register a KMS client such as tink-go-gcpkms in cmd/identity)", schemeOf(uri))
	}
	return client.GetAEAD(uri)
}

func schemeOf(uri string) string {
	if i := strings.Index(uri, ":"); i > 0 {
		return uri[:i] + ":"
	}
	return "(none)"
}

func (r *Ring) loadOrCreateWrapped(path, purpose string) (*keyset.Handle, error) {
	if raw, err := os.ReadFile(path); err == nil {
		return keyset.ReadWithAssociatedData(keyset.NewBinaryReader(bytes.NewReader(raw)), r.kek, []byte(purpose))
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	h, err := keyset.NewHandle(prf.HMACSHA256PRFKeyTemplate())
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := h.WriteWithAssociatedData(keyset.NewBinaryWriter(&buf), r.kek, []byte(purpose)); err != nil {
		return nil, err
	}
	// Replicas starting together on a shared directory: one creates, all use that one.
	if created, err := keyfile.CreateExclusive(path, buf.Bytes()); err != nil || created {
		return h, err
	}
	return r.loadOrCreateWrapped(path, purpose)
}

// signingState is the stored signing keyset plus when its primary key was made.
type signingState struct {
	Keyset  []byte    `json:"keyset"` // encrypted under the KEK
	Rotated time.Time `json:"rotated"`
}

func (r *Ring) loadSigner(path string, rotateEvery time.Duration, now time.Time) error {
	var st signingState
	var h *keyset.Handle
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("keys: %s: %w", path, err)
		}
		if h, err = keyset.ReadWithAssociatedData(keyset.NewBinaryReader(bytes.NewReader(st.Keyset)), r.kek, []byte("token-signing")); err != nil {
			return fmt.Errorf("keys: token signing keyset: %w", err)
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		return err
	}
	if h == nil || (rotateEvery > 0 && now.Sub(st.Rotated) >= rotateEvery) {
		if h, err = rotate(h); err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := h.WriteWithAssociatedData(keyset.NewBinaryWriter(&buf), r.kek, []byte("token-signing")); err != nil {
			return err
		}
		out, _ := json.Marshal(signingState{Keyset: buf.Bytes(), Rotated: now})
		if st.Rotated.IsZero() {
			// First start: exactly one replica creates the keyset; the others adopt it.
			created, err := keyfile.CreateExclusive(path, out)
			if err != nil {
				return err
			}
			if !created {
				return r.loadSigner(path, rotateEvery, now)
			}
		} else if err := keyfile.WriteAtomic(path, out); err != nil {
			return err
		}
	}
	return r.setSigner(h)
}

// rotate adds a new ES256 key as primary, keeping at most one previous key so tokens
// signed before the rotation verify until they expire.
func rotate(h *keyset.Handle) (*keyset.Handle, error) {
	if h == nil {
		return keyset.NewHandle(jwt.ES256Template())
	}
	m := keyset.NewManagerFromHandle(h)
	id, err := m.Add(jwt.ES256Template())
	if err != nil {
		return nil, err
	}
	if err := m.SetPrimary(id); err != nil {
		return nil, err
	}
	info := h.KeysetInfo()
	for i := 0; i < len(info.GetKeyInfo())-1; i++ { // drop all but the newest previous key
		if kid := info.GetKeyInfo()[i].GetKeyId(); kid != info.GetPrimaryKeyId() {
			_ = m.Delete(kid)
		}
	}
	return m.Handle()
}

func (r *Ring) setSigner(h *keyset.Handle) error {
	signer, err := jwt.NewSigner(h)
	if err != nil {
		return err
	}
	pub, err := h.Public()
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.signer, r.public = signer, pub
	r.mu.Unlock()
	return nil
}

// Rotate makes a new signing key primary now (operators; tests).
func (r *Ring) Rotate(dir string, now time.Time) error {
	return r.loadSigner(filepath.Join(dir, "token-signing.keyset"), time.Nanosecond, now)
}

// BlindIndex returns the keyed hash of a normalized value (for email lookups without
// storing the email in plaintext).
func (r *Ring) BlindIndex(purpose, normalized string) []byte {
	out, err := r.index.ComputePrimaryPRF([]byte(purpose+"\x00"+normalized), 32)
	if err != nil {
		panic("keys: blind index: " + err.Error()) // only fails on a misconfigured keyset
	}
	return out
}

// NewMemberKey creates a member's data key and returns it wrapped by the KEK (bound to
// the member id) together with its AEAD.
func (r *Ring) NewMemberKey(memberID string) (wrapped []byte, a tink.AEAD, err error) {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, nil, err
	}
	var buf bytes.Buffer
	if err := h.WriteWithAssociatedData(keyset.NewBinaryWriter(&buf), r.kek, []byte("member:"+memberID)); err != nil {
		return nil, nil, err
	}
	a, err = aead.New(h)
	return buf.Bytes(), a, err
}

// MemberKey unwraps a member's data key.
func (r *Ring) MemberKey(memberID string, wrapped []byte) (tink.AEAD, error) {
	h, err := keyset.ReadWithAssociatedData(keyset.NewBinaryReader(bytes.NewReader(wrapped)), r.kek, []byte("member:"+memberID))
	if err != nil {
		return nil, fmt.Errorf("keys: unwrap member key: %w", err)
	}
	return aead.New(h)
}

// Sign signs an access token.
func (r *Ring) Sign(opts *jwt.RawJWTOptions) (string, error) {
	raw, err := jwt.NewRawJWT(opts)
	if err != nil {
		return "", err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.signer.SignAndEncode(raw)
}

// JWKS returns the public signing keys as a JSON Web Key Set.
func (r *Ring) JWKS() ([]byte, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return jwt.JWKSetFromPublicKeysetHandle(r.public)
}

// Verifier returns a verifier over the current public keys (tests, and services that
// want to check tokens themselves).
func (r *Ring) Verifier() (jwt.Verifier, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return jwt.NewVerifier(r.public)
}
