package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/tink-crypto/tink-go/v2/jwt"
	"github.com/tink-crypto/tink-go/v2/tink"

	privacyv1 "lethe.dev/gen/lethe/privacy/v1"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/ids"
	"lethe.dev/platform/legalhold"
	"lethe.dev/platform/shred"
	"lethe.dev/platform/storage"
	"lethe.dev/services/identity/internal/keys"
)

// Tunables with the values the policies and common practice call for.
const (
	AccessTokenTTL      = 15 * time.Minute
	RememberedTTL       = 30 * 24 * time.Hour
	SessionTTL          = 12 * time.Hour
	CodeTTL             = 15 * time.Minute
	CodeMaxAttempts     = 5
	CodesPerHour        = 5
	SignInFreeFailures  = 5              // wrong passwords per (account, client) before backoff
	SignInBaseLockout   = time.Minute    // the first backoff, doubling per further failure
	SignInMaxLockout    = time.Hour      // the longest backoff
	SignInFailureMemory = 24 * time.Hour // failures older than this are forgotten
	Issuer              = "lethe-identity"
)

// Service is the identity domain service.
type Service struct {
	DB     *storage.DB
	Keys   *keys.Ring
	Sender Sender
	Logger *slog.Logger
	// Vacuum reclaims erased members' rows (with their wrapped keys) on PostgreSQL;
	// nil on SQLite.
	Vacuum *shred.Vacuumer
	Now    func() time.Time
	// Holds answers whether a member's data is on legal hold (fulfillment): erasure
	// refuses and the retention purge keeps the member's records while it is, or while
	// it cannot be told. nil: no holds (identity run without fulfillment).
	Holds legalhold.Checker
}

// Errors callers branch on.
var (
	ErrNotFound = errs.NotFoundf("MEMBER_NOT_FOUND", "member")
	ErrBadLogin = errs.New(errs.Unauthenticated, "INVALID_CREDENTIALS", "email or password is wrong")
)

