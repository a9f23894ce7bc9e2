package identity

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	"github.com/tink-crypto/tink-go/v2/tink"

	"lethe.dev/platform/errs"
	"lethe.dev/platform/ids"
	"lethe.dev/platform/storage"
)

// purposeEmailChange is VERIFICATION_PURPOSE_EMAIL_CHANGE.
const purposeEmailChange = 2

// ChangeEmail starts an email change: the current password must be right, and a code
// goes to the new address. The new address is kept only as ciphertext under the
// member's key until the code confirms it. A wrong password counts against the
// sign-in throttle of the account and client, like a failed sign-in.
func (s *Service) ChangeEmail(ctx context.Context, memberID, newEmail, password, clientIP string) (string, time.Time, error) {
	newEmail = NormalizeEmail(newEmail)
	var v errs.Violations
	if !validEmail(newEmail) {
		v.Add("new_email", "must be a valid email address")
	}
	if password == "" {
		v.Add("current_password", "is required")
	}
	if err := v.Err(); err != nil {
		return "", time.Time{}, err
	}
	now := s.now()
	r, err := s.loadRow(ctx, s.DB, memberID)
	if err != nil {
		return "", time.Time{}, err
	}
	if r.state != StateActive {
		return "", time.Time{}, errs.New(errs.FailedPrecondition, "MEMBER_NOT_ACTIVE", "only active accounts can be changed")
	}
	key, account := clientKey(r.emailIndex, clientIP), signInKey(r.emailIndex)
	var failures int
	var last int64
	if err := s.DB.QueryRowContext(ctx, `SELECT count, window_start FROM sign_in_failures WHERE key = $1`, key).Scan(&failures, &last); err == nil &&
		last >= micros(now.Add(-SignInFailureMemory)) && fromMicros(last).Add(backoff(failures)).After(now) {
		return "", time.Time{}, errs.New(errs.ResourceExhausted, "TOO_MANY_ATTEMPTS", "too many wrong passwords; try again later")
	}
	if !CheckPassword(password, r.passwordHash) {
		if err := s.recordFailure(ctx, key, account, now); err != nil {
			return "", time.Time{}, err
		}
		return "", time.Time{}, &errs.Error{Code: errs.InvalidArgument, Reason: "WRONG_PASSWORD", Message: "the current password is wrong",
			Violations: []errs.FieldViolation{{Field: "current_password", Description: "is wrong"}}}
	}
	m, a, err := s.decode(r)
	if err != nil {
		return "", time.Time{}, err
	}
	if newEmail == m.PII.Email {
		return "", time.Time{}, errs.Invalid(errs.FieldViolation{Field: "new_email", Description: "is the current address"})
	}
	challenge, exp := ids.New(), now.Add(CodeTTL)
	err = s.DB.InTx(ctx, func(tx *sql.Tx) error {
		var recent int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM verification_codes WHERE member_id = $1 AND created_at > $2`, memberID, micros(now.Add(-time.Hour))).Scan(&recent); err != nil {
			return err
		}
		if recent >= CodesPerHour {
			return errs.New(errs.ResourceExhausted, "TOO_MANY_CODES", "too many codes requested; try again later")
		}
		sealed, err := a.Encrypt([]byte(newEmail), []byte("email-change:"+challenge))
		if err != nil {
			return err
		}
		code := randomDigits(6)
		if _, err := tx.ExecContext(ctx, `INSERT INTO verification_codes (id, member_id, code_hash, purpose, reference, attempts, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, 0, $6, $7)`, challenge, memberID, s.Keys.BlindIndex("code:"+challenge, code), purposeEmailChange,
			base64.RawStdEncoding.EncodeToString(sealed), micros(now), micros(exp)); err != nil {
			return err
		}
		return s.queue(ctx, tx, memberID, a, Message{Kind: "email_change_code", To: newEmail, Subject: "Confirm your new email address",
			Body: "Your code to confirm this address for your account is " + code + ". It expires in 15 minutes. If you did not ask for this, ignore this message.\n"}, now)
	})
	if err != nil {
		return "", time.Time{}, err
	}
	return challenge, exp, nil
}

// ConfirmEmailChange applies an email change with the code sent to the new address,
// tells the old address, and revokes every session except keepSession (the caller's).
func (s *Service) ConfirmEmailChange(ctx context.Context, memberID, challengeID, code, keepSession string) (*Member, error) {
	if !ids.Valid(challengeID) || len(code) != 6 {
		return nil, errs.Invalid(errs.FieldViolation{Field: "code", Description: "challenge_id and the six-digit code are required"})
	}
	now := s.now()
	var out *Member
	var wrong bool
	err := s.DB.InTx(ctx, func(tx *sql.Tx) error {
		var hash []byte
		var sealed string
		var attempts int
		var exp int64
		var used sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT code_hash, reference, attempts, expires_at, used_at FROM verification_codes WHERE id = $1 AND member_id = $2 AND purpose = $3`,
			challengeID, memberID, purposeEmailChange).Scan(&hash, &sealed, &attempts, &exp, &used)
		if errors.Is(err, sql.ErrNoRows) {
			return errs.NotFoundf("CHALLENGE_NOT_FOUND", "verification challenge")
		}
		if err != nil {
			return err
		}
		switch {
		case used.Valid:
			return errs.New(errs.FailedPrecondition, "CODE_USED", "the code was already used")
		case exp <= micros(now):
			return errs.New(errs.FailedPrecondition, "CODE_EXPIRED", "the code expired; start the change again")
		case attempts >= CodeMaxAttempts:
			return errs.New(errs.ResourceExhausted, "TOO_MANY_ATTEMPTS", "too many wrong codes; start the change again")
		}
		if !constantTimeEqual(hash, s.Keys.BlindIndex("code:"+challengeID, code)) {
			wrong = true
			_, err := tx.ExecContext(ctx, `UPDATE verification_codes SET attempts = attempts + 1 WHERE id = $1`, challengeID)
			return err
		}
		r, err := s.loadRow(ctx, tx, memberID)
		if err != nil {
			return err
		}
		if r.state != StateActive {
			return errs.New(errs.FailedPrecondition, "MEMBER_NOT_ACTIVE", "only active accounts can be changed")
		}
		m, a, err := s.decode(r)
		if err != nil {
			return err
		}
		ct, err := base64.RawStdEncoding.DecodeString(sealed)
		if err != nil {
			return err
		}
		newEmail, err := a.Decrypt(ct, []byte("email-change:"+challengeID))
		if err != nil {
			return err
		}
		oldEmail := m.PII.Email
		m.PII.Email = string(newEmail)
		plain, _ := json.Marshal(m.PII)
		pii, err := a.Encrypt(plain, []byte("pii:"+memberID))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE members SET pii = $1, email_index = $2, version = version + 1, updated_at = $3 WHERE id = $4`,
			pii, s.Keys.BlindIndex("email", m.PII.Email), micros(now), memberID)
		if storage.IsUniqueViolation(err) {
			return &errs.Error{Code: errs.AlreadyExists, Reason: "EMAIL_TAKEN", Message: "an account with this email exists",
				Violations: []errs.FieldViolation{{Field: "new_email", Description: "is already registered"}}}
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE verification_codes SET used_at = $1, reference = '' WHERE id = $2`, micros(now), challengeID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE sessions SET revoked_at = $1 WHERE member_id = $2 AND id <> $3 AND revoked_at IS NULL`, micros(now), memberID, keepSession); err != nil {
			return err
		}
		if err := s.queue(ctx, tx, memberID, a, Message{Kind: "email_changed", To: oldEmail, Subject: "Your email address was changed",
			Body: "The email address of your account was changed, and every other device was signed out. If this was not you, contact us at once.\n"}, now); err != nil {
			return err
		}
		m.Version, m.Updated = r.version+1, now
		out = m
		return nil
	})
	if err == nil && wrong {
		return nil, &errs.Error{Code: errs.InvalidArgument, Reason: "CODE_WRONG", Message: "the code is wrong",
			Violations: []errs.FieldViolation{{Field: "code", Description: "is wrong"}}}
	}
	return out, err
}

// queue puts a message for a member in the outbox, sealed under their key.
func (s *Service) queue(ctx context.Context, tx *sql.Tx, memberID string, a tink.AEAD, m Message, now time.Time) error {
	raw, _ := json.Marshal(m)
	id := ids.New()
	payload, err := a.Encrypt(raw, []byte("outbox:"+id))
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO outbox (id, member_id, kind, payload, created_at) VALUES ($1, $2, $3, $4, $5)`, id, memberID, m.Kind, payload, micros(now))
	return err
}
