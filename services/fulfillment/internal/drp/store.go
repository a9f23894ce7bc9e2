package drp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"time"

	"lethe.dev/platform/errs"
	"lethe.dev/platform/storage"
)

// Store reads and writes the drp_* tables; nothing else touches them.
type Store struct {
	DB *storage.DB
}

// Agent is a registered authorized agent.
type Agent struct {
	ID, Name, Contact string
	VerifyKey         []byte
	Created           time.Time
}

// CreateAgent registers an agent; an existing id is ALREADY_EXISTS.
func (s *Store) CreateAgent(ctx context.Context, a Agent) error {
	_, err := s.DB.ExecContext(ctx, `INSERT INTO drp_agents (id, display_name, verify_key, contact, created_at) VALUES ($1, $2, $3, $4, $5)`,
		a.ID, a.Name, a.VerifyKey, a.Contact, a.Created.UnixMicro())
	if storage.IsUniqueViolation(err) {
		return errs.New(errs.AlreadyExists, "AGENT_EXISTS", "an agent with this id is registered")
	}
	return err
}

// Agent loads an agent.
func (s *Store) Agent(ctx context.Context, id string) (*Agent, error) {
	var a Agent
	var created int64
	err := s.DB.QueryRowContext(ctx, `SELECT id, display_name, verify_key, contact, created_at FROM drp_agents WHERE id = $1`, id).Scan(&a.ID, &a.Name, &a.VerifyKey, &a.Contact, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errs.NotFoundf("AGENT_NOT_FOUND", "authorized agent")
	}
	a.Created = time.UnixMicro(created).UTC()
	return &a, err
}

// Agents lists agents ordered by id, after the id after.
func (s *Store) Agents(ctx context.Context, after string, n int) ([]Agent, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT id, display_name, verify_key, contact, created_at FROM drp_agents WHERE id > $1 ORDER BY id LIMIT $2`, after, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Agent
	for rows.Next() {
		var a Agent
		var created int64
		if err := rows.Scan(&a.ID, &a.Name, &a.VerifyKey, &a.Contact, &created); err != nil {
			return nil, err
		}
		a.Created = time.UnixMicro(created).UTC()
		out = append(out, a)
	}
	return out, rows.Err()
}

// DeleteAgent removes an agent and its tokens.
func (s *Store) DeleteAgent(ctx context.Context, id string) error {
	return s.DB.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM drp_agents WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errs.NotFoundf("AGENT_NOT_FOUND", "authorized agent")
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM drp_tokens WHERE agent_id = $1`, id)
		return err
	})
}

func hash(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

// IssueToken creates a bearer token for an agent; only its hash is stored.
func (s *Store) IssueToken(ctx context.Context, agentID string, now time.Time) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	_, err := s.DB.ExecContext(ctx, `INSERT INTO drp_tokens (token_hash, agent_id, created_at) VALUES ($1, $2, $3)`, hash(tok), agentID, now.UnixMicro())
	return tok, err
}

// TokenAgent returns the agent a token belongs to, or "" when it is not a token.
func (s *Store) TokenAgent(ctx context.Context, token string) (string, error) {
	if token == "" || len(token) > 200 {
		return "", nil
	}
	var agent string
	err := s.DB.QueryRowContext(ctx, `SELECT t.agent_id FROM drp_tokens t JOIN drp_agents a ON a.id = t.agent_id WHERE t.token_hash = $1`, hash(token)).Scan(&agent)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return agent, err
}

// FirstUse records a signed body as accepted until expires; it reports false when the
// same body (under the same scope) was accepted before: a replay.
func (s *Store) FirstUse(ctx context.Context, scope, body string, expires, now time.Time) (bool, error) {
	// Expired entries can go: their bodies fail the expiry check anyway.
	if _, err := s.DB.ExecContext(ctx, `DELETE FROM drp_seen_bodies WHERE expires_at < $1`, now.UnixMicro()); err != nil {
		return false, err
	}
	_, err := s.DB.ExecContext(ctx, `INSERT INTO drp_seen_bodies (body_hash, expires_at) VALUES ($1, $2)`, hash(scope+"\x00"+body), expires.UnixMicro())
	if storage.IsUniqueViolation(err) {
		return false, nil
	}
	return err == nil, err
}

// Record is a stored DRP request. Status, Reason and Details are the stored outcome of
// requests that have no privacy request (sale choices, no match); for the others the
// status follows the privacy request.
type Record struct {
	ID, AgentID, AgentRequestID, Exercise, Regime, Callback string
	PrivacyRequestID, MemberID                              string
	Status, Reason, Details                                 string
	Revoked                                                 bool
	Received                                                time.Time
	ExpectedBy                                              time.Time
}

