package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"lethe.dev/platform/grpcserver/grpctest"
	"lethe.dev/platform/storage/storagetest"
	"lethe.dev/services/identity"
)

// TestOperatorsCreate runs `lethectl operators create` against a real identity server
// and signs in with what it printed.
func TestOperatorsCreate(t *testing.T) {
	dir := t.TempDir()
	id, err := identity.New(context.Background(), identity.Config{DatabaseURL: storagetest.SQLiteURL(t), DataDir: dir, KEKURI: "file:" + filepath.Join(dir, "kek.json"), KeyRotation: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	addr := grpctest.Serve(t, id.Register)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"operators", "create", "-email", "dpo@example.com", "-identity", addr}, &out); err != nil {
		t.Fatal(err)
	}
	field := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `:\s+(\S+)$`).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("no %s in\n%s", name, out.String())
		}
		return m[1]
	}
	password, secret := field("password"), field("totp secret")
	if len(password) < 16 {
		t.Fatalf("generated password %q is weak", password)
	}
	code, _ := totp.GenerateCode(secret, time.Now())
	if _, err := id.Domain.SignInOperator(context.Background(), "dpo@example.com", password, code); err != nil {
		t.Fatalf("sign in with the printed credentials: %v", err)
	}
	var codeOut bytes.Buffer
	if err := run(context.Background(), []string{"operators", "code", "-secret", secret}, &codeOut); err != nil || len(bytes.TrimSpace(codeOut.Bytes())) != 6 {
		t.Fatalf("operators code: %q %v", codeOut.String(), err)
	}
	if err := run(context.Background(), []string{"members", "list"}, &out); err == nil {
		t.Fatal("an unknown command succeeded")
	}
}
