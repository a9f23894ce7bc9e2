// Package legalhold is how a service that deletes a member's data asks whether the data
// is on legal hold. The holds themselves live in fulfillment (members/{member}/legalHold,
// set and released by operators); every deletion path asks it first and fails closed:
// when the answer cannot be had, nothing is deleted.
package legalhold

import (
	"context"
	"log/slog"

	"google.golang.org/grpc/status"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	"lethe.dev/platform/errs"
)

// Reason is the ErrorInfo reason of a deletion refused because of a legal hold.
const Reason = "LEGAL_HOLD"

// UnavailableReason is the ErrorInfo reason of a deletion refused because the holds
// could not be read (retryable).
const UnavailableReason = "LEGAL_HOLDS_UNAVAILABLE"

// Checker answers whether a member's data is on legal hold.
type Checker interface {
	Held(ctx context.Context, memberID string) (bool, error)
}

// Fulfillment asks fulfillment, which keeps the per-member legal holds.
type Fulfillment struct {
	Client fulfillmentv1.FulfillmentServiceClient
}

// Held implements Checker.
func (f Fulfillment) Held(ctx context.Context, memberID string) (bool, error) {
	res, err := f.Client.GetMemberLegalHold(ctx, &fulfillmentv1.GetMemberLegalHoldRequest{Name: "members/" + memberID + "/legalHold"})
	if err != nil {
		return false, err
	}
	return res.GetActive(), nil
}

// Refuse returns the error that refuses deleting the member's data while it is on legal
// hold (FAILED_PRECONDITION, LEGAL_HOLD), or while the holds cannot be read
// (UNAVAILABLE, LEGAL_HOLDS_UNAVAILABLE): never a guess that loses data. A nil checker
// (a service run without fulfillment) refuses nothing.
func Refuse(ctx context.Context, c Checker, memberID string, logger *slog.Logger) error {
	if c == nil {
		return nil
	}
	held, err := c.Held(ctx, memberID)
	if err != nil {
		if logger != nil {
			logger.Warn("reading legal holds failed", "code", status.Code(err).String())
		}
		return errs.New(errs.Unavailable, UnavailableReason, "legal holds could not be checked; try again")
	}
	if held {
		return errs.New(errs.FailedPrecondition, Reason, "the member's data is on legal hold and cannot be deleted now")
	}
	return nil
}
