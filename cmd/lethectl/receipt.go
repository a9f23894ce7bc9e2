package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
)

// receiptInvalid is the verdict that a receipt does not verify (exit status 1).
type receiptInvalid struct{ why string }

func (e *receiptInvalid) Error() string { return "receipt NOT valid: " + e.why }

// receiptPayload is what fulfillment signs (services/fulfillment/internal/request,
// Receipt): opaque ids, systems, actions, counts, processor acknowledgements, times.
type receiptPayload struct {
	RequestID   string    `json:"request_id"`
	TombstoneID string    `json:"tombstone_id"`
	Completed   time.Time `json:"completed"`
	Systems     []struct {
		Service string
		Results []struct {
			Dataset, Category, Action, LegalBasis string
			Count                                 int64
		}
	} `json:"systems"`
	Processors []struct {
		Partner      string
		Acknowledged bool
		Attempts     int
	} `json:"processors"`
	KeyID string `json:"key_id"`
}

func receiptCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "receipt",
		Short: "Verify erasure receipts offline (no account needed)",
	}
	var keysFile, keysURL string
	verify := &cobra.Command{
		Use:   "verify FILE",
		Short: "Check an erasure receipt's signature against the published receipt keys",
		Long: `Checks that an erasure receipt was signed by this Lethe deployment and not changed
since: its Ed25519 signature over the payload must verify with the published key the
receipt names (the payload names it too, under the signature). Needs no account and no
credential: members and regulators run it.

FILE (or - for standard input) is the receipt as the member fetched it:
  curl -s https://HOST/v1/receipts/REQUEST_ID:fetch -d '{"receiptToken":"…"}' > receipt.json

The keys come from --keys FILE (a saved copy of GET /v1/receipts:keys, for fully offline
checks), else --keys-url URL, else the gateway's public endpoint (--gateway)/v1/receipts:keys.

Exit status: 0 valid, 1 not valid, 2 could not check (unreadable file, keys unreachable).`,
		Example: `  lethectl receipt verify receipt.json --keys-url https://privacy.example.com/v1/receipts:keys
  curl -s https://privacy.example.com/v1/receipts:keys > keys.json; lethectl receipt verify receipt.json --keys keys.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keysFile != "" && keysURL != "" {
				return usageError("--keys and --keys-url exclude each other")
			}
			raw, err := readFile(args[0])
			if err != nil {
				return fmt.Errorf("receipt: %w", err)
			}
			receipt, perr := parseReceipt(raw)
			ctx, cancel := g.ctx(cmd.Context())
			defer cancel()
			keys, source, err := g.receiptKeys(ctx, keysFile, keysURL)
			if err != nil {
				return err
			}
			p, verr := (*receiptPayload)(nil), perr
			if perr == nil {
				p, verr = verifyReceipt(receipt, keys)
			}
			w := cmd.OutOrStdout()
			if g.output == "json" {
				res := map[string]any{"valid": verr == nil, "keys": source}
				if verr != nil {
					res["error"] = verr.Error()
				} else {
					var payload any
					_ = json.Unmarshal(receipt.GetPayload(), &payload)
					res["payload"] = payload
				}
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				if err := enc.Encode(res); err != nil {
					return err
				}
				return verr
			}
			if verr != nil {
				return verr
			}
			fmt.Fprintf(w, "receipt valid: signed by key %s (keys from %s)\n\n", p.KeyID, source)
			t := newTable(w, "erasure request", p.RequestID)
			t.row("tombstone", p.TombstoneID)
			t.row("completed", p.Completed.UTC().Format(time.RFC3339))
			if err := t.flush(); err != nil {
				return err
			}
			fmt.Fprintln(w)
			st := newTable(w, "SYSTEM", "DATASET", "CATEGORY", "ACTION", "RECORDS")
			for _, s := range p.Systems {
				for _, r := range s.Results {
					st.row(s.Service, r.Dataset, r.Category, short(r.Action, "ERASURE_ACTION_"), strconv.FormatInt(r.Count, 10))
				}
				if len(s.Results) == 0 {
					st.row(s.Service, "-", "-", "-", "0")
				}
			}
			if err := st.flush(); err != nil {
				return err
			}
			if len(p.Processors) > 0 {
				fmt.Fprintln(w)
				pt := newTable(w, "PROCESSOR", "ACKNOWLEDGED", "ATTEMPTS")
				for _, o := range p.Processors {
					pt.row(o.Partner, yesNo(o.Acknowledged), strconv.Itoa(o.Attempts))
				}
				return pt.flush()
			}
			return nil
		},
	}
	verify.Flags().StringVar(&keysFile, "keys", "", "a saved copy of the published receipt keys (JSON of GET /v1/receipts:keys)")
	verify.Flags().StringVar(&keysURL, "keys-url", "", "where the receipt keys are published, e.g. https://HOST/v1/receipts:keys")
	c.AddCommand(verify)
	return c
}

// parseReceipt reads a receipt as the gateway serves it (protojson of ErasureReceipt)
// strictly: no unknown fields, and payload and signature in canonical base64, so that no
// changed byte of the file reads as the same receipt.
func parseReceipt(raw []byte) (*fulfillmentv1.ErasureReceipt, error) {
	r := &fulfillmentv1.ErasureReceipt{}
	if err := protojson.Unmarshal(raw, r); err != nil {
		return nil, &receiptInvalid{"the file is not an erasure receipt (" + err.Error() + ")"}
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, &receiptInvalid{"the file is not an erasure receipt"}
	}
	for name, want := range map[string][]byte{"payload": r.GetPayload(), "signature": r.GetSignature()} {
		var s string
		if err := json.Unmarshal(fields[name], &s); err != nil || s != base64.StdEncoding.EncodeToString(want) {
			return nil, &receiptInvalid{"the " + name + " is not in canonical base64"}
		}
	}
	if r.GetKeyId() == "" {
		return nil, &receiptInvalid{"the receipt names no key (keyId)"}
	}
	return r, nil
}

// verifyReceipt checks a receipt against published keys: the payload names the key that
// signed it (under the signature), the receipt's key_id must agree, the key must be
// published as Ed25519, and the signature must verify over the exact payload bytes.
// Fulfillment signs with a Tink ED25519 RAW key: a plain RFC 8032 signature, which
// crypto/ed25519 verifies.
func verifyReceipt(r *fulfillmentv1.ErasureReceipt, keys *fulfillmentv1.ReceiptKeys) (*receiptPayload, error) {
	if len(r.GetPayload()) == 0 || len(r.GetSignature()) == 0 {
		return nil, &receiptInvalid{"the file has no payload or no signature"}
	}
	var p receiptPayload
	if err := json.Unmarshal(r.GetPayload(), &p); err != nil {
		return nil, &receiptInvalid{"the payload is not the JSON fulfillment signs"}
	}
	if p.KeyID == "" {
		return nil, &receiptInvalid{"the payload names no signing key"}
	}
	if r.GetKeyId() != p.KeyID {
		return nil, &receiptInvalid{fmt.Sprintf("the receipt names key %s but its signed payload key %s", r.GetKeyId(), p.KeyID)}
	}
	for _, k := range keys.GetKeys() {
		if k.GetKeyId() != p.KeyID {
			continue
		}
		if !strings.EqualFold(k.GetAlgorithm(), "Ed25519") || len(k.GetPublicKey()) != ed25519.PublicKeySize {
			return nil, &receiptInvalid{fmt.Sprintf("published key %s is not an Ed25519 public key", p.KeyID)}
		}
		if !ed25519.Verify(ed25519.PublicKey(k.GetPublicKey()), r.GetPayload(), r.GetSignature()) {
			return nil, &receiptInvalid{fmt.Sprintf("the signature does not verify with published key %s: the receipt was changed or not signed by this deployment", p.KeyID)}
		}
		return &p, nil
	}
	return nil, &receiptInvalid{fmt.Sprintf("key %s is not among the %d published keys", p.KeyID, len(keys.GetKeys()))}
}

// receiptKeys reads the published keys from a file, a URL, or the gateway, and says
// where they came from.
func (g *globals) receiptKeys(ctx context.Context, file, url string) (*fulfillmentv1.ReceiptKeys, string, error) {
	keys := &fulfillmentv1.ReceiptKeys{}
	switch {
	case file != "":
		if err := readProtoJSON(file, keys); err != nil {
			return nil, "", fmt.Errorf("keys %s: %w", file, err)
		}
		return keys, file, nil
	case url != "":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, "", err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, "", fmt.Errorf("keys: %w", err)
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return nil, "", fmt.Errorf("keys: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, "", fmt.Errorf("keys: %s answered %s", url, resp.Status)
		}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, keys); err != nil {
			return nil, "", fmt.Errorf("keys from %s: %w", url, err)
		}
		return keys, url, nil
	}
	pub := g.public()
	keys, err := fulfillmentv1.NewFulfillmentServiceClient(pub).GetReceiptKeys(ctx, &fulfillmentv1.GetReceiptKeysRequest{})
	if err != nil {
		return nil, "", fmt.Errorf("keys from %s: %w", pub.base, err)
	}
	return keys, strings.TrimRight(pub.base, "/") + "/v1/receipts:keys", nil
}

// readFile reads a file, or standard input for "-".
func readFile(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(io.LimitReader(os.Stdin, 16<<20))
	}
	return os.ReadFile(path)
}

// readProtoJSON reads a message as the gateway's JSON from a file or "-" (stdin).
func readProtoJSON(path string, m proto.Message) error {
	raw, err := readFile(path)
	if err != nil {
		return err
	}
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(raw, m)
}
