package prefs

import (
	"context"
	"database/sql"
	"slices"

	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	"lethe.dev/platform/errs"
)

// restricted reports whether a restriction of processing is in force for the member.
func restricted(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, memberID string) (bool, error) {
	var n int
	err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM processing_restrictions WHERE member_id = $1`, memberID).Scan(&n)
	return n > 0, err
}

// SetProcessingRestriction implements PreferencesService: while a restriction of
// processing is in force, AuthorizeMarketing refuses every marketing message and the ad
// preferences read as not personalized (the member's own choice is kept for after the
// lift). Idempotent both ways.
func (s *Server) SetProcessingRestriction(ctx context.Context, req *preferencesv1.SetProcessingRestrictionRequest) (*preferencesv1.AdPreferences, error) {
	id, err := member(req.GetName(), adSuffix, "name")
	if err != nil {
		return nil, err
	}
	if len(req.GetReference()) > 200 {
		return nil, errs.Invalid(errs.FieldViolation{Field: "reference", Description: "at most 200 characters"})
	}
	if req.GetRestricted() {
		if err := s.refuseErased(ctx, s.DB, id); err != nil {
			return nil, err
		}
		_, err = s.DB.ExecContext(ctx, `INSERT INTO processing_restrictions (member_id, reference, restricted_at) VALUES ($1, $2, $3) ON CONFLICT (member_id) DO NOTHING`,
			id, req.GetReference(), micros(s.now()))
	} else {
		_, err = s.DB.ExecContext(ctx, `DELETE FROM processing_restrictions WHERE member_id = $1`, id)
	}
	if err != nil {
		return nil, err
	}
	return s.GetAdPreferences(ctx, &preferencesv1.GetAdPreferencesRequest{Name: req.GetName()})
}

// AuthorizeMarketing implements PreferencesService: the one check before a marketing
// message goes out. A refusal is an answer with its reason, not an error.
func (s *Server) AuthorizeMarketing(ctx context.Context, req *preferencesv1.AuthorizeMarketingRequest) (*preferencesv1.AuthorizeMarketingResponse, error) {
	id, err := member(req.GetMember(), "", "member")
	if err != nil {
		return nil, err
	}
	var v errs.Violations
	if !slices.Contains(Channels, req.GetChannel()) {
		v.Add("channel", "must be a channel")
	}
	if !slices.Contains(Topics, req.GetTopic()) || req.GetTopic() == preferencesv1.Topic_TOPIC_TRANSACTIONAL {
		v.Add("topic", "must be a marketing topic")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if err := s.refuseErased(ctx, s.DB, id); err != nil {
		return nil, err
	}
	if r, err := restricted(ctx, s.DB, id); err != nil {
		return nil, err
	} else if r {
		return &preferencesv1.AuthorizeMarketingResponse{Allowed: false, Reason: "PROCESSING_RESTRICTED"}, nil
	}
	var sub bool
	err = s.DB.QueryRowContext(ctx, `SELECT subscribed FROM subscriptions WHERE member_id = $1 AND channel = $2 AND topic = $3`, id, int32(req.GetChannel()), int32(req.GetTopic())).Scan(&sub)
	if err != nil && err != sql.ErrNoRows {
		return nil, err
	}
	if !sub {
		return &preferencesv1.AuthorizeMarketingResponse{Allowed: false, Reason: "NOT_SUBSCRIBED"}, nil
	}
	// A policy change lowering protection for this marketing waits for the member's consent.
	if reason, err := s.marketingPolicyRefusal(ctx, id, req.GetTopic()); err != nil {
		return nil, err
	} else if reason != "" {
		return &preferencesv1.AuthorizeMarketingResponse{Allowed: false, Reason: reason}, nil
	}
	return &preferencesv1.AuthorizeMarketingResponse{Allowed: true, Reason: "ALLOWED"}, nil
}