// CreateRecord stores a new DRP request.
func (s *Store) CreateRecord(ctx context.Context, r *Record) error {
	var exp any
	if !r.ExpectedBy.IsZero() {
		exp = r.ExpectedBy.UnixMicro()
	}
	_, err := s.DB.ExecContext(ctx, `INSERT INTO drp_requests (id, agent_id, agent_request_id, exercise, regime, status_callback, privacy_request_id, member_id, status, reason, details, revoked, received_at, expected_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, FALSE, $12, $13)`,
		r.ID, r.AgentID, r.AgentRequestID, r.Exercise, r.Regime, r.Callback, r.PrivacyRequestID, r.MemberID, r.Status, r.Reason, r.Details, r.Received.UnixMicro(), exp)
	return err
}

// UpdateOutcome stores the outcome of a request without a privacy request, or links one.
func (s *Store) UpdateOutcome(ctx context.Context, r *Record) error {
	var exp any
	if !r.ExpectedBy.IsZero() {
		exp = r.ExpectedBy.UnixMicro()
	}
	_, err := s.DB.ExecContext(ctx, `UPDATE drp_requests SET privacy_request_id = $1, member_id = $2, status = $3, reason = $4, details = $5, expected_by = $6 WHERE id = $7`,
		r.PrivacyRequestID, r.MemberID, r.Status, r.Reason, r.Details, exp, r.ID)
	return err
}

// MarkRevoked records the agent's revocation.
func (s *Store) MarkRevoked(ctx context.Context, id string) error {
	_, err := s.DB.ExecContext(ctx, `UPDATE drp_requests SET revoked = TRUE WHERE id = $1`, id)
	return err
}

const recordCols = `id, agent_id, agent_request_id, exercise, regime, status_callback, privacy_request_id, member_id, status, reason, details, revoked, received_at, expected_by`

func scanRecord(row interface{ Scan(...any) error }) (*Record, error) {
	var r Record
	var received int64
	var exp sql.NullInt64
	if err := row.Scan(&r.ID, &r.AgentID, &r.AgentRequestID, &r.Exercise, &r.Regime, &r.Callback, &r.PrivacyRequestID, &r.MemberID, &r.Status, &r.Reason, &r.Details, &r.Revoked, &received, &exp); err != nil {
		return nil, err
	}
	r.Received = time.UnixMicro(received).UTC()
	if exp.Valid {
		r.ExpectedBy = time.UnixMicro(exp.Int64).UTC()
	}
	return &r, nil
}

// Record loads a DRP request.
func (s *Store) Record(ctx context.Context, id string) (*Record, error) {
	r, err := scanRecord(s.DB.QueryRowContext(ctx, `SELECT `+recordCols+` FROM drp_requests WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errs.NotFoundf("DRP_REQUEST_NOT_FOUND", "data rights request")
	}
	return r, err
}

// RecordsFor lists the DRP requests filed as one privacy request.
func (s *Store) RecordsFor(ctx context.Context, privacyRequestID string) ([]string, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT id FROM drp_requests WHERE privacy_request_id = $1`, privacyRequestID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// Entry is one status a request went through.
type Entry struct {
	Seq    int64
	Status string
	Reason string
}

// Log appends a status unless it is the request's latest one; it reports whether it did.
func (s *Store) Log(ctx context.Context, id, status, reason string, now time.Time) (bool, error) {
	for range 3 {
		var seq int64
		var last, lastReason string
		err := s.DB.QueryRowContext(ctx, `SELECT seq, status, reason FROM drp_status_log WHERE request_id = $1 ORDER BY seq DESC LIMIT 1`, id).Scan(&seq, &last, &lastReason)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return false, err
		}
		if err == nil && last == status && lastReason == reason {
			return false, nil
		}
		if err == nil && IsFinal(last) {
			return false, nil // a final status is final
		}
		_, err = s.DB.ExecContext(ctx, `INSERT INTO drp_status_log (request_id, seq, status, reason, created_at) VALUES ($1, $2, $3, $4, $5)`, id, seq+1, status, reason, now.UnixMicro())
		if storage.IsUniqueViolation(err) {
			continue // a concurrent append: look again
		}
		return err == nil, err
	}
	return false, errors.New("drp: status log contended")
}

// Entries returns the log after seq, oldest first.
func (s *Store) Entries(ctx context.Context, id string, after int64) ([]Entry, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT seq, status, reason FROM drp_status_log WHERE request_id = $1 AND seq > $2 ORDER BY seq`, id, after)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		if err := rows.Scan(&e.Seq, &e.Status, &e.Reason); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Entry returns one log entry.
func (s *Store) Entry(ctx context.Context, id string, seq int64) (Entry, error) {
	e := Entry{Seq: seq}
	err := s.DB.QueryRowContext(ctx, `SELECT status, reason FROM drp_status_log WHERE request_id = $1 AND seq = $2`, id, seq).Scan(&e.Status, &e.Reason)
	return e, err
}