func (s *Service) now() time.Time { return s.Now().UTC() }

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func hashToken(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

type memberRow struct {
	id, passwordHash string
	state            State
	emailIndex, pii  []byte
	wrapped          []byte
	version          int64
	created, updated int64
}

const memberCols = `id, state, email_index, pii, wrapped_key, password_hash, version, created_at, updated_at`

type querier interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

func scanMember(row *sql.Row) (*memberRow, error) {
	var r memberRow
	err := row.Scan(&r.id, &r.state, &r.emailIndex, &r.pii, &r.wrapped, &r.passwordHash, &r.version, &r.created, &r.updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return &r, err
}

func (s *Service) loadRow(ctx context.Context, q querier, id string) (*memberRow, error) {
	r, err := scanMember(q.QueryRowContext(ctx, `SELECT `+memberCols+` FROM members WHERE id = $1`, id))
	if err != nil || r != nil {
		return r, err
	}
	// An erased member answers exactly like one that never existed: the tombstone is for
	// idempotent erasure and ReportSubjectData, not for telling anyone the account was here.
	return nil, ErrNotFound
}

func (s *Service) decode(r *memberRow) (*Member, tink.AEAD, error) {
	a, err := s.Keys.MemberKey(r.id, r.wrapped)
	if err != nil {
		return nil, nil, err
	}
	plain, err := a.Decrypt(r.pii, []byte("pii:"+r.id))
	if err != nil {
		return nil, nil, fmt.Errorf("identity: decrypt personal data: %w", err)
	}
	m := &Member{ID: r.id, State: r.state, Version: r.version, Created: fromMicros(r.created), Updated: fromMicros(r.updated)}
	if err := json.Unmarshal(plain, &m.PII); err != nil {
		return nil, nil, err
	}
	return m, a, nil
}

// Create signs a member up. A retry with the same requestID returns the same member. An
// address that already has an account gets an answer of the same shape and its owner an
// email (see decoy), so sign-up does not reveal which addresses are registered.
func (s *Service) Create(ctx context.Context, p PII, password, requestID string) (*Member, error) {
	p.Email = NormalizeEmail(p.Email)
	now := s.now()
	v := p.Validate("member", now, nil)
	if n := len(password); n < minPassword || n > maxPassword {
		v.Add("password", "must be 10 to 1024 characters")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if requestID != "" {
		var id string
		err := s.DB.QueryRowContext(ctx, `SELECT id FROM members WHERE create_request_id = $1`, requestID).Scan(&id)
		if err == nil {
			return s.Get(ctx, id)
		}
	}
	id := ids.New()
	wrapped, a, err := s.Keys.NewMemberKey(id)
	if err != nil {
		return nil, err
	}
	plain, _ := json.Marshal(p)
	ct, err := a.Encrypt(plain, []byte("pii:"+id))
	if err != nil {
		return nil, err
	}
	hash, err := HashPassword(password)
	if err != nil {
		return nil, err
	}
	var reqID any
	if requestID != "" {
		reqID = requestID
	}
	_, err = s.DB.ExecContext(ctx, `INSERT INTO members (id, state, email_index, pii, wrapped_key, password_hash, create_request_id, version, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8)`,
		id, StateActive, s.Keys.BlindIndex("email", p.Email), ct, wrapped, hash, reqID, micros(now))
	if storage.IsUniqueViolation(err) {
		if requestID != "" { // a concurrent retry of the same sign-up won the race
			var existing string
			if s.DB.QueryRowContext(ctx, `SELECT id FROM members WHERE create_request_id = $1`, requestID).Scan(&existing) == nil {
				return s.Get(ctx, existing)
			}
		}
		return s.decoy(ctx, p, requestID, now)
	}
	if err != nil {
		return nil, err
	}
	return &Member{ID: id, State: StateActive, PII: p, Version: 1, Created: now, Updated: now}, nil
}

// Get returns a member, decrypted.
func (s *Service) Get(ctx context.Context, id string) (*Member, error) {
	r, err := s.loadRow(ctx, s.DB, id)
	if err != nil {
		return nil, err
	}
	m, _, err := s.decode(r)
	return m, err
}

// Lookup finds a member by email through the blind index.
func (s *Service) Lookup(ctx context.Context, email string) (*Member, error) {
	var v errs.Violations
	email = NormalizeEmail(email)
	if !validEmail(email) {
		v.Add("email", "must be a valid email address")
		return nil, v.Err()
	}
	r, err := scanMember(s.DB.QueryRowContext(ctx, `SELECT `+memberCols+` FROM members WHERE email_index = $1`, s.Keys.BlindIndex("email", email)))
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, ErrNotFound
	}
	m, _, err := s.decode(r)
	return m, err
}

// Update changes the fields named in mask. etag, when given, must match the member's
// current version (optimistic concurrency).
func (s *Service) Update(ctx context.Context, id string, in PII, mask []string, etag string) (*Member, error) {
	var v errs.Violations
	fields := map[string]bool{}
	for _, f := range mask {
		if f == "email" {
			v.Add("update_mask", "the email is changed with ChangeEmail (current password and a code sent to the new address)")
			continue
		}
		if !updatableFields[f] {
			v.Add("update_mask", "unknown or read-only field path")
			continue
		}
		fields[f] = true
	}
	if len(mask) == 0 {
		v.Add("update_mask", "must name at least one field")
	}
	if fields["email"] {
		in.Email = NormalizeEmail(in.Email)
	}
	if err := errors.Join(v.Err()); err != nil {
		return nil, err
	}
	if vv := in.Validate("member", s.now(), fields); len(vv) > 0 {
		return nil, vv.Err()
	}
	var out *Member
	err := s.DB.InTx(ctx, func(tx *sql.Tx) error {
		r, err := s.loadRow(ctx, tx, id)
		if err != nil {
			return err
		}
		if r.state != StateActive {
			return errs.New(errs.FailedPrecondition, "MEMBER_NOT_ACTIVE", "only active accounts can be changed")
		}
		if etag != "" && etag != strconv.FormatInt(r.version, 10) {
			return errs.New(errs.Aborted, "ETAG_MISMATCH", "the member changed since it was read")
		}
		m, a, err := s.decode(r)
		if err != nil {
			return err
		}
		p := m.PII
		if fields["full_name"] {
			p.FullName = in.FullName
		}
		if fields["email"] {
			p.Email = in.Email
		}
		if fields["phone_number"] {
			p.Phone = in.Phone
		}
		if fields["postal_address"] {
			p.Address = in.Address
		}
		if fields["birth_date"] {
			p.BirthDate = in.BirthDate
		}
		if fields["payment_method_ref"] {
			p.PaymentRef = in.PaymentRef
		}
		plain, _ := json.Marshal(p)
		ct, err := a.Encrypt(plain, []byte("pii:"+id))
		if err != nil {
			return err
		}
		now := s.now()
		_, err = tx.ExecContext(ctx, `UPDATE members SET pii = $1, email_index = $2, version = version + 1, updated_at = $3 WHERE id = $4`,
			ct, s.Keys.BlindIndex("email", p.Email), micros(now), id)
		if storage.IsUniqueViolation(err) {
			return &errs.Error{Code: errs.AlreadyExists, Reason: "EMAIL_TAKEN", Message: "an account with this email exists",
				Violations: []errs.FieldViolation{{Field: "member.email", Description: "is already registered"}}}
		}
		if err != nil {
			return err
		}
		m.PII, m.Version, m.Updated = p, r.version+1, now
		out = m
		return nil
	})
	return out, err
}

// List pages through members, newest first. The page token is the last row's
// (created_at, id), opaque to callers.
func (s *Service) List(ctx context.Context, pageSize int, pageToken string) ([]*Member, string, error) {
	if pageSize == 0 {
		pageSize = 50
	}
	if pageSize < 0 || pageSize > 500 {
		return nil, "", errs.Invalid(errs.FieldViolation{Field: "page_size", Description: "must be between 0 and 500"})
	}
	cursorTS, cursorID := int64(1<<62), ""
	if pageToken != "" {
		ts, id, ok := decodeCursor(pageToken)
		if !ok {
			return nil, "", errs.Invalid(errs.FieldViolation{Field: "page_token", Description: "is not a token this API issued"})
		}
		cursorTS, cursorID = ts, id
	}
	rows, err := s.DB.QueryContext(ctx, `SELECT `+memberCols+` FROM members
		WHERE created_at < $1 OR (created_at = $1 AND id < $2) ORDER BY created_at DESC, id DESC LIMIT $3`, cursorTS, cursorID, pageSize+1)
	if cursorID == "" {
		rows, err = s.DB.QueryContext(ctx, `SELECT `+memberCols+` FROM members
			WHERE created_at <= $1 ORDER BY created_at DESC, id DESC LIMIT $2`, cursorTS, pageSize+1)
	}
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var out []*Member
	var last *memberRow
	for rows.Next() {
		var r memberRow
		if err := rows.Scan(&r.id, &r.state, &r.emailIndex, &r.pii, &r.wrapped, &r.passwordHash, &r.version, &r.created, &r.updated); err != nil {
			return nil, "", err
		}
		if len(out) == pageSize {
			return out, encodeCursor(last.created, last.id), rows.Err()
		}
		m, _, err := s.decode(&r)
		if err != nil {
			return nil, "", err
		}
		out = append(out, m)
		last = &r
	}
	return out, "", rows.Err()
}

func encodeCursor(ts int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(ts, 10) + "/" + id))
}

