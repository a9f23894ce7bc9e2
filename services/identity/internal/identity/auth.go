package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"lethe.dev/platform/errs"
	"lethe.dev/platform/ids"
)

// Argon2id parameters: OWASP's minimum recommendation (19 MiB, 2 passes, 1 lane).
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// HashPassword returns an argon2id hash in PHC string form.
func HashPassword(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// CheckPassword compares a password with a PHC argon2id hash in constant time.
func CheckPassword(password, phc string) bool {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return constantTimeEqual(got, want)
}

// dummyHash is checked against when an email is unknown, so unknown and known emails
// take the same time (no account enumeration by timing).
var dummyHash, _ = HashPassword("not a real password")

func signInKey(emailIndex []byte) []byte {
	h := sha256.Sum256(append([]byte("signin\x00"), emailIndex...))
	return h[:]
}

// Session is a device's remembered sign-in.
type Session struct {
	ID, MemberID, Device       string
	RememberMe                 bool
	Created, LastUsed, Expires time.Time
}

// Tokens are what a sign-in or refresh returns.
type Tokens struct {
	AccessToken  string
	AccessExpiry time.Time
	RefreshToken string
	Session      Session
}

// clientKey is the throttling key of one (account, client address) pair.
func clientKey(emailIndex []byte, clientIP string) []byte {
	h := sha256.Sum256(append(append(append([]byte("signin\x00"), emailIndex...), 0), clientIP...))
	return h[:]
}

// backoff is how long sign-in stays closed for one (account, client) after n failures:
// nothing below SignInFreeFailures, then SignInBaseLockout doubling with each further
// failure, at most SignInMaxLockout.
func backoff(n int) time.Duration {
	if n < SignInFreeFailures {
		return 0
	}
	d := SignInBaseLockout
	for i := SignInFreeFailures; i < n && d < SignInMaxLockout; i++ {
		d *= 2
	}
	return min(d, SignInMaxLockout)
}

func (s *Service) recordFailure(ctx context.Context, key, account []byte, now time.Time) error {
	// Failures older than SignInFailureMemory are forgotten: the count starts again.
	res, err := s.DB.ExecContext(ctx, `UPDATE sign_in_failures SET count = CASE WHEN window_start < $1 THEN 1 ELSE count + 1 END, window_start = $2 WHERE key = $3`,
		micros(now.Add(-SignInFailureMemory)), micros(now), key)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		_, err = s.DB.ExecContext(ctx, `INSERT INTO sign_in_failures (key, count, window_start, account_key) VALUES ($1, 1, $2, $3)
			ON CONFLICT (key) DO UPDATE SET count = sign_in_failures.count + 1, window_start = $2`, key, micros(now), account)
	}
	return err
}

