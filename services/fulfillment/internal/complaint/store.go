package complaint

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/ids"
	"lethe.dev/platform/storage"
)

// Store reads and writes the complaints tables; nothing else does.
type Store struct {
	DB  *storage.DB
	Now func() time.Time
}

// ErrNotFound answers a complaint that does not exist or is another member's.
var ErrNotFound = errs.NotFoundf("COMPLAINT_NOT_FOUND", "complaint")

const cols = `id, member_id, category, description, related_requests, state, created_at, ack_due_at, resolve_due_at, acked_at, resolved_at, resolution`

func micros(t time.Time) int64 { return t.UnixMicro() }

func ts(us int64) *timestamppb.Timestamp { return timestamppb.New(time.UnixMicro(us)) }

func (s *Store) scan(ctx context.Context, row interface{ Scan(...any) error }) (*fulfillmentv1.Complaint, error) {
	var id, member, related string
	var cat, state int32
	var created, ackDue, resDue int64
	var acked, resolved sql.NullInt64
	c := &fulfillmentv1.Complaint{}
	if err := row.Scan(&id, &member, &cat, &c.Description, &related, &state, &created, &ackDue, &resDue, &acked, &resolved, &c.Resolution); err != nil {
		return nil, err
	}
	var reqs []string
	_ = json.Unmarshal([]byte(related), &reqs)
	for _, r := range reqs {
		c.RelatedRequests = append(c.RelatedRequests, "members/"+member+"/privacyRequests/"+r)
	}
	c.Name, c.Category, c.State = "members/"+member+"/complaints/"+id, fulfillmentv1.ComplaintCategory(cat), fulfillmentv1.ComplaintState(state)
	c.CreateTime, c.AcknowledgeDueTime, c.ResolveDueTime = ts(created), ts(ackDue), ts(resDue)
	if acked.Valid {
		c.AcknowledgeTime = ts(acked.Int64)
	}
	if resolved.Valid {
		c.ResolveTime = ts(resolved.Int64)
	}
	return c, nil
}

func (s *Store) escalations(ctx context.Context, c *fulfillmentv1.Complaint) error {
	id := c.GetName()[strings.LastIndex(c.GetName(), "/")+1:]
	rows, err := s.DB.QueryContext(ctx, `SELECT level FROM complaint_escalations WHERE complaint_id = $1 ORDER BY created_at, level`, id)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			return err
		}
		c.Escalations = append(c.Escalations, l)
	}
	return rows.Err()
}

// New is a complaint to file.
type New struct {
	MemberID, RequestID string
	Category            fulfillmentv1.ComplaintCategory
	Description         string
	RelatedRequestIDs   []string
	AckDue, ResolveDue  time.Time
}

// Create files a complaint, or returns the one filed with the same request id.
func (s *Store) Create(ctx context.Context, n New) (*fulfillmentv1.Complaint, error) {
	related, _ := json.Marshal(append([]string{}, n.RelatedRequestIDs...))
	_, err := s.DB.ExecContext(ctx, `INSERT INTO complaints (`+cols+`, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL, '', $10)
		ON CONFLICT (member_id, request_id) DO NOTHING`,
		ids.New(), n.MemberID, int32(n.Category), n.Description, string(related), int32(fulfillmentv1.ComplaintState_COMPLAINT_STATE_RECEIVED),
		micros(s.Now()), micros(n.AckDue), micros(n.ResolveDue), n.RequestID)
	if err != nil {
		return nil, err
	}
	c, err := s.scan(ctx, s.DB.QueryRowContext(ctx, `SELECT `+cols+` FROM complaints WHERE member_id = $1 AND request_id = $2`, n.MemberID, n.RequestID))
	if err != nil {
		return nil, err
	}
	return c, s.escalations(ctx, c)
}

