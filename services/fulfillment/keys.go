package fulfillment

import (
	"fmt"

	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/mac"
	"github.com/tink-crypto/tink-go/v2/prf"
	"github.com/tink-crypto/tink-go/v2/signature"
	tinked25519 "github.com/tink-crypto/tink-go/v2/signature/ed25519"
	"github.com/tink-crypto/tink-go/v2/tink"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	"lethe.dev/platform/keyfile"
)

// receiptKeys signs erasure receipts with the primary key of a shared Ed25519 keyset
// (raw signatures, verifiable with any Ed25519 library) and publishes every enabled key,
// so a receipt signed by any replica, or before a rotation, verifies.
type receiptKeys struct {
	signer    tink.Signer
	keyID     string
	published []*fulfillmentv1.ReceiptKey
}

// KeyID names a Tink key in receipts and in GetReceiptKeys.
func KeyID(tinkID uint32) string { return fmt.Sprintf("%08x", tinkID) }

func openReceiptKeys(url string) (*receiptKeys, error) {
	h, err := keyfile.LoadOrCreate(url, signature.ED25519KeyWithoutPrefixTemplate())
	if err != nil {
		return nil, fmt.Errorf("fulfillment: receipt keyset: %w", err)
	}
	signer, err := signature.NewSigner(h)
	if err != nil {
		return nil, fmt.Errorf("fulfillment: receipt keyset: %w", err)
	}
	pub, err := h.Public()
	if err != nil {
		return nil, err
	}
	k := &receiptKeys{signer: signer, keyID: KeyID(h.KeysetInfo().GetPrimaryKeyId())}
	for i := range pub.Len() {
		e, err := pub.Entry(i)
		if err != nil {
			return nil, err
		}
		pk, ok := e.Key().(*tinked25519.PublicKey)
		if !ok || e.KeyStatus() != keyset.Enabled {
			continue
		}
		if len(pk.OutputPrefix()) != 0 {
			return nil, fmt.Errorf("fulfillment: receipt key %s must be RAW (ED25519_RAW): receipts carry plain Ed25519 signatures", KeyID(e.KeyID()))
		}
		k.published = append(k.published, &fulfillmentv1.ReceiptKey{KeyId: KeyID(e.KeyID()), Algorithm: "Ed25519", PublicKey: pk.KeyBytes()})
	}
	return k, nil
}

// openLinkMAC returns the MAC that signs download links (HMAC-SHA256 from a shared
// keyset: a link made by one replica opens on every other; after a rotation, links made
// with the previous key keep working while it stays in the keyset).
func openLinkMAC(url string) (tink.MAC, error) {
	h, err := keyfile.LoadOrCreate(url, mac.HMACSHA256Tag256KeyTemplate())
	if err != nil {
		return nil, fmt.Errorf("fulfillment: download link keyset: %w", err)
	}
	return mac.New(h)
}

// openTokenKey returns the 32-byte key receipt tokens are derived with, itself derived
// from the primary key of a shared PRF keyset so every replica answers a retried filing
// with the same token.
func openTokenKey(url string) ([]byte, error) {
	h, err := keyfile.LoadOrCreate(url, prf.HMACSHA256PRFKeyTemplate())
	if err != nil {
		return nil, fmt.Errorf("fulfillment: receipt token keyset: %w", err)
	}
	set, err := prf.NewPRFSet(h)
	if err != nil {
		return nil, err
	}
	return set.ComputePrimaryPRF([]byte("lethe receipt tokens v1"), 32)
}
