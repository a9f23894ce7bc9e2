package audit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"lethe.dev/platform/authz"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/storage"
	"lethe.dev/platform/storage/storagetest"
	"lethe.dev/services/fulfillment/internal/audit"
	"lethe.dev/services/fulfillment/internal/store"
)

func TestAppendIsIdempotentAndListPagesNewestFirst(t *testing.T) {
	storagetest.Engines(t, store.Migrations, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		s := &audit.Store{DB: db, Now: func() time.Time { now = now.Add(time.Second); return now }}
		for i := range 7 {
			target := fmt.Sprintf("members/member%04d/privacyRequests/req%05d", i%2, i)
			if err := s.Record(ctx, authz.Event{Actor: "operators/op00000001", Action: "lethe.fulfillment.v1.FulfillmentService/SetLegalHold", Target: target, Reason: "case", RequestID: fmt.Sprint("r", i)}); err != nil {
				t.Fatal(err)
			}
		}
		// A retried append lands once.
		if err := s.Record(ctx, authz.Event{Actor: "operators/op00000001", Action: "x", Target: "t", RequestID: "r0"}); err != nil {
			t.Fatal(err)
		}
		var seen []string
		tok := ""
		for {
			page, next, err := s.List(ctx, 3, tok, "")
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page {
				seen = append(seen, e.Target)
			}
			if next == "" {
				break
			}
			tok = next
		}
		if len(seen) != 7 || seen[0] != "members/member0000/privacyRequests/req00006" || seen[6] != "members/member0000/privacyRequests/req00000" {
			t.Fatalf("pages = %v", seen)
		}
		mine, _, err := s.List(ctx, 50, "", "members/member0001")
		if err != nil || len(mine) != 3 {
			t.Fatalf("by member: %d %v", len(mine), err)
		}
		if _, _, err := s.List(ctx, 50, "bogus", ""); err == nil {
			t.Fatal("a forged page token was accepted")
		}
		counts, err := s.Counts(ctx, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
		if err != nil || counts["lethe.fulfillment.v1.FulfillmentService/SetLegalHold"] != 7 {
			t.Fatalf("counts %v %v", counts, err)
		}
		if err := s.Record(ctx, authz.Event{Actor: "members/someone", Action: "x", RequestID: "r9"}); errs.CodeOf(err) != errs.InvalidArgument {
			t.Fatalf("a non-operator actor: %v", err)
		}
	})
}
