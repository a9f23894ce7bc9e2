package identity

import (
	"context"
	"database/sql"
	"encoding/base32"
	"encoding/json"
	"strings"
	"time"

	"lethe.dev/platform/ids"
)

// SignUpNoticeEvery limits "someone tried to sign up with your address" mails to one
// per account per period, so sign-up cannot be used to flood a member's inbox.
const SignUpNoticeEvery = time.Hour

// decoy answers a sign-up with an address that already has an account. The answer has
// the shape of a successful sign-up (a member with a fresh-looking id that exists
// nowhere), so sign-up does not tell anyone whether an address is registered; the
// account's owner is emailed instead. A retry with the same request id gets the same
// decoy id.
func (s *Service) decoy(ctx context.Context, p PII, requestID string, now time.Time) (*Member, error) {
	id := ids.New()
	if requestID != "" {
		raw := s.Keys.BlindIndex("signup-decoy", requestID+"\x00"+p.Email)
		id = strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw[:16]))
	}
	if err := s.noticeSignUpAttempt(ctx, p.Email, now); err != nil {
		return nil, err
	}
	return &Member{ID: id, State: StateActive, PII: p, Version: 1, Created: now, Updated: now}, nil
}

// noticeSignUpAttempt queues the mail to the owner of email, at most once per
// SignUpNoticeEvery.
func (s *Service) noticeSignUpAttempt(ctx context.Context, email string, now time.Time) error {
	return s.DB.InTx(ctx, func(tx *sql.Tx) error {
		r, err := scanMember(tx.QueryRowContext(ctx, `SELECT `+memberCols+` FROM members WHERE email_index = $1`, s.Keys.BlindIndex("email", email)))
		if err != nil || r == nil {
			return err
		}
		var recent int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox WHERE member_id = $1 AND kind = 'signup_attempt' AND created_at > $2`,
			r.id, micros(now.Add(-SignUpNoticeEvery))).Scan(&recent); err != nil || recent > 0 {
			return err
		}
		m, a, err := s.decode(r)
		if err != nil {
			return err
		}
		msg, _ := json.Marshal(Message{Kind: "signup_attempt", To: m.PII.Email, Subject: "Someone tried to sign up with your email address",
			Body: "Someone tried to sign up for a new account with this email address, which already has an account with us. " +
				"If it was you, sign in instead (or reset your password). If it was not, you can ignore this message: nothing was changed.\n"})
		outID := ids.New()
		payload, err := a.Encrypt(msg, []byte("outbox:"+outID))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO outbox (id, member_id, kind, payload, created_at) VALUES ($1, $2, $3, $4, $5)`, outID, r.id, "signup_attempt", payload, micros(now))
		return err
	})
}