func decodeCursor(tok string) (int64, string, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, "", false
	}
	a, b, ok := strings.Cut(string(raw), "/")
	ts, err := strconv.ParseInt(a, 10, 64)
	return ts, b, ok && err == nil && ids.Valid(b)
}

// setState moves an active member to state and revokes every session at once.
func (s *Service) setState(ctx context.Context, id string, state State, event string) (*Member, error) {
	err := s.DB.InTx(ctx, func(tx *sql.Tx) error {
		r, err := s.loadRow(ctx, tx, id)
		if err != nil {
			return err
		}
		if r.state == state {
			return nil // idempotent
		}
		if r.state != StateActive && !(state == StateChildReported && r.state == StateDisabled) {
			return errs.New(errs.FailedPrecondition, "MEMBER_NOT_ACTIVE", "the account is not active")
		}
		now := micros(s.now())
		if _, err := tx.ExecContext(ctx, `UPDATE members SET state = $1, version = version + 1, updated_at = $2 WHERE id = $3`, state, now, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE sessions SET revoked_at = $1 WHERE member_id = $2 AND revoked_at IS NULL`, now, id); err != nil {
			return err
		}
		if event != "" {
			_, err = tx.ExecContext(ctx, `INSERT INTO events (id, member_id, kind, created_at) VALUES ($1, $2, $3, $4)`, ids.New(), id, event, now)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.Get(ctx, id)
}

// Disable disables an account and revokes every session.
func (s *Service) Disable(ctx context.Context, id string) (*Member, error) {
	return s.setState(ctx, id, StateDisabled, "disabled")
}

// reactivate re-enables a disabled account, recording an "enabled" event (fulfillment
// stops the account's pending erasure on it). Only a disabled account: a child's or an
// erased one stays as it is.
func (s *Service) reactivate(ctx context.Context, id string) error {
	return s.DB.InTx(ctx, func(tx *sql.Tx) error {
		now := micros(s.now())
		res, err := tx.ExecContext(ctx, `UPDATE members SET state = $1, version = version + 1, updated_at = $2 WHERE id = $3 AND state = $4`, StateActive, now, id, StateDisabled)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errs.New(errs.FailedPrecondition, "MEMBER_NOT_ACTIVE", "the account cannot sign in")
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO events (id, member_id, kind, created_at) VALUES ($1, $2, $3, $4)`, ids.New(), id, "enabled", now)
		return err
	})
}

