package prefs

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	"lethe.dev/platform/authz"
)

// Names gives a member's display name (identity keeps names).
type Names interface {
	DisplayName(ctx context.Context, memberID string) (string, error)
}

// profileItems is how many recent viewing events and ratings a profile shows.
const profileItems = 20

// sees reports whether a caller of the given standing may see a section of visibility v.
func sees(v preferencesv1.Visibility, self, signedIn bool) bool {
	switch {
	case self:
		return true
	case v == preferencesv1.Visibility_VISIBILITY_PUBLIC:
		return true
	case v == preferencesv1.Visibility_VISIBILITY_MEMBERS:
		return signedIn
	}
	return false // PRIVATE, and unset (private by default)
}

// GetProfile implements PreferencesService: the profile read path, where each section's
// visibility decides who sees it. The caller is the one the gateway verified
// (platform/authz): the member themself or an operator sees everything, another member
// PUBLIC and MEMBERS sections, a signed-out visitor PUBLIC ones.
func (s *Server) GetProfile(ctx context.Context, req *preferencesv1.GetProfileRequest) (*preferencesv1.Profile, error) {
	id, err := member(req.GetName(), "/profile", "name")
	if err != nil {
		return nil, err
	}
	if err := s.refuseErased(ctx, s.DB, id); err != nil {
		return nil, err
	}
	p := authz.FromContext(ctx)
	self := (p.Role == authz.RoleMember && p.ID == id) || p.Role == authz.RoleOperator || p.Role == authz.RoleService
	signedIn := p.Role == authz.RoleMember
	vis, err := s.loadVisibility(ctx, s.DB, id)
	if err != nil {
		return nil, err
	}
	first, _ := decodeCursor("") // the newest items
	out := &preferencesv1.Profile{Name: req.GetName()}
	hide := func(section string) { out.HiddenSections = append(out.HiddenSections, section) }
	if sees(vis.GetDisplayName(), self, signedIn) && s.Names != nil {
		name, err := s.Names.DisplayName(ctx, id)
		switch {
		case status.Code(err) == codes.NotFound:
			// no such account: the profile stays empty, as a private one
		case err != nil:
			return nil, err
		default:
			out.DisplayName = name
		}
	} else if !sees(vis.GetDisplayName(), self, signedIn) {
		hide("display_name")
	}
	if sees(vis.GetViewingHistory(), self, signedIn) {
		if _, err := s.eventPage(ctx, id, first, profileItems, func(e *preferencesv1.ViewingEvent) error {
			if len(out.ViewingEvents) < profileItems {
				out.ViewingEvents = append(out.ViewingEvents, e)
			}
			return nil
		}); err != nil {
			return nil, err
		}
	} else {
		hide("viewing_history")
	}
	if sees(vis.GetRatings(), self, signedIn) {
		if _, err := s.ratingPage(ctx, id, first, profileItems, func(r *preferencesv1.Rating) error {
			if len(out.Ratings) < profileItems {
				out.Ratings = append(out.Ratings, r)
			}
			return nil
		}); err != nil {
			return nil, err
		}
	} else {
		hide("ratings")
	}
	if sees(vis.GetSocialConnections(), self, signedIn) {
		rows, err := s.DB.QueryContext(ctx, `SELECT DISTINCT network FROM social_connections WHERE member_id = $1 ORDER BY network`, id)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				return nil, err
			}
			out.SocialNetworks = append(out.SocialNetworks, n)
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	} else {
		hide("social_connections")
	}
	return out, nil
}