// Get returns the member's complaint.
func (s *Store) Get(ctx context.Context, memberID, id string) (*fulfillmentv1.Complaint, error) {
	c, err := s.scan(ctx, s.DB.QueryRowContext(ctx, `SELECT `+cols+` FROM complaints WHERE id = $1 AND member_id = $2`, id, memberID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return c, s.escalations(ctx, c)
}

// List pages through a member's complaints, newest first, or with memberID "-" every
// open complaint, earliest resolution deadline first. The token is an offset.
func (s *Store) List(ctx context.Context, memberID string, n, offset int) ([]*fulfillmentv1.Complaint, string, error) {
	q, args := `SELECT `+cols+` FROM complaints WHERE member_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3`, []any{memberID, n + 1, offset}
	if memberID == "-" {
		q, args = `SELECT `+cols+` FROM complaints WHERE state <> $1 ORDER BY resolve_due_at, id LIMIT $2 OFFSET $3`, []any{int32(fulfillmentv1.ComplaintState_COMPLAINT_STATE_RESOLVED), n + 1, offset}
	}
	rows, err := s.DB.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", err
	}
	var out []*fulfillmentv1.Complaint
	next := ""
	for rows.Next() {
		c, err := s.scan(ctx, rows)
		if err != nil {
			rows.Close()
			return nil, "", err
		}
		if len(out) == n {
			next = strconv.Itoa(offset + n)
			break
		}
		out = append(out, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	for _, c := range out {
		if err := s.escalations(ctx, c); err != nil {
			return nil, "", err
		}
	}
	return out, next, nil
}

// Acknowledge records the operator's acknowledgement; idempotent (the first time stays).
func (s *Store) Acknowledge(ctx context.Context, memberID, id string) (*fulfillmentv1.Complaint, error) {
	if _, err := s.DB.ExecContext(ctx, `UPDATE complaints SET state = $1, acked_at = $2 WHERE id = $3 AND member_id = $4 AND state = $5`,
		int32(fulfillmentv1.ComplaintState_COMPLAINT_STATE_ACKNOWLEDGED), micros(s.Now()), id, memberID, int32(fulfillmentv1.ComplaintState_COMPLAINT_STATE_RECEIVED)); err != nil {
		return nil, err
	}
	return s.Get(ctx, memberID, id)
}

// Resolve closes the complaint with the resolution text. Resolving again with the same
// text is a retry; with another text it is refused (the member was told the first).
func (s *Store) Resolve(ctx context.Context, memberID, id, resolution string) (*fulfillmentv1.Complaint, error) {
	now := micros(s.Now())
	if _, err := s.DB.ExecContext(ctx, `UPDATE complaints SET state = $1, resolved_at = $2, acked_at = COALESCE(acked_at, $2), resolution = $3
		WHERE id = $4 AND member_id = $5 AND state <> $1`, int32(fulfillmentv1.ComplaintState_COMPLAINT_STATE_RESOLVED), now, resolution, id, memberID); err != nil {
		return nil, err
	}
	c, err := s.Get(ctx, memberID, id)
	if err != nil {
		return nil, err
	}
	if c.GetResolution() != resolution {
		return nil, errs.New(errs.FailedPrecondition, "COMPLAINT_RESOLVED", "the complaint was already resolved with another resolution")
	}
	return c, nil
}

// Escalate records an escalation level once.
func (s *Store) Escalate(ctx context.Context, id, level string) error {
	_, err := s.DB.ExecContext(ctx, `INSERT INTO complaint_escalations (complaint_id, level, created_at) VALUES ($1, $2, $3) ON CONFLICT (complaint_id, level) DO NOTHING`,
		id, level, micros(s.Now()))
	return err
}

// EraseText clears the member's words and the answers from their complaints (their
// erasure); the records stay, under the opaque id, for the yearly figures.
func (s *Store) EraseText(ctx context.Context, memberID string) (int64, error) {
	res, err := s.DB.ExecContext(ctx, `UPDATE complaints SET description = '', resolution = '' WHERE member_id = $1 AND (description <> '' OR resolution <> '')`, memberID)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Statistics are the figures of complaints received or resolved in [from, to).
func (s *Store) Statistics(ctx context.Context, from, to time.Time) (*fulfillmentv1.ComplaintStatistics, error) {
	out := &fulfillmentv1.ComplaintStatistics{}
	f, t := micros(from), micros(to)
	if err := s.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM complaints WHERE created_at >= $1 AND created_at < $2`, f, t).Scan(&out.Received); err != nil {
		return nil, err
	}
	if err := s.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM complaints c WHERE c.created_at >= $1 AND c.created_at < $2
		AND EXISTS (SELECT 1 FROM complaint_escalations e WHERE e.complaint_id = c.id AND e.level <> $3)`, f, t, LevelResolveAtRisk).Scan(&out.Escalated); err != nil {
		return nil, err
	}
	rows, err := s.DB.QueryContext(ctx, `SELECT resolved_at - created_at, resolved_at <= resolve_due_at FROM complaints WHERE resolved_at >= $1 AND resolved_at < $2`, f, t)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var days []float64
	for rows.Next() {
		var us int64
		var onTime bool
		if err := rows.Scan(&us, &onTime); err != nil {
			return nil, err
		}
		days = append(days, float64(us)/float64(24*time.Hour/time.Microsecond))
		if onTime {
			out.ResolvedOnTime++
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out.Resolved = int64(len(days))
	if len(days) > 0 {
		slices.Sort(days)
		if m := len(days) / 2; len(days)%2 == 1 {
			out.MedianDaysToResolve = days[m]
		} else {
			out.MedianDaysToResolve = (days[m-1] + days[m]) / 2
		}
	}
	return out, nil
}
