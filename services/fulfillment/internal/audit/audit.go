// Package audit owns the audit log of operator actions (table audit_log): every backend's
// authorization interceptor (platform/authz) appends to it, through RecordAuditEvent or,
// inside fulfillment, directly; operators read it with ListAuditEvents; the yearly
// figures count it.
package audit

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"lethe.dev/platform/authz"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/ids"
	"lethe.dev/platform/storage"
)

// Event is one recorded operator action.
type Event struct {
	ID     string
	Actor  string
	Action string
	Target string
	Reason string
	Time   time.Time
}

// Store appends to and reads the audit log.
type Store struct {
	DB  *storage.DB
	Now func() time.Time
}

// Validate checks an event before it is appended.
func Validate(e authz.Event) error {
	var v errs.Violations
	if !strings.HasPrefix(e.Actor, "operators/") || !ids.Valid(strings.TrimPrefix(e.Actor, "operators/")) {
		v.Add("audit_event.actor", "must be operators/{operator}")
	}
	if e.Action == "" || len(e.Action) > 200 {
		v.Add("audit_event.action", "is required, at most 200 characters")
	}
	if len(e.Target) > 500 {
		v.Add("audit_event.target", "at most 500 characters")
	}
	if len(e.Reason) > 500 {
		v.Add("audit_event.reason", "at most 500 characters")
	}
	if n := len(e.RequestID); n == 0 || n > 100 {
		v.Add("request_id", "is required, at most 100 characters")
	}
	return v.Err()
}

// Record appends e once per request id; a repeated request id returns the first event.
// It implements authz.Recorder.
func (s *Store) Record(ctx context.Context, e authz.Event) error {
	_, err := s.Append(ctx, e)
	return err
}

// Append appends e and returns the stored event.
func (s *Store) Append(ctx context.Context, e authz.Event) (*Event, error) {
	if err := Validate(e); err != nil {
		return nil, err
	}
	now := s.Now().UTC()
	id := ids.New()
	_, err := s.DB.ExecContext(ctx, `INSERT INTO audit_log (id, request_id, actor, action, target, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		id, e.RequestID, e.Actor, e.Action, e.Target, e.Reason, now.UnixMicro())
	if err != nil && !storage.IsUniqueViolation(err) {
		return nil, err
	}
	return s.get(ctx, `request_id = $1`, e.RequestID)
}

const cols = `id, actor, action, target, reason, created_at`

func scan(r interface{ Scan(...any) error }) (*Event, error) {
	var e Event
	var at int64
	if err := r.Scan(&e.ID, &e.Actor, &e.Action, &e.Target, &e.Reason, &at); err != nil {
		return nil, err
	}
	e.Time = time.UnixMicro(at).UTC()
	return &e, nil
}

func (s *Store) get(ctx context.Context, where string, args ...any) (*Event, error) {
	return scan(s.DB.QueryRowContext(ctx, `SELECT `+cols+` FROM audit_log WHERE `+where, args...))
}

// cursor is the keyset position after the last event of a page: (created_at, id),
// versioned so a future scheme can tell old tokens apart.
func encodeCursor(at int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("v1.%d.%s", at, id)))
}

func decodeCursor(tok string) (int64, string, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, "", false
	}
	parts := strings.SplitN(string(raw), ".", 3)
	if len(parts) != 3 || parts[0] != "v1" || !ids.Valid(parts[2]) {
		return 0, "", false
	}
	at, err := strconv.ParseInt(parts[1], 10, 64)
	return at, parts[2], err == nil
}

// List returns a page of events, newest first, optionally only those whose target is
// target or lies under it.
func (s *Store) List(ctx context.Context, pageSize int, pageToken, target string) ([]*Event, string, error) {
	if pageSize == 0 {
		pageSize = 50
	}
	var v errs.Violations
	if pageSize < 0 || pageSize > 500 {
		v.Add("page_size", "must be between 0 and 500")
	}
	where, args := []string{"1 = 1"}, []any{}
	arg := func(x any) string { args = append(args, x); return "$" + strconv.Itoa(len(args)) }
	if pageToken != "" {
		at, id, ok := decodeCursor(pageToken)
		if !ok {
			v.Add("page_token", "is not a token this API issued")
		}
		where = append(where, "(created_at < "+arg(at)+" OR (created_at = "+arg(at)+" AND id < "+arg(id)+"))")
	}
	if len(target) > 500 {
		v.Add("target", "at most 500 characters")
	}
	if err := v.Err(); err != nil {
		return nil, "", err
	}
	if target != "" {
		// Targets may name several resources separated by spaces; match any of them.
		where = append(where, "(target = "+arg(target)+" OR target LIKE "+arg(likeEscape(target)+"/%")+" ESCAPE '!' OR target LIKE "+arg("% "+likeEscape(target)+"%")+" ESCAPE '!')")
	}
	rows, err := s.DB.QueryContext(ctx, `SELECT `+cols+` FROM audit_log WHERE `+strings.Join(where, " AND ")+` ORDER BY created_at DESC, id DESC LIMIT `+arg(pageSize+1), args...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var out []*Event
	next := ""
	for rows.Next() {
		e, err := scan(rows)
		if err != nil {
			return nil, "", err
		}
		if len(out) == pageSize {
			last := out[len(out)-1]
			next = encodeCursor(last.Time.UnixMicro(), last.ID)
			break
		}
		out = append(out, e)
	}
	return out, next, rows.Err()
}

func likeEscape(s string) string {
	return strings.NewReplacer("!", "!!", "%", "!%", "_", "!_").Replace(s)
}

// Counts returns how many operator actions of each kind were recorded in [from, to).
func (s *Store) Counts(ctx context.Context, from, to time.Time) (map[string]int64, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT action, COUNT(*) FROM audit_log WHERE created_at >= $1 AND created_at < $2 GROUP BY action`, from.UnixMicro(), to.UnixMicro())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var a string
		var n int64
		if err := rows.Scan(&a, &n); err != nil {
			return nil, err
		}
		out[a] = n
	}
	return out, rows.Err()
}
