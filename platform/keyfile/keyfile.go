// Package keyfile loads a Tink keyset named by a URL, creating it on first use. Every
// replica of a service points at the same keyset (a shared file or volume), so whatever
// one replica signs or seals the others verify or open. URLs:
//
//	/etc/lethe/receipts.json                 a cleartext keyset file (dev; created 0600)
//	file:/etc/lethe/receipts.json            the same
//	file:/etc/lethe/receipts.json?kek=URI    a keyset file encrypted under a KMS key: URI is
//	                                         a Tink KMS key URI (gcp-kms://…, aws-kms://…,
//	                                         hcvault://…) whose client the binary registers
//
// Creation is exclusive: when several replicas start together on a missing file, one
// creates it and the others read that one. Rotation is an operator's job (tinkey adds a
// key and promotes it); every enabled key keeps verifying.
package keyfile

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/core/registry"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// Location is a parsed keyset URL.
type Location struct {
	Path string
	KEK  string // Tink KMS key URI; empty for a cleartext file
}

// Parse parses a keyset URL (see the package comment).
func Parse(raw string) (Location, error) {
	if raw == "" {
		return Location{}, errors.New("keyfile: empty keyset URL")
	}
	rest, ok := strings.CutPrefix(raw, "file:")
	if !ok {
		if strings.Contains(raw, "://") {
			return Location{}, fmt.Errorf("keyfile: keyset URL must be a path or file:PATH[?kek=KMS-URI], not %s", schemeOf(raw))
		}
		return Location{Path: raw}, nil
	}
	path, query, _ := strings.Cut(strings.TrimPrefix(rest, "//"), "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return Location{}, fmt.Errorf("keyfile: keyset URL query: %w", err)
	}
	if path == "" {
		return Location{}, errors.New("keyfile: keyset URL needs a path")
	}
	return Location{Path: path, KEK: q.Get("kek")}, nil
}

func schemeOf(uri string) string {
	if i := strings.Index(uri, ":"); i > 0 {
		return uri[:i] + ":"
	}
	return "(none)"
}

func (l Location) kek() (tink.AEAD, error) {
	client, err := registry.GetKMSClient(l.KEK)
	if err != nil {
		return nil, fmt.Errorf("keyfile: no Tink KMS client is registered for %s", schemeOf(l.KEK))
	}
	return client.GetAEAD(l.KEK)
}

func (l Location) read(raw []byte) (*keyset.Handle, error) {
	if l.KEK == "" {
		return insecurecleartextkeyset.Read(keyset.NewJSONReader(bytes.NewReader(raw)))
	}
	kek, err := l.kek()
	if err != nil {
		return nil, err
	}
	return keyset.Read(keyset.NewJSONReader(bytes.NewReader(raw)), kek)
}

func (l Location) encode(h *keyset.Handle) ([]byte, error) {
	var buf bytes.Buffer
	if l.KEK == "" {
		err := insecurecleartextkeyset.Write(h, keyset.NewJSONWriter(&buf))
		return buf.Bytes(), err
	}
	kek, err := l.kek()
	if err != nil {
		return nil, err
	}
	err = h.Write(keyset.NewJSONWriter(&buf), kek)
	return buf.Bytes(), err
}

// LoadOrCreate returns the keyset at the keyset URL, creating one from template when the
// file does not exist.
func LoadOrCreate(rawURL string, template *tinkpb.KeyTemplate) (*keyset.Handle, error) {
	l, err := Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if raw, err := os.ReadFile(l.Path); err == nil {
		h, err := l.read(raw)
		if err != nil {
			return nil, fmt.Errorf("keyfile: %s: %w", l.Path, err)
		}
		return h, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	h, err := keyset.NewHandle(template)
	if err != nil {
		return nil, err
	}
	data, err := l.encode(h)
	if err != nil {
		return nil, err
	}
	created, err := CreateExclusive(l.Path, data)
	if err != nil {
		return nil, err
	}
	if !created { // another replica won the race: use its keyset
		raw, err := os.ReadFile(l.Path)
		if err != nil {
			return nil, err
		}
		return l.read(raw)
	}
	return h, nil
}

// AEAD returns an AES-256-GCM AEAD from the keyset at the keyset URL, creating it when
// missing.
func AEAD(rawURL string) (tink.AEAD, error) {
	h, err := LoadOrCreate(rawURL, aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, err
	}
	return aead.New(h)
}

// CreateExclusive writes data to path (0600) unless path exists, creating the directory.
// The file appears complete or not at all (written aside, then hard-linked into place),
// so a concurrent reader never sees half a keyset. It reports whether it created path.
func CreateExclusive(path string, data []byte) (bool, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// WriteAtomic replaces path (0600) with data through a temporary file and a rename,
// creating the directory; readers see the old file or the new one, never a mix.
func WriteAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
