// Package keyfile loads a Tink keyset from a file, creating it (0600) on first use. It
// is for development key material under the data directory; production deployments wrap
// keys with a KMS instead.
package keyfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// LoadOrCreate returns the keyset stored at path, creating one from template when the
// file does not exist.
func LoadOrCreate(path string, template *tinkpb.KeyTemplate) (*keyset.Handle, error) {
	if raw, err := os.ReadFile(path); err == nil {
		return insecurecleartextkeyset.Read(keyset.NewJSONReader(bytes.NewReader(raw)))
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	h, err := keyset.NewHandle(template)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := insecurecleartextkeyset.Write(h, keyset.NewJSONWriter(&buf)); err != nil {
		return nil, err
	}
	if err := WriteAtomic(path, buf.Bytes()); err != nil {
		return nil, err
	}
	return h, nil
}

// AEAD returns an AES-256-GCM AEAD from the keyset at path, creating it when missing.
func AEAD(path string) (tink.AEAD, error) {
	h, err := LoadOrCreate(path, aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, err
	}
	return aead.New(h)
}

// WriteAtomic writes data to path (0600) through a temporary file and a rename, creating
// the directory.
func WriteAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
