package sharing

import (
	"context"

	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/platform/errs"
)

// SetProcessingRestriction implements SharingService: a restriction of processing in
// force refuses every disclosure of the member's data (PROCESSING_RESTRICTED) until it
// is lifted. Idempotent both ways.
func (s *Server) SetProcessingRestriction(ctx context.Context, req *sharingv1.SetProcessingRestrictionRequest) (*sharingv1.SetProcessingRestrictionResponse, error) {
	mid, err := memberOf(req.GetMember(), "member")
	if err != nil {
		return nil, err
	}
	if n := len(req.GetReference()); n > 200 {
		return nil, errs.Invalid(errs.FieldViolation{Field: "reference", Description: "at most 200 characters"})
	}
	if req.GetRestricted() {
		if err := s.refuseErased(ctx, mid); err != nil {
			return nil, err
		}
		_, err = s.DB.ExecContext(ctx, `INSERT INTO restrictions (member_id, reference, restricted_at) VALUES ($1, $2, $3) ON CONFLICT (member_id) DO NOTHING`,
			mid, req.GetReference(), s.now().UnixMicro())
	} else {
		_, err = s.DB.ExecContext(ctx, `DELETE FROM restrictions WHERE member_id = $1`, mid)
	}
	if err != nil {
		return nil, err
	}
	return &sharingv1.SetProcessingRestrictionResponse{Restricted: req.GetRestricted()}, nil
}

// restricted reports whether a restriction of processing is in force for the member.
func (s *Server) restricted(ctx context.Context, mid string) (bool, error) {
	var n int
	err := s.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM restrictions WHERE member_id = $1`, mid).Scan(&n)
	return n > 0, err
}
