package sharing

import (
	"context"

	"google.golang.org/grpc/status"

	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/platform/errs"
)

// AdChoice is what a member chose about ads and the sale or sharing of their data, as
// preferences holds it.
type AdChoice struct {
	PersonalizedAds   bool // the member allowed ad personalization
	SaleSharingOptOut bool // the member (or a GPC signal) opted out of sale and sharing
	GPC               bool // a Global Privacy Control signal is on record
}

// AdChoices tells sharing a member's ad choices. Preferences owns them; sharing asks on
// every disclosure that is a sale or sharing, so a choice counts from the moment it is
// recorded and nothing is cached to go stale.
type AdChoices interface {
	AdChoice(ctx context.Context, memberID string) (AdChoice, error)
}

// isSaleOrSharing reports whether a disclosure to a partner of kind k is a "sale" or
// "sharing" in the CCPA's sense (data to a third party for its own marketing or for
// cross-context behavioural advertising): advertisers and marketing partners.
func isSaleOrSharing(k sharingv1.PartnerKind) bool {
	return k == sharingv1.PartnerKind_PARTNER_KIND_ADVERTISER || k == sharingv1.PartnerKind_PARTNER_KIND_MARKETING_PARTNER
}

var errAdChoicesUnavailable = errs.New(errs.Unavailable, "AD_CHOICES_UNAVAILABLE", "the member's ad choices could not be read; retry")

// adRefusal returns the reason a sale or sharing to a partner of kind k is refused for
// the member, or "" when their choices allow it. Without a preferences connection the
// answer is an error, never a guess: a disclosure that might be opted out does not flow.
func (s *Server) adRefusal(ctx context.Context, k sharingv1.PartnerKind, memberID string) (string, error) {
	if !isSaleOrSharing(k) {
		return "", nil
	}
	if s.AdChoices == nil {
		return "", errAdChoicesUnavailable
	}
	c, err := s.AdChoices.AdChoice(ctx, memberID)
	if err != nil {
		if s.Logger != nil {
			s.Logger.Warn("reading ad choices failed", "code", status.Code(err).String())
		}
		return "", errAdChoicesUnavailable
	}
	switch {
	case c.GPC:
		return "GLOBAL_PRIVACY_CONTROL", nil
	case c.SaleSharingOptOut:
		return "SALE_SHARING_OPTED_OUT", nil
	case k == sharingv1.PartnerKind_PARTNER_KIND_ADVERTISER && !c.PersonalizedAds:
		return "ADS_NOT_ALLOWED", nil
	}
	return "", nil
}
