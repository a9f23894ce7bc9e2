package devstack

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pquerna/otp/totp"

	"lethe.dev/services/identity"
)

// BootstrapOperatorEmail is the dev stack's first operator.
const BootstrapOperatorEmail = "operator@lethe.invalid"

// OperatorCredentials are an operator's sign-in credentials. The dev stack creates a
// bootstrap operator on first start and keeps its credentials in
// DATA/identity/bootstrap-operator.json (mode 0600), so a restart reuses them.
type OperatorCredentials struct {
	Email      string `json:"email"`
	Password   string `json:"password"`
	TOTPSecret string `json:"totpSecret"`
}

// TOTPCode is the operator's TOTP code at t.
func (c OperatorCredentials) TOTPCode(t time.Time) string {
	code, _ := totp.GenerateCode(c.TOTPSecret, t)
	return code
}

// bootstrapOperator creates the bootstrap operator unless its credentials file exists.
func bootstrapOperator(ctx context.Context, id *identity.Service, dataDir string) (OperatorCredentials, string, error) {
	path := filepath.Join(dataDir, "identity", "bootstrap-operator.json")
	var c OperatorCredentials
	if raw, err := os.ReadFile(path); err == nil {
		return c, path, json.Unmarshal(raw, &c)
	} else if !errors.Is(err, os.ErrNotExist) {
		return c, path, err
	}
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	c = OperatorCredentials{Email: BootstrapOperatorEmail, Password: strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))}
	_, enrol, err := id.Domain.CreateOperator(ctx, c.Email, c.Password)
	if err != nil {
		return OperatorCredentials{}, path, err
	}
	c.TOTPSecret = enrol.Secret
	raw, _ := json.MarshalIndent(c, "", "  ")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return c, path, err
	}
	return c, path, os.WriteFile(path, raw, 0o600)
}
