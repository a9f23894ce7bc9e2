package identity

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"lethe.dev/platform/errs"
	"lethe.dev/platform/ids"
	"lethe.dev/platform/storage"
)

// Operator sign-in settings.
const (
	// OperatorPasswordMin is the shortest operator password accepted.
	OperatorPasswordMin = 16
	// OperatorMaxFailures wrong sign-ins lock an operator account for OperatorLockout:
	// staff accounts guard every member's data, and the gateway limits attempts per IP.
	OperatorMaxFailures = 5
	OperatorLockout     = 5 * time.Minute
	totpPeriod          = 30
)

var totpOpts = totp.ValidateOpts{Period: totpPeriod, Skew: 1, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// Operator is a privacy-staff account.
type Operator struct {
	ID      string
	Email   string
	Created time.Time
}

// TOTPEnrolment is an operator's second factor, shown once at creation.
type TOTPEnrolment struct {
	Secret string // base32
	URI    string // otpauth://
}

// ErrBadOperatorLogin answers every failed operator sign-in alike (unknown email, wrong
// password, wrong or replayed code).
var ErrBadOperatorLogin = errs.New(errs.Unauthenticated, "INVALID_CREDENTIALS", "email, password or code is not correct")

func operatorKeyID(id string) string { return "operator/" + id }

// CreateOperator creates an operator with a password and a new TOTP secret.
func (s *Service) CreateOperator(ctx context.Context, email, password string) (*Operator, *TOTPEnrolment, error) {
	email = NormalizeEmail(email)
	var v errs.Violations
	if at := strings.IndexByte(email, '@'); at < 1 || at == len(email)-1 || len(email) > 254 {
		v.Add("email", "must be an email address")
	}
	if n := len([]rune(password)); n < OperatorPasswordMin || len(password) > 1024 {
		v.Add("password", "must have at least 16 characters")
	}
	if err := v.Err(); err != nil {
		return nil, nil, err
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: "Lethe", AccountName: email, Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return nil, nil, err
	}
	hash, err := HashPassword(password)
	if err != nil {
		return nil, nil, err
	}
	op := &Operator{ID: ids.New(), Email: email, Created: s.now()}
	wrapped, a, err := s.Keys.NewMemberKey(operatorKeyID(op.ID))
	if err != nil {
		return nil, nil, err
	}
	sealed, err := a.Encrypt([]byte(key.Secret()), []byte("totp:"+op.ID))
	if err != nil {
		return nil, nil, err
	}
	_, err = s.DB.ExecContext(ctx, `INSERT INTO operators (id, email, password_hash, wrapped_key, totp_secret, last_totp_step, failures, locked_until, created_at)
		VALUES ($1, $2, $3, $4, $5, 0, 0, 0, $6)`, op.ID, email, hash, wrapped, sealed, micros(op.Created))
	if storage.IsUniqueViolation(err) {
		return nil, nil, errs.New(errs.AlreadyExists, "OPERATOR_EXISTS", "an operator with this email exists")
	}
	if err != nil {
		return nil, nil, err
	}
	return op, &TOTPEnrolment{Secret: key.Secret(), URI: key.URL()}, nil
}

// SignInOperator checks an operator's password and TOTP code and issues an access token
// with role "operator" and the operator id as subject. A code is accepted once: a
// replayed (or older) code fails.
func (s *Service) SignInOperator(ctx context.Context, email, password, code string) (*Tokens, error) {
	email = NormalizeEmail(email)
	var v errs.Violations
	if email == "" {
		v.Add("email", "is required")
	}
	if password == "" {
		v.Add("password", "is required")
	}
	if len(code) != 6 {
		v.Add("totp_code", "must be the 6-digit code from the authenticator")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	now := s.now()
	var id, hash string
	var wrapped, sealed []byte
	var lastStep, lockedUntil int64
	var failures int
	err := s.DB.QueryRowContext(ctx, `SELECT id, password_hash, wrapped_key, totp_secret, last_totp_step, failures, locked_until FROM operators WHERE email = $1`, email).
		Scan(&id, &hash, &wrapped, &sealed, &lastStep, &failures, &lockedUntil)
	if errors.Is(err, sql.ErrNoRows) {
		CheckPassword(password, dummyHash) // the same work as for a known email
		return nil, ErrBadOperatorLogin
	}
	if err != nil {
		return nil, err
	}
	if lockedUntil > micros(now) {
		return nil, errs.New(errs.ResourceExhausted, "TOO_MANY_ATTEMPTS", "too many failed sign-ins; try again later")
	}
	step := int64(-1)
	if CheckPassword(password, hash) {
		a, err := s.Keys.MemberKey(operatorKeyID(id), wrapped)
		if err != nil {
			return nil, err
		}
		secret, err := a.Decrypt(sealed, []byte("totp:"+id))
		if err != nil {
			return nil, err
		}
		for skew := -int64(totpOpts.Skew); skew <= int64(totpOpts.Skew); skew++ {
			at := now.Add(time.Duration(skew*totpPeriod) * time.Second)
			want, err := totp.GenerateCodeCustom(string(secret), at, totpOpts)
			if err == nil && constantTimeEqual([]byte(want), []byte(code)) {
				step = at.Unix() / totpPeriod
			}
		}
	}
	if step <= lastStep {
		failures++
		locked := int64(0)
		if failures >= OperatorMaxFailures {
			failures, locked = 0, micros(now.Add(OperatorLockout))
		}
		if _, err := s.DB.ExecContext(ctx, `UPDATE operators SET failures = $1, locked_until = $2 WHERE id = $3`, failures, locked, id); err != nil {
			return nil, err
		}
		return nil, ErrBadOperatorLogin
	}
	// Consume the code: the step only moves forward, so a concurrent replay loses.
	res, err := s.DB.ExecContext(ctx, `UPDATE operators SET last_totp_step = $1, failures = 0, locked_until = 0 WHERE id = $2 AND last_totp_step < $1`, step, id)
	if err != nil {
		return nil, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, ErrBadOperatorLogin
	}
	access, exp, err := s.signToken(id, "op"+ids.New(), RoleOperator, now, now)
	if err != nil {
		return nil, err
	}
	return &Tokens{AccessToken: access, AccessExpiry: exp}, nil
}

// OperatorByEmail returns an operator, or nil.
func (s *Service) OperatorByEmail(ctx context.Context, email string) (*Operator, error) {
	op := &Operator{}
	var created int64
	err := s.DB.QueryRowContext(ctx, `SELECT id, email, created_at FROM operators WHERE email = $1`, NormalizeEmail(email)).Scan(&op.ID, &op.Email, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	op.Created = fromMicros(created)
	return op, err
}
