package identity_test

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestPurgeDeletesWhatOutlivedItsPurpose: sessions, codes, delivered mail and consumed
// events past their retention periods are deleted; live and recent ones stay.
func TestPurgeDeletesWhatOutlivedItsPurpose(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		id := strings.TrimPrefix(create(t, h, ada(), "purge-1").GetName(), "members/")
		now := time.Now()
		old := now.Add(-40 * 24 * time.Hour).UnixMicro()
		recent := now.Add(-time.Hour).UnixMicro()
		future := now.Add(24 * time.Hour).UnixMicro()
		db := h.svc.Domain.DB
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`INSERT INTO sessions (id, member_id, device, remember_me, refresh_hash, created_at, last_used_at, expires_at) VALUES ('s-old', $1, $2, FALSE, $2, $3, $3, $3)`, []any{id, []byte("x"), old}},
			{`INSERT INTO sessions (id, member_id, device, remember_me, refresh_hash, created_at, last_used_at, expires_at, revoked_at) VALUES ('s-revoked', $1, $2, FALSE, $2, $3, $3, $4, $3)`, []any{id, []byte("y"), old, future}},
			{`INSERT INTO sessions (id, member_id, device, remember_me, refresh_hash, created_at, last_used_at, expires_at) VALUES ('s-live', $1, $2, FALSE, $2, $3, $3, $4)`, []any{id, []byte("z"), recent, future}},
			{`INSERT INTO verification_codes (id, member_id, code_hash, purpose, reference, attempts, created_at, expires_at, used_at) VALUES ('c-used', $1, $2, 1, '', 0, $3, $4, $3)`, []any{id, []byte("h"), old, future}},
			{`INSERT INTO verification_codes (id, member_id, code_hash, purpose, reference, attempts, created_at, expires_at) VALUES ('c-live', $1, $2, 1, '', 0, $3, $4)`, []any{id, []byte("h"), recent, future}},
			{`INSERT INTO outbox (id, member_id, kind, payload, created_at, sent_at) VALUES ('m-sent', $1, 'x', $2, $3, $3)`, []any{id, []byte("p"), old}},
			{`INSERT INTO outbox (id, member_id, kind, payload, created_at) VALUES ('m-pending', $1, 'x', $2, $3)`, []any{id, []byte("p"), old}},
			{`INSERT INTO events (id, member_id, kind, created_at, consumed_at) VALUES ('e-done', $1, 'x', $2, $2)`, []any{id, old}},
			{`INSERT INTO events (id, member_id, kind, created_at) VALUES ('e-pending', $1, 'x', $2)`, []any{id, old}},
		} {
			if _, err := db.ExecContext(ctx, q.sql, q.args...); err != nil {
				t.Fatalf("%s: %v", q.sql, err)
			}
		}
		got, err := h.svc.Domain.Purge(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.Sessions < 2 || got.Codes < 1 || got.Mail < 1 || got.Events < 1 {
			t.Fatalf("purged %+v", got)
		}
		for table, keep := range map[string][]string{"sessions": {"s-live"}, "verification_codes": {"c-live"}, "outbox": {"m-pending"}, "events": {"e-pending"}} {
			for _, gone := range []string{"s-old", "s-revoked", "c-used", "m-sent", "e-done"} {
				var n int
				db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table+` WHERE id = $1`, gone).Scan(&n)
				if n != 0 {
					t.Errorf("%s %s outlived its retention period", table, gone)
				}
			}
			for _, k := range keep {
				var n int
				db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table+` WHERE id = $1`, k).Scan(&n)
				if n != 1 {
					t.Errorf("%s %s was purged while still in use", table, k)
				}
			}
		}
	})
}
