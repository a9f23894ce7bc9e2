package prefs

import (
	"context"

	"lethe.dev/platform/legalhold"
)

// Holds answers whether a member's data is on legal hold.
type Holds = legalhold.Checker

// FulfillmentHolds asks fulfillment, which keeps the per-member legal holds.
type FulfillmentHolds = legalhold.Fulfillment

// refuseHeld refuses a deletion of the member's data while it is on legal hold. When
// the holds cannot be read the deletion is refused too: never a guess that loses data.
func (s *Server) refuseHeld(ctx context.Context, memberID string) error {
	return legalhold.Refuse(ctx, s.Holds, memberID, s.Logger)
}
