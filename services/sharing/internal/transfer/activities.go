package transfer

import (
	"context"
	"time"
)

// ErrTransferGone is the error type for a transfer whose row no longer exists.
const ErrTransferGone = "TRANSFER_GONE"

// Transfers is sharing's store of business transfers (internal/sharing owns the table).
type Transfers interface {
	// NotifyTransferPage gives the next page of members notice; idempotent per page.
	NotifyTransferPage(ctx context.Context, transferID string) (notified int, done bool, err error)
	// NotifyTransferNewcomers gives notice to the members who signed up after since.
	NotifyTransferNewcomers(ctx context.Context, transferID string, since time.Time) (int, error)
	// MakeTransferEffective records that the transfer's date has come.
	MakeTransferEffective(ctx context.Context, transferID string) error
}

// Activities run a transfer's steps.
type Activities struct {
	Transfers Transfers
}

// NotifyPage gives one page of members notice of the transfer.
func (a *Activities) NotifyPage(ctx context.Context, transferID string) (PageResult, error) {
	n, done, err := a.Transfers.NotifyTransferPage(ctx, transferID)
	return PageResult{Notified: n, Done: done}, err
}

// NotifyNewcomers gives notice to the members who signed up after in.Since.
func (a *Activities) NotifyNewcomers(ctx context.Context, in SweepInput) (PageResult, error) {
	n, err := a.Transfers.NotifyTransferNewcomers(ctx, in.TransferID, in.Since)
	return PageResult{Notified: n, Done: true}, err
}

// MakeEffective records the transfer effective.
func (a *Activities) MakeEffective(ctx context.Context, transferID string) error {
	return a.Transfers.MakeTransferEffective(ctx, transferID)
}
