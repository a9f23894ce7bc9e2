// Package ids makes and checks Lethe's opaque identifiers: 26 lower-case base32
// characters from 128 random bits, unguessable and never reused.
package ids

import (
	"crypto/rand"
	"encoding/base32"
	"strings"
)

var enc = base32.StdEncoding.WithPadding(base32.NoPadding)

// New returns a fresh opaque id.
func New() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(enc.EncodeToString(b[:]))
}

// Valid reports whether s is a well-formed opaque id: 8 to 64 lower-case letters and
// digits (ids made elsewhere, e.g. by tests or imports, need not come from New).
func Valid(s string) bool {
	if len(s) < 8 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
