package sharing

import (
	"context"

	"google.golang.org/grpc/status"

	"lethe.dev/platform/errs"
)

// PolicyConsent tells sharing whether a purpose may be processed for a member under the
// privacy policy versions they accepted. Preferences owns policy versions and
// acceptances; sharing asks on every disclosure, so an acceptance counts at once.
type PolicyConsent interface {
	// MissingPolicyVersions names the versions lowering protection for purpose that are
	// in effect and not accepted by the member; empty when the purpose may be processed.
	MissingPolicyVersions(ctx context.Context, memberID, purpose string) ([]string, error)
}

var errPolicyConsentUnavailable = errs.New(errs.Unavailable, "POLICY_CONSENT_UNAVAILABLE", "the member's policy acceptances could not be read; retry")

// policyRefusal returns POLICY_CONSENT_REQUIRED while a policy change that lowers
// protection for the purpose is in effect and the member has not accepted it, "" when
// the purpose may be processed. Without an answer from preferences nothing flows.
func (s *Server) policyRefusal(ctx context.Context, memberID, purpose string) (string, error) {
	if s.PolicyConsent == nil {
		return "", errPolicyConsentUnavailable
	}
	missing, err := s.PolicyConsent.MissingPolicyVersions(ctx, memberID, purpose)
	if err != nil {
		if s.Logger != nil {
			s.Logger.Warn("reading policy acceptances failed", "code", status.Code(err).String())
		}
		return "", errPolicyConsentUnavailable
	}
	if len(missing) > 0 {
		return "POLICY_CONSENT_REQUIRED", nil
	}
	return "", nil
}
