package identity_test

import (
	"context"
	"fmt"
	"testing"

	identityv1 "lethe.dev/gen/lethe/identity/v1"
	"lethe.dev/platform/storage/storagetest"
)

// Benchmarks run over real loopback gRPC against SQLite; `make bench` runs them.

func BenchmarkCreateMember(b *testing.B) {
	h := start(b, storagetest.SQLiteURL(b))
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		m := ada()
		m.Email = fmt.Sprintf("bench%d@example.com", i)
		if _, err := h.client.CreateMember(ctx, &identityv1.CreateMemberRequest{Member: m, Password: "correct horse battery"}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetMember(b *testing.B) {
	h := start(b, storagetest.SQLiteURL(b))
	m := create(b, h, ada(), "")
	ctx := context.Background()
	for b.Loop() {
		if _, err := h.client.GetMember(ctx, &identityv1.GetMemberRequest{Name: m.GetName()}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignIn(b *testing.B) {
	h := start(b, storagetest.SQLiteURL(b))
	create(b, h, ada(), "")
	ctx := context.Background()
	for b.Loop() {
		if _, err := h.client.SignIn(ctx, &identityv1.SignInRequest{Email: "ada.lovelace@example.com", Password: "correct horse battery", DeviceName: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
}
