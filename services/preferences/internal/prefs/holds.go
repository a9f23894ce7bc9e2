package prefs

import (
	"context"

	"google.golang.org/grpc/status"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	"lethe.dev/platform/errs"
)

// Holds answers whether a member's data is on legal hold.
type Holds interface {
	Held(ctx context.Context, memberID string) (bool, error)
}

// FulfillmentHolds asks fulfillment, which keeps the per-member legal holds.
type FulfillmentHolds struct {
	Client fulfillmentv1.FulfillmentServiceClient
}

// Held implements Holds.
func (h FulfillmentHolds) Held(ctx context.Context, memberID string) (bool, error) {
	res, err := h.Client.GetMemberLegalHold(ctx, &fulfillmentv1.GetMemberLegalHoldRequest{Name: "members/" + memberID + "/legalHold"})
	if err != nil {
		return false, err
	}
	return res.GetActive(), nil
}

// refuseHeld refuses a deletion of the member's data while it is on legal hold. When
// the holds cannot be read the deletion is refused too: never a guess that loses data.
func (s *Server) refuseHeld(ctx context.Context, memberID string) error {
	if s.Holds == nil {
		return nil
	}
	held, err := s.Holds.Held(ctx, memberID)
	if err != nil {
		if s.Logger != nil {
			s.Logger.Warn("reading legal holds failed", "code", status.Code(err).String())
		}
		return errs.New(errs.Unavailable, "LEGAL_HOLDS_UNAVAILABLE", "legal holds could not be checked; try again")
	}
	if held {
		return errs.New(errs.FailedPrecondition, "LEGAL_HOLD", "the member's data is on legal hold and cannot be deleted now")
	}
	return nil
}
