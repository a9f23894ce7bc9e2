package request

import (
	"context"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
)

// Retention periods of fulfillment's own records (documented in the README).
const (
	// DownloadRetention is how long a download record (request id and time) is kept.
	DownloadRetention = 90 * 24 * time.Hour
	// RetentionInterval is how often the retention schedule runs.
	RetentionInterval = time.Hour
)

// Active member legal holds (holds.Hold.Active) in SQL, with now as $2 or $4.
const (
	heldNow = `h.released_at IS NULL AND h.expire_at > $2`
	heldAt4 = `h.released_at IS NULL AND h.expire_at > $4`
)

// RetentionScheduleID is the Temporal schedule that runs Retention.
const RetentionScheduleID = "lethe-retention"

// PurgeResult counts what one purge deleted.
type PurgeResult struct {
	Downloads      int64
	FailedExports  int64 // closed exports that never completed: their parts and key
	MissedExpiries int64 // archives past their expiry that were still stored
}

// Retention is the scheduled purge of records that outlived their purpose.
func Retention(ctx workflow.Context) (PurgeResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 5 * time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Minute, MaximumAttempts: 5},
	})
	var a *Activities
	var res PurgeResult
	err := workflow.ExecuteActivity(ctx, a.PurgeExpired).Get(ctx, &res)
	return res, err
}

// PurgeExpired deletes download records past DownloadRetention, whatever a failed,
// cancelled or expired export left in archive storage (parts and key), and archives past
// their expiry whose ArchiveExpiry never ran; then scrubs the database files.
func (a *Activities) PurgeExpired(ctx context.Context) (PurgeResult, error) {
	var out PurgeResult
	now := a.Now()
	// Members whose data is on legal hold keep everything until the hold ends.
	res, err := a.DB.ExecContext(ctx, `DELETE FROM downloads WHERE downloaded_at < $1
		AND request_id NOT IN (SELECT r.id FROM requests r JOIN member_holds h ON h.member_id = r.member_id WHERE `+heldNow+`)`,
		now.Add(-DownloadRetention).UnixMicro(), now.UnixMicro())
	if err != nil {
		return out, err
	}
	out.Downloads, _ = res.RowsAffected()
	access, portability := int32(fulfillmentv1.RequestKind_REQUEST_KIND_ACCESS), int32(fulfillmentv1.RequestKind_REQUEST_KIND_PORTABILITY)
	for _, q := range []struct {
		n   *int64
		sql string
		arg []any
	}{
		{&out.FailedExports, `SELECT id FROM requests WHERE kind IN ($1, $3) AND NOT is_open AND state <> $2
			AND member_id NOT IN (SELECT h.member_id FROM member_holds h WHERE ` + heldAt4 + `)`, []any{access, int32(fulfillmentv1.RequestState_REQUEST_STATE_COMPLETED), portability, now.UnixMicro()}},
		{&out.MissedExpiries, `SELECT id FROM requests WHERE kind IN ($1, $3) AND archive_path <> '' AND archive_expires_at < $2
			AND member_id NOT IN (SELECT h.member_id FROM member_holds h WHERE h.released_at IS NULL AND h.expire_at > $2)`, []any{access, now.UnixMicro(), portability}},
	} {
		ids, err := a.requestIDs(ctx, q.sql, q.arg...)
		if err != nil {
			return out, err
		}
		for _, id := range ids {
			n, err := a.Archives.Count(ctx, id+"/")
			if err != nil {
				return out, err
			}
			has, err := a.Archives.Keys.Has(ctx, ArchiveSubject(id))
			if err != nil {
				return out, err
			}
			if n == 0 && !has {
				continue
			}
			if err := a.DeleteArchive(ctx, RequestRef{RequestID: id}); err != nil {
				return out, err
			}
			*q.n++
		}
	}
	return out, a.DB.Scrub(ctx)
}

func (a *Activities) requestIDs(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := a.DB.QueryContext(ctx, query, args...)
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
