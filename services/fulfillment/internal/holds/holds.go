// Package holds owns fulfillment's member_holds table: legal holds on all of one
// member's data, with a reason and an expiry, set and released by operators. The API
// (grpcapi) writes it; the erasure workflow's activities and the retention purge read it.
package holds

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"lethe.dev/platform/storage"
)

// Hold is one member's legal hold.
type Hold struct {
	MemberID string
	Reason   string
	Expire   time.Time
	SetBy    string
	Set      time.Time
	Released time.Time // zero while not released by an operator
}

// Active reports whether the hold blocks deletion at now.
func (h Hold) Active(now time.Time) bool {
	return h.MemberID != "" && h.Released.IsZero() && now.Before(h.Expire)
}

// Get returns the member's hold, or a zero Hold when none was ever set.
func Get(ctx context.Context, db *storage.DB, member string) (Hold, error) {
	h := Hold{MemberID: member}
	var exp, set int64
	var rel sql.NullInt64
	err := db.QueryRowContext(ctx, `SELECT reason, expire_at, set_by, set_at, released_at FROM member_holds WHERE member_id = $1`, member).
		Scan(&h.Reason, &exp, &h.SetBy, &set, &rel)
	if errors.Is(err, sql.ErrNoRows) {
		return Hold{}, nil
	}
	if err != nil {
		return Hold{}, err
	}
	h.Expire, h.Set = time.UnixMicro(exp).UTC(), time.UnixMicro(set).UTC()
	if rel.Valid {
		h.Released = time.UnixMicro(rel.Int64).UTC()
	}
	return h, nil
}

// Set puts (or replaces) the member's hold.
func Set(ctx context.Context, db *storage.DB, h Hold) error {
	_, err := db.ExecContext(ctx, `INSERT INTO member_holds (member_id, reason, expire_at, set_by, set_at, released_at) VALUES ($1, $2, $3, $4, $5, NULL)
		ON CONFLICT (member_id) DO UPDATE SET reason = excluded.reason, expire_at = excluded.expire_at, set_by = excluded.set_by, set_at = excluded.set_at, released_at = NULL`,
		h.MemberID, h.Reason, h.Expire.UnixMicro(), h.SetBy, h.Set.UnixMicro())
	return err
}

// Release ends the member's hold at now; a hold already released keeps its first release.
func Release(ctx context.Context, db *storage.DB, member string, now time.Time) error {
	_, err := db.ExecContext(ctx, `UPDATE member_holds SET released_at = $1 WHERE member_id = $2 AND released_at IS NULL`, now.UnixMicro(), member)
	return err
}

// ActiveMembers returns the members whose hold is active at now (for purges).
func ActiveMembers(ctx context.Context, db *storage.DB, now time.Time) (map[string]bool, error) {
	rows, err := db.QueryContext(ctx, `SELECT member_id FROM member_holds WHERE released_at IS NULL AND expire_at > $1`, now.UnixMicro())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			return nil, err
		}
		out[m] = true
	}
	return out, rows.Err()
}
