package identity

import (
	"context"
	"time"
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
}

// Purge deletes expired and revoked sessions, used and expired verification codes,
// delivered mail and consumed events past their retention periods, then scrubs the
// database files (see storage.DB.Scrub). Idempotent; run on a schedule.
func (s *Service) Purge(ctx context.Context) (Purged, error) {
	now := s.now()
	var out Purged
	for _, d := range []struct {
		n    *int64
		q    string
		args []any
	}{
		{&out.Sessions, `DELETE FROM sessions WHERE expires_at < $1 OR (revoked_at IS NOT NULL AND revoked_at < $1)`, []any{micros(now.Add(-SessionRetention))}},
		{&out.Codes, `DELETE FROM verification_codes WHERE expires_at < $1 OR (used_at IS NOT NULL AND used_at < $1)`, []any{micros(now.Add(-CodeRetention))}},
		{&out.Mail, `DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1`, []any{micros(now.Add(-SentMailRetention))}},
		{&out.Events, `DELETE FROM events WHERE consumed_at IS NOT NULL AND consumed_at < $1`, []any{micros(now.Add(-EventRetention))}},
	} {
		res, err := s.DB.ExecContext(ctx, d.q, d.args...)
		if err != nil {
			return out, err
		}
		*d.n, _ = res.RowsAffected()
	}
	if err := s.DB.Scrub(ctx); err != nil {
		return out, err
	}
	if s.Vacuum != nil && out.Sessions+out.Codes+out.Mail+out.Events > 0 {
		s.Vacuum.Dirty()
	}
	return out, nil
}
