package notice

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"

	"lethe.dev/platform/storage"
)

// ErrNoticeGone is the error type for a notice whose row no longer exists (the member
// was erased): retrying cannot help.
const ErrNoticeGone = "NOTICE_GONE"

// kindAcquirer is lethe.sharing.v1.PartnerKind ACQUIRER as stored: its notices are
// business-transfer notices.
const kindAcquirer = 6

// Notice states as stored (values of lethe.sharing.v1.NoticeState).
const (
	StatePending = 1
	StateAllowed = 2
	StateBlocked = 3
)

// Mailer emails a member through identity, which alone holds their address
// (IdentityService.NotifyMember with the sharing-notice template). requestID makes a
// retried send queue one message.
type Mailer interface {
	MailNotice(ctx context.Context, memberID, reference, detail, requestID string) error
}

// TransferMailer is a Mailer that also sends the business-transfer notice (identity's
// business-transfer template, which adds how to have the account erased before the date).
type TransferMailer interface {
	MailTransferNotice(ctx context.Context, memberID, reference, detail, requestID string) error
}

// Activities record a notice's progress in sharing's database and tell the member.
type Activities struct {
	DB  *storage.DB
	Now func() time.Time
	// Mailer sends the notice email; nil fails MailNotice (retried until it is wired).
	Mailer Mailer
	// ObjectionURL mints a notice's one-click objection link.
	ObjectionURL func(noticeID string) string
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

// MailNotice tells the member, by email, which partner will receive which of their
// data, for what, from when, and gives them a one-click link to object. Idempotent: the
// message is keyed by the notice id. The text names the partner and purpose (no member
// data); identity adds the address.
func (a *Activities) MailNotice(ctx context.Context, in Input) error {
	if a.Mailer == nil || a.ObjectionURL == nil {
		return errors.New("notice: no mailer configured")
	}
	var member, partnerName, purpose, description, cats string
	var effective sql.NullInt64
	var kind int
	err := a.DB.QueryRowContext(ctx, `SELECT n.member_id, p.display_name, p.kind, n.purpose_id, u.description, u.data_categories, n.effective_at
		FROM notices n JOIN partners p ON p.id = n.partner_id JOIN purposes u ON u.partner_id = n.partner_id AND u.purpose_id = n.purpose_id
		WHERE n.id = $1`, in.NoticeID).Scan(&member, &partnerName, &kind, &purpose, &description, &cats, &effective)
	if errors.Is(err, sql.ErrNoRows) {
		return temporal.NewNonRetryableApplicationError("notice no longer exists", ErrNoticeGone, nil)
	}
	if err != nil {
		return err
	}
	var categories []string
	_ = json.Unmarshal([]byte(cats), &categories)
	from := "the end of the notice period"
	if effective.Valid {
		from = time.UnixMicro(effective.Int64).UTC().Format("2 January 2006 15:04 MST")
	}
	detail := fmt.Sprintf("Partner: %s\nPurpose: %s (%s)\nData: %s\nFrom: %s\n\nIf you do not want this, object with one click (no sign-in needed):\n%s",
		partnerName, description, purpose, strings.Join(categories, ", "), from, a.ObjectionURL(in.NoticeID))
	if tm, ok := a.Mailer.(TransferMailer); ok && kind == kindAcquirer {
		detail = fmt.Sprintf("New owner of your data: %s\nWhy: %s (%s)\nData: %s\nFrom: %s\n\nIf you do not want your data to pass to them, object with one click (no sign-in needed):\n%s",
			partnerName, description, purpose, strings.Join(categories, ", "), from, a.ObjectionURL(in.NoticeID))
		return tm.MailTransferNotice(ctx, member, "notice "+in.NoticeID, detail, "sharing-notice/"+in.NoticeID)
	}
	return a.Mailer.MailNotice(ctx, member, "notice "+in.NoticeID, detail, "sharing-notice/"+in.NoticeID)
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
