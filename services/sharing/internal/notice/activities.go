package notice

import (
	"context"
	"time"

	"go.temporal.io/sdk/temporal"

	"lethe.dev/platform/storage"
)

// ErrNoticeGone is the error type for a notice whose row no longer exists (the member
// was erased): retrying cannot help.
const ErrNoticeGone = "NOTICE_GONE"

// Notice states as stored (values of lethe.sharing.v1.NoticeState).
const (
	StatePending = 1
	StateAllowed = 2
	StateBlocked = 3
)

// Activities record a notice's progress in sharing's database.
type Activities struct {
	DB  *storage.DB
	Now func() time.Time
}

// MarkNotified marks the notice sent: the member sees it from now on, and it takes
// effect after the period. Idempotent: a retry keeps the first notify time.
func (a *Activities) MarkNotified(ctx context.Context, in Input) error {
	now := a.Now().UTC().UnixMicro()
	res, err := a.DB.ExecContext(ctx, `UPDATE notices SET state = $1, notify_at = COALESCE(notify_at, $2), effective_at = COALESCE(effective_at, $3) WHERE id = $4`,
		StatePending, now, now+in.NoticePeriod.Microseconds(), in.NoticeID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return temporal.NewNonRetryableApplicationError("notice no longer exists", ErrNoticeGone, nil)
	}
	return nil
}

// ResolveInput ends a notice.
type ResolveInput struct {
	NoticeID string
	Objected bool
}

// Resolve records the outcome. An objection on record counts even when its signal
// never arrived, so a lost signal can never let data flow.
func (a *Activities) Resolve(ctx context.Context, in ResolveInput) (Result, error) {
	objected := in.Objected
	if !objected {
		var n int
		err := a.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM objections o JOIN notices n ON n.member_id = o.member_id
			WHERE n.id = $1 AND o.withdrawn_at IS NULL AND (o.partner_id = n.partner_id OR o.partner_id = '') AND (o.purpose_id = n.purpose_id OR o.purpose_id = '')`, in.NoticeID).Scan(&n)
		if err != nil {
			return Result{}, err
		}
		objected = n > 0
	}
	state := StateAllowed
	if objected {
		state = StateBlocked
	}
	res, err := a.DB.ExecContext(ctx, `UPDATE notices SET state = $1 WHERE id = $2`, state, in.NoticeID)
	if err != nil {
		return Result{}, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Result{}, temporal.NewNonRetryableApplicationError("notice no longer exists", ErrNoticeGone, nil)
	}
	return Result{Allowed: !objected}, nil
}