// ReportChild marks an account as a child's, revokes every session, and records a
// child_reported event that starts expedited erasure.
func (s *Service) ReportChild(ctx context.Context, id string) (*Member, error) {
	return s.setState(ctx, id, StateChildReported, "child_reported")
}

// Event is a domain event for other services.
type Event struct {
	ID, MemberID, Kind string
	Time               time.Time
}

// PendingEvents returns events not yet consumed, oldest first.
func (s *Service) PendingEvents(ctx context.Context, kind string, limit int) ([]Event, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT id, member_id, kind, created_at FROM events WHERE consumed_at IS NULL AND kind = $1 ORDER BY created_at LIMIT $2`, kind, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var ts int64
		if err := rows.Scan(&e.ID, &e.MemberID, &e.Kind, &ts); err != nil {
			return nil, err
		}
		e.Time = fromMicros(ts)
		out = append(out, e)
	}
	return out, rows.Err()
}

// ConsumeEvent marks an event handled.
func (s *Service) ConsumeEvent(ctx context.Context, id string) error {
	_, err := s.DB.ExecContext(ctx, `UPDATE events SET consumed_at = $1 WHERE id = $2`, micros(s.now()), id)
	return err
}

// Held is one dataset still held for a member.
type Held struct {
	Dataset, Category, LegalBasis string
	Count                         int64
}

// ErasureResult is what an erasure did to one dataset.
type ErasureResult struct {
	Dataset    string                  `json:"dataset"`
	Category   string                  `json:"category"`
	Action     privacyv1.ErasureAction `json:"action"`
	Count      int64                   `json:"count"`
	LegalBasis string                  `json:"legal_basis,omitempty"`
}

// Erasure is a finished erasure.
type Erasure struct {
	Results  []ErasureResult `json:"results"`
	Time     time.Time       `json:"time"`
	Replayed bool            `json:"-"`
}

// Erase crypto-shreds and deletes a member: the wrapped data key goes with the row, so
// every copy of their ciphertext (backups, replicas) becomes unreadable. A tombstone
// without personal data answers retries. Idempotent per member.
func (s *Service) Erase(ctx context.Context, id, requestID, tombstoneID string) (*Erasure, error) {
	if err := legalhold.Refuse(ctx, s.Holds, id, s.Logger); err != nil {
		return nil, err
	}
	if err := s.deliverFor(ctx, id); err != nil {
		return nil, err
	}
	var out *Erasure
	err := s.DB.InTx(ctx, func(tx *sql.Tx) error {
		var stored []byte
		err := tx.QueryRowContext(ctx, `SELECT result FROM tombstones WHERE member_id = $1`, id).Scan(&stored)
		if err == nil {
			out = &Erasure{Replayed: true}
			return json.Unmarshal(stored, out)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var emailIndex []byte
		if err := tx.QueryRowContext(ctx, `SELECT email_index FROM members WHERE id = $1`, id).Scan(&emailIndex); errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		res := []ErasureResult{
			{Dataset: "account", Category: "user.contact", Action: privacyv1.ErasureAction_ERASURE_ACTION_DELETE, Count: 1},
			{Dataset: "data_key", Category: "user", Action: privacyv1.ErasureAction_ERASURE_ACTION_DELETE, Count: 1},
		}
		for _, d := range []struct{ dataset, category, table string }{
			{"sessions", "user.device", "sessions"},
			{"verification_codes", "user.authorization.credentials", "verification_codes"},
			{"outbox", "user.contact.email", "outbox"},
			{"events", "user.account", "events"},
		} {
			del, err := tx.ExecContext(ctx, `DELETE FROM `+d.table+` WHERE member_id = $1`, id)
			if err != nil {
				return err
			}
			n, err := del.RowsAffected() // what was there: one statement, not a count and a delete
			if err != nil {
				return err
			}
			res = append(res, ErasureResult{Dataset: d.dataset, Category: d.category, Action: privacyv1.ErasureAction_ERASURE_ACTION_DELETE, Count: n})
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM sign_in_failures WHERE key = $1 OR account_key = $1`, signInKey(emailIndex)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM members WHERE id = $1`, id); err != nil {
			return err
		}
		res = append(res, ErasureResult{Dataset: "tombstone", Category: "user.unique_id", Action: privacyv1.ErasureAction_ERASURE_ACTION_RETAIN, Count: 1, LegalBasis: LegalBasisTombstone})
		out = &Erasure{Results: res, Time: s.now()}
		raw, _ := json.Marshal(out)
		_, err = tx.ExecContext(ctx, `INSERT INTO tombstones (member_id, tombstone_id, request_id, erased_at, result) VALUES ($1, $2, $3, $4, $5)`,
			id, tombstoneID, requestID, micros(out.Time), raw)
		return err
	})
	if err != nil {
		return nil, err
	}
	// The deleted row held the wrapped key: SQLite (secure_delete) still has the old
	// pages in its WAL until a checkpoint; PostgreSQL keeps the dead tuple until VACUUM.
	if err := s.DB.Scrub(ctx); err != nil {
		return nil, err
	}
	if s.Vacuum != nil {
		s.Vacuum.Dirty()
	}
	return out, nil
}

// LegalBasisTombstone justifies keeping the opaque id of an erased member.
const LegalBasisTombstone = "accountability record of the erasure (GDPR Art. 5(2)); opaque id only"

// Report lists what is held for a member.
func (s *Service) Report(ctx context.Context, id string) ([]Held, error) {
	held, err := s.DB.Held(ctx, []storage.Dataset{ // one statement: one round trip, one snapshot
		{Name: "account", Category: "user.contact", Count: `SELECT COUNT(*) FROM members WHERE id = $1`},
		{Name: "sessions", Category: "user.device", Count: `SELECT COUNT(*) FROM sessions WHERE member_id = $1`},
		{Name: "verification_codes", Category: "user.authorization.credentials", Count: `SELECT COUNT(*) FROM verification_codes WHERE member_id = $1`},
		{Name: "outbox", Category: "user.contact.email", Count: `SELECT COUNT(*) FROM outbox WHERE member_id = $1`},
		{Name: "events", Category: "user.account", Count: `SELECT COUNT(*) FROM events WHERE member_id = $1`},
		{Name: "tombstone", Category: "user.unique_id", Count: `SELECT COUNT(*) FROM tombstones WHERE member_id = $1`, LegalBasis: LegalBasisTombstone},
	}, id)
	if err != nil {
		return nil, err
	}
	var out []Held
	for _, h := range held {
		out = append(out, Held{Dataset: h.Name, Category: h.Category, Count: h.Rows, LegalBasis: h.LegalBasis})
	}
	return out, nil
}

// The roles an access token carries. Operators are a separate principal: their own
// accounts (operators.go), never members with a flag.
const (
	RoleMember   = "member"
	RoleOperator = "operator"
)

// accessToken signs a member's access token. authTime is when the member last entered
// their password (the OIDC auth_time claim, seconds); it is what "recent sign-in" means.
func (s *Service) accessToken(memberID, sessionID string, authTime, now time.Time) (string, time.Time, error) {
	return s.signToken(memberID, sessionID, RoleMember, authTime, now)
}

func (s *Service) signToken(subject, sessionID, role string, authTime, now time.Time) (string, time.Time, error) {
	exp := now.Add(AccessTokenTTL)
	iss, sub := Issuer, subject
	tok, err := s.Keys.Sign(&jwt.RawJWTOptions{
		Subject: &sub, Issuer: &iss, IssuedAt: &now, ExpiresAt: &exp,
		CustomClaims: map[string]any{"sid": sessionID, "role": role, "auth_time": authTime.Unix()},
	})
	return tok, exp, err
}

func randomDigits(n int) string {
	max := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
	v, _ := rand.Int(rand.Reader, max)
	return fmt.Sprintf("%0*d", n, v)
}

func constantTimeEqual(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
