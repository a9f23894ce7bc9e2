package logging_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	identityv1 "lethe.dev/gen/lethe/identity/v1"
	"lethe.dev/platform/logging"
)

func TestProtoAttributesAreRedacted(t *testing.T) {
	var buf bytes.Buffer
	logger := logging.New(&buf, slog.LevelDebug, true)
	m := &identityv1.Member{
		Name: "members/m1", FullName: "Ada Lovelace", Email: "ada@example.com", PhoneNumber: "+14155550100",
		PostalAddress: &identityv1.PostalAddress{Locality: "London"},
		Etag:          "v7",
	}
	logger.Info("updated", "member", m)
	logger.With("req", &identityv1.SignInRequest{Email: "ada@example.com", Password: "hunter22hunter"}).Info("sign in")
	out := buf.String()
	for _, secret := range []string{"Ada", "ada@example.com", "+1415", "London", "hunter22", "members/m1"} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{"[redacted user.contact.email]", "[redacted user.contact.address.city]", `"etag":"v7"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
