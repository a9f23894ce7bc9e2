package drp_test

import (
	"testing"
	"time"

	"lethe.dev/platform/errs"
	"lethe.dev/platform/storage"
	"lethe.dev/platform/storage/storagetest"
	"lethe.dev/services/fulfillment/internal/drp"
	"lethe.dev/services/fulfillment/internal/store"
)

func TestStore(t *testing.T) {
	storagetest.Engines(t, store.Migrations, func(t *testing.T, db *storage.DB) {
		ctx := t.Context()
		s := &drp.Store{DB: db}
		now := time.Now().UTC()

		// Agents and tokens: a deleted agent's tokens stop working.
		if err := s.CreateAgent(ctx, drp.Agent{ID: "AA", Name: "Agent", VerifyKey: make([]byte, 32), Contact: "c", Created: now}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateAgent(ctx, drp.Agent{ID: "AA", Name: "Again", VerifyKey: make([]byte, 32), Contact: "c", Created: now}); errs.ReasonOf(err) != "AGENT_EXISTS" {
			t.Fatalf("duplicate agent: %v", err)
		}
		tok, err := s.IssueToken(ctx, "AA", now)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := s.TokenAgent(ctx, tok); got != "AA" {
			t.Fatalf("token agent = %q", got)
		}
		if got, _ := s.TokenAgent(ctx, tok+"x"); got != "" {
			t.Fatalf("a wrong token names %q", got)
		}
		if err := s.DeleteAgent(ctx, "AA"); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.TokenAgent(ctx, tok); got != "" {
			t.Fatalf("a deleted agent's token still names %q", got)
		}

		// Replay: a body is accepted once per scope, until it expires.
		for i, want := range []bool{true, false} {
			if ok, err := s.FirstUse(ctx, "request", "body", now.Add(time.Minute), now); err != nil || ok != want {
				t.Fatalf("use %d: %v %v, want %v", i, ok, err, want)
			}
		}
		if ok, _ := s.FirstUse(ctx, "revoke/x", "body", now.Add(time.Minute), now); !ok {
			t.Fatal("another scope is not a replay")
		}
		if ok, _ := s.FirstUse(ctx, "old", "b", now.Add(-time.Minute), now.Add(-2*time.Minute)); !ok {
			t.Fatal("first use of an old body")
		}
		if ok, _ := s.FirstUse(ctx, "old", "b", now.Add(time.Minute), now); !ok {
			t.Fatal("an expired entry must be purged")
		}

		// The status log keeps changes only, and nothing after a final status.
		for _, st := range [][2]string{{"in_progress", "need_user_verification"}, {"in_progress", "need_user_verification"}, {"in_progress", ""}, {"fulfilled", ""}, {"revoked", ""}} {
			if _, err := s.Log(ctx, "r1", st[0], st[1], now); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Entries(ctx, "r1", 0)
		if err != nil {
			t.Fatal(err)
		}
		want := []drp.Entry{{1, "in_progress", "need_user_verification"}, {2, "in_progress", ""}, {3, "fulfilled", ""}}
		if len(got) != len(want) {
			t.Fatalf("log = %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("log = %v, want %v", got, want)
			}
		}
		if after, _ := s.Entries(ctx, "r1", 2); len(after) != 1 || after[0].Seq != 3 {
			t.Fatalf("entries after 2 = %v", after)
		}
	})
}
