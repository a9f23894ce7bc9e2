package identity

import (
	"context"
	"fmt"
	"strings"
	"time"

	"lethe.dev/platform/legalhold"
)

// Retention periods: how long records that have served their purpose are kept before
// Purge deletes them (documented in the README).
const (
	SessionRetention  = 30 * 24 * time.Hour // after a session expired or was revoked
	CodeRetention     = 24 * time.Hour      // after a verification code was used or expired
	SentMailRetention = 30 * 24 * time.Hour // after a message was delivered
	EventRetention    = 30 * 24 * time.Hour // after an event was consumed
)

// Purged counts what one Purge deleted.
type Purged struct {
	Sessions, Codes, Mail, Events int64
	// Held counts the members whose records were kept because their data is on legal
	// hold, or because their holds could not be read.
	Held int
}

// purge is one retention rule: the rows of table past their period.
type purge struct {
	n     *int64
	table string
	where string // with the cutoff as $1
}

// Purge deletes expired and revoked sessions, used and expired verification codes,
// delivered mail and consumed events past their retention periods, then scrubs the
// database files (see storage.DB.Scrub). A member whose data is on legal hold keeps
// every record until the hold ends; when the holds cannot be read for a member, that
// member's records are kept too (fail closed) and the next run tries again.
// Idempotent; run on a schedule.
func (s *Service) Purge(ctx context.Context) (Purged, error) {
	now := s.now()
	var out Purged
	rules := []struct {
		purge
		cutoff time.Time
	}{
		{purge{&out.Sessions, "sessions", `expires_at < $1 OR (revoked_at IS NOT NULL AND revoked_at < $1)`}, now.Add(-SessionRetention)},
		{purge{&out.Codes, "verification_codes", `expires_at < $1 OR (used_at IS NOT NULL AND used_at < $1)`}, now.Add(-CodeRetention)},
		{purge{&out.Mail, "outbox", `sent_at IS NOT NULL AND sent_at < $1`}, now.Add(-SentMailRetention)},
		{purge{&out.Events, "events", `consumed_at IS NOT NULL AND consumed_at < $1`}, now.Add(-EventRetention)},
	}
	keep := map[string]bool{} // members whose records stay this run
	for _, r := range rules {
		members, err := s.purgeable(ctx, r.table, r.where, micros(r.cutoff))
		if err != nil {
			return out, err
		}
		for _, m := range members {
			if _, seen := keep[m]; seen {
				continue
			}
			keep[m] = legalhold.Refuse(ctx, s.Holds, m, s.Logger) != nil
		}
	}
	var held []any
	for m, k := range keep {
		if k {
			held = append(held, m)
		}
	}
	out.Held = len(held)
	for _, r := range rules {
		q := `DELETE FROM ` + r.table + ` WHERE (` + r.where + `)`
		if len(held) > 0 {
			ph := make([]string, len(held))
			for i := range held {
				ph[i] = fmt.Sprintf("$%d", i+2)
			}
			q += ` AND member_id NOT IN (` + strings.Join(ph, ", ") + `)`
		}
		res, err := s.DB.ExecContext(ctx, q, append([]any{micros(r.cutoff)}, held...)...)
		if err != nil {
			return out, err
		}
		*r.n, _ = res.RowsAffected()
	}
	if err := s.DB.Scrub(ctx); err != nil {
		return out, err
	}
	if s.Vacuum != nil && out.Sessions+out.Codes+out.Mail+out.Events > 0 {
		s.Vacuum.Dirty()
	}
	return out, nil
}

// purgeable lists the members with rows of table past their retention period.
func (s *Service) purgeable(ctx context.Context, table, where string, cutoff int64) ([]string, error) {
	if s.Holds == nil {
		return nil, nil // no holds to ask: nothing to keep
	}
	rows, err := s.DB.QueryContext(ctx, `SELECT DISTINCT member_id FROM `+table+` WHERE `+where, cutoff)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}