// SignIn checks a password and opens a device session. Unknown email and wrong password
// give the same error. Failures are throttled per (account, client address) with
// exponential backoff, so guessing from one client slows that client down without
// locking the owner out from theirs. clientIP is the caller's address as the gateway
// saw it ("" for internal callers). With reactivate, a disabled account is re-enabled
// first (an "enabled" event stops its pending erasure).
func (s *Service) SignIn(ctx context.Context, email, password, device string, remember bool, clientIP string, reactivate bool) (*Tokens, error) {
	email = NormalizeEmail(email)
	var v errs.Violations
	if email == "" {
		v.Add("email", "is required")
	}
	if password == "" {
		v.Add("password", "is required")
	}
	if len(device) > 100 {
		v.Add("device_name", "at most 100 characters")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	now := s.now()
	idx := s.Keys.BlindIndex("email", email)
	key, account := clientKey(idx, clientIP), signInKey(idx)
	var failures int
	var last int64
	if err := s.DB.QueryRowContext(ctx, `SELECT count, window_start FROM sign_in_failures WHERE key = $1`, key).Scan(&failures, &last); err == nil &&
		last >= micros(now.Add(-SignInFailureMemory)) && fromMicros(last).Add(backoff(failures)).After(now) {
		return nil, errs.New(errs.ResourceExhausted, "TOO_MANY_ATTEMPTS", "too many failed sign-ins; try again later")
	}
	r, err := scanMember(s.DB.QueryRowContext(ctx, `SELECT `+memberCols+` FROM members WHERE email_index = $1`, idx))
	if err != nil {
		return nil, err
	}
	hash := dummyHash
	if r != nil {
		hash = r.passwordHash
	}
	if !CheckPassword(password, hash) || r == nil {
		if err := s.recordFailure(ctx, key, account, now); err != nil {
			return nil, err
		}
		return nil, ErrBadLogin
	}
	if r.state == StateDisabled && reactivate {
		if err := s.reactivate(ctx, r.id); err != nil {
			return nil, err
		}
		r.state = StateActive
	}
	if r.state != StateActive {
		return nil, errs.New(errs.PermissionDenied, "MEMBER_NOT_ACTIVE", "the account cannot sign in")
	}
	_, _ = s.DB.ExecContext(ctx, `DELETE FROM sign_in_failures WHERE key = $1`, key)
	_, a, err := s.decode(r)
	if err != nil {
		return nil, err
	}
	ttl := SessionTTL
	if remember {
		ttl = RememberedTTL
	}
	if device == "" {
		device = "unnamed device"
	}
	sess := Session{ID: ids.New(), MemberID: r.id, Device: device, RememberMe: remember, Created: now, LastUsed: now, Expires: now.Add(ttl)}
	encDevice, err := a.Encrypt([]byte(device), []byte("device:"+sess.ID))
	if err != nil {
		return nil, err
	}
	refresh := randomToken()
	if _, err := s.DB.ExecContext(ctx, `INSERT INTO sessions (id, member_id, device, remember_me, refresh_hash, created_at, last_used_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $6, $7)`, sess.ID, r.id, encDevice, remember, hashToken(refresh), micros(now), micros(sess.Expires)); err != nil {
		return nil, err
	}
	access, exp, err := s.accessToken(r.id, sess.ID, now, now)
	if err != nil {
		return nil, err
	}
	return &Tokens{AccessToken: access, AccessExpiry: exp, RefreshToken: refresh, Session: sess}, nil
}

var errBadRefresh = errs.New(errs.Unauthenticated, "INVALID_REFRESH_TOKEN", "the refresh token is not valid")

// Refresh rotates a refresh token and issues a new access token. Presenting a token
// that was already rotated out means it leaked: the whole session is revoked.
func (s *Service) Refresh(ctx context.Context, token string) (*Tokens, error) {
	if token == "" {
		return nil, errs.Invalid(errs.FieldViolation{Field: "refresh_token", Description: "is required"})
	}
	now := s.now()
	h := hashToken(token)
	var out *Tokens
	var reused bool
	err := s.DB.InTx(ctx, func(tx *sql.Tx) error {
		var sess Session
		var revoked sql.NullInt64
		var created, last, exp int64
		err := tx.QueryRowContext(ctx, `SELECT id, member_id, remember_me, created_at, last_used_at, expires_at, revoked_at FROM sessions WHERE refresh_hash = $1`, h).
			Scan(&sess.ID, &sess.MemberID, &sess.RememberMe, &created, &last, &exp, &revoked)
		if errors.Is(err, sql.ErrNoRows) {
			var sid string
			if tx.QueryRowContext(ctx, `SELECT id FROM sessions WHERE prev_refresh_hash = $1`, h).Scan(&sid) == nil {
				reused = true
				_, err := tx.ExecContext(ctx, `UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL`, micros(now), sid)
				return err
			}
			return errBadRefresh
		}
		if err != nil {
			return err
		}
		if revoked.Valid || exp <= micros(now) {
			return errBadRefresh
		}
		var state State
		if err := tx.QueryRowContext(ctx, `SELECT state FROM members WHERE id = $1`, sess.MemberID).Scan(&state); err != nil || state != StateActive {
			return errs.New(errs.PermissionDenied, "MEMBER_NOT_ACTIVE", "the account cannot sign in")
		}
		next := randomToken()
		if _, err := tx.ExecContext(ctx, `UPDATE sessions SET prev_refresh_hash = refresh_hash, refresh_hash = $1, last_used_at = $2 WHERE id = $3`, hashToken(next), micros(now), sess.ID); err != nil {
			return err
		}
		// auth_time stays the password sign-in's time (the session's creation): a
		// refresh is not a fresh sign-in.
		access, aexp, err := s.accessToken(sess.MemberID, sess.ID, fromMicros(created), now)
		if err != nil {
			return err
		}
		sess.Created, sess.LastUsed, sess.Expires = fromMicros(created), now, fromMicros(exp)
		out = &Tokens{AccessToken: access, AccessExpiry: aexp, RefreshToken: next, Session: sess}
		return nil
	})
	if reused {
		return nil, errs.New(errs.Unauthenticated, "REFRESH_TOKEN_REUSED", "the refresh token was already used; the session is revoked")
	}
	return out, err
}

// SignOut revokes the session owning a refresh token. Unknown tokens succeed too, so
// sign-out reveals nothing.
func (s *Service) SignOut(ctx context.Context, token string) error {
	_, err := s.DB.ExecContext(ctx, `UPDATE sessions SET revoked_at = $1 WHERE refresh_hash = $2 AND revoked_at IS NULL`, micros(s.now()), hashToken(token))
	return err
}

// Sessions lists a member's live sessions, newest first, with device names decrypted.
func (s *Service) Sessions(ctx context.Context, memberID string) ([]Session, error) {
	r, err := s.loadRow(ctx, s.DB, memberID)
	if err != nil {
		return nil, err
	}
	_, a, err := s.decode(r)
	if err != nil {
		return nil, err
	}
	rows, err := s.DB.QueryContext(ctx, `SELECT id, device, remember_me, created_at, last_used_at, expires_at FROM sessions
		WHERE member_id = $1 AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at DESC, id DESC`, memberID, micros(s.now()))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Session
	for rows.Next() {
		var x Session
		var dev []byte
		var c, l, e int64
		if err := rows.Scan(&x.ID, &dev, &x.RememberMe, &c, &l, &e); err != nil {
			return nil, err
		}
		name, err := a.Decrypt(dev, []byte("device:"+x.ID))
		if err != nil {
			return nil, err
		}
		x.MemberID, x.Device, x.Created, x.LastUsed, x.Expires = memberID, string(name), fromMicros(c), fromMicros(l), fromMicros(e)
		out = append(out, x)
	}
	return out, rows.Err()
}

// RevokeSession removes one device's access.
func (s *Service) RevokeSession(ctx context.Context, memberID, sessionID string) error {
	res, err := s.DB.ExecContext(ctx, `UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND member_id = $3 AND revoked_at IS NULL`, micros(s.now()), sessionID, memberID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errs.NotFoundf("SESSION_NOT_FOUND", "session")
	}
	return nil
}

// RevokeAll removes every device's access and returns how many sessions were live.
func (s *Service) RevokeAll(ctx context.Context, memberID string) (int, error) {
	if _, err := s.loadRow(ctx, s.DB, memberID); err != nil {
		return 0, err
	}
	res, err := s.DB.ExecContext(ctx, `UPDATE sessions SET revoked_at = $1 WHERE member_id = $2 AND revoked_at IS NULL AND expires_at > $1`, micros(s.now()), memberID)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// Message is an email to a member.
type Message struct {
	ID      string `json:"id"` // the outbox id: a resend after a crash carries the same one
	Kind    string `json:"kind"`
	To      string `json:"to"`
	Subject string `json:"subject"`
	Body    string `json:"body"`
}

// Sender delivers messages: SMTP in production, a file in development.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// SendCode emails a member a six-digit one-time code for a privacy request and returns
// the challenge id to check it against. At most five codes per member per hour.
func (s *Service) SendCode(ctx context.Context, memberID string, purpose int, reference string) (string, time.Time, error) {
	var v errs.Violations
	if purpose != 1 {
		v.Add("purpose", "must be VERIFICATION_PURPOSE_PRIVACY_REQUEST")
	}
	if len(reference) > 200 {
		v.Add("reference", "at most 200 characters")
	}
	if err := v.Err(); err != nil {
		return "", time.Time{}, err
	}
	now := s.now()
	var challenge string
	exp := now.Add(CodeTTL)
	err := s.DB.InTx(ctx, func(tx *sql.Tx) error {
		r, err := s.loadRow(ctx, tx, memberID)
		if err != nil {
			return err
		}
		var recent int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM verification_codes WHERE member_id = $1 AND created_at > $2`, memberID, micros(now.Add(-time.Hour))).Scan(&recent); err != nil {
			return err
		}
		if recent >= CodesPerHour {
			return errs.New(errs.ResourceExhausted, "TOO_MANY_CODES", "too many codes requested; try again later")
		}
		m, a, err := s.decode(r)
		if err != nil {
			return err
		}
		challenge = ids.New()
		code := randomDigits(6)
		if _, err := tx.ExecContext(ctx, `INSERT INTO verification_codes (id, member_id, code_hash, purpose, reference, attempts, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, 0, $6, $7)`, challenge, memberID, s.Keys.BlindIndex("code:"+challenge, code), purpose, reference, micros(now), micros(exp)); err != nil {
			return err
		}
		msg, _ := json.Marshal(Message{Kind: "verification_code", To: m.PII.Email, Subject: "Your verification code",
			Body: "Your code to confirm your privacy request is " + code + ". It expires in 15 minutes."})
		outID := ids.New()
		payload, err := a.Encrypt(msg, []byte("outbox:"+outID))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO outbox (id, member_id, kind, payload, created_at) VALUES ($1, $2, $3, $4, $5)`, outID, memberID, "verification_code", payload, micros(now))
		return err
	})
	return challenge, exp, err
}

// CheckCode checks a code: each code works once, within 15 minutes, and a challenge
// allows five attempts.
func (s *Service) CheckCode(ctx context.Context, memberID, challengeID, code string) (bool, string, error) {
	now := s.now()
	var ok bool
	var reference string
	err := s.DB.InTx(ctx, func(tx *sql.Tx) error {
		var hash []byte
		var attempts int
		var exp int64
		var used sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT code_hash, reference, attempts, expires_at, used_at FROM verification_codes WHERE id = $1 AND member_id = $2 AND purpose = 1`, challengeID, memberID).
			Scan(&hash, &reference, &attempts, &exp, &used)
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
			return errs.New(errs.FailedPrecondition, "CODE_EXPIRED", "the code expired; request a new one")
		case attempts >= CodeMaxAttempts:
			return errs.New(errs.ResourceExhausted, "TOO_MANY_ATTEMPTS", "too many wrong codes; request a new one")
		}
		ok = constantTimeEqual(hash, s.Keys.BlindIndex("code:"+challengeID, code))
		if ok {
			_, err = tx.ExecContext(ctx, `UPDATE verification_codes SET used_at = $1 WHERE id = $2`, micros(now), challengeID)
		} else {
			_, err = tx.ExecContext(ctx, `UPDATE verification_codes SET attempts = attempts + 1 WHERE id = $1`, challengeID)
		}
		return err
	})
	if err != nil {
		return false, "", err
	}
	return ok, reference, nil
}
