package prefs

import (
	"context"

	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	"lethe.dev/platform/ids"
)

// What a connection posts, by its share flags (the Netflix policy's "Facebook" paragraph:
// friends see what you watched and rated, only as you chose).
const (
	PostViewingActivity = "viewing_activity"
	PostRating          = "rating"
)

// postToNetworks is the "post activity to network" step: every connection of the member
// whose share flag allows kind gets the item, recorded in social_posts (what the network
// was given, deleted on disconnect). Connections that do not share it get nothing.
func (s *Server) postToNetworks(ctx context.Context, memberID, kind, title string, stars int32) error {
	flag := "share_viewing_activity"
	if kind == PostRating {
		flag = "share_ratings"
	}
	rows, err := s.DB.QueryContext(ctx, `SELECT id, network FROM social_connections WHERE member_id = $1 AND `+flag, memberID)
	if err != nil {
		return err
	}
	type conn struct{ id, network string }
	var conns []conn
	for rows.Next() {
		var c conn
		if err := rows.Scan(&c.id, &c.network); err != nil {
			rows.Close()
			return err
		}
		conns = append(conns, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	now := micros(s.now())
	for _, c := range conns {
		if _, err := s.DB.ExecContext(ctx, `INSERT INTO social_posts (id, member_id, connection_id, network, kind, title_id, stars, posted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			ids.New(), memberID, c.id, c.network, kind, title, stars, now); err != nil {
			return err
		}
	}
	return nil
}

// ListSocialPosts implements PreferencesService: the newest 500 posts.
func (s *Server) ListSocialPosts(ctx context.Context, req *preferencesv1.ListSocialPostsRequest) (*preferencesv1.ListSocialPostsResponse, error) {
	id, err := member(req.GetParent(), "", "parent")
	if err != nil {
		return nil, err
	}
	rows, err := s.DB.QueryContext(ctx, `SELECT id, connection_id, network, kind, title_id, stars, posted_at FROM social_posts WHERE member_id = $1 ORDER BY posted_at DESC, id DESC LIMIT 500`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := &preferencesv1.ListSocialPostsResponse{}
	for rows.Next() {
		var p preferencesv1.SocialPost
		var pid, cid string
		var at int64
		if err := rows.Scan(&pid, &cid, &p.Network, &p.Kind, &p.TitleId, &p.Stars, &at); err != nil {
			return nil, err
		}
		p.Name, p.SocialConnection, p.PostTime = "members/"+id+"/socialPosts/"+pid, "members/"+id+"/socialConnections/"+cid, ts(at)
		out.SocialPosts = append(out.SocialPosts, &p)
	}
	return out, rows.Err()
}
