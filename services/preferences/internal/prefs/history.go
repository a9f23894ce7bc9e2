package prefs

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/ids"
)

// cursor is a keyset position (time, id) for newest-first listings: O(page) per read
// however long the history, where OFFSET would be O(history).
type cursor struct {
	ts int64
	id string
}

func (c cursor) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.ts, 10) + "/" + c.id))
}

func decodeCursor(tok string) (cursor, error) {
	if tok == "" {
		return cursor{math.MaxInt64, ""}, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	a, b, ok := strings.Cut(string(raw), "/")
	n, err2 := strconv.ParseInt(a, 10, 64)
	if err != nil || !ok || err2 != nil {
		return cursor{}, errs.Invalid(errs.FieldViolation{Field: "page_token", Description: "is not a token this API issued"})
	}
	return cursor{n, b}, nil
}

const eventCols = `id, title_id, view_time, duration_seconds, device_type`

func scanEvent(rows interface{ Scan(...any) error }, memberID string) (*preferencesv1.ViewingEvent, int64, error) {
	var e preferencesv1.ViewingEvent
	var id string
	var at int64
	if err := rows.Scan(&id, &e.TitleId, &at, &e.DurationSeconds, &e.DeviceType); err != nil {
		return nil, 0, err
	}
	e.Name, e.ViewTime = "members/"+memberID+"/viewingEvents/"+id, ts(at)
	return &e, at, nil
}

func validTitle(t string) bool {
	if t == "" || len(t) > 64 {
		return false
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// CreateViewingEvent implements PreferencesService; idempotent by request_id.
func (s *Server) CreateViewingEvent(ctx context.Context, req *preferencesv1.CreateViewingEventRequest) (*preferencesv1.ViewingEvent, error) {
	id, err := member(req.GetParent(), "", "parent")
	if err != nil {
		return nil, err
	}
	if err := s.refuseErased(ctx, s.DB, id); err != nil {
		return nil, err
	}
	e := req.GetViewingEvent()
	var v errs.Violations
	if !validTitle(e.GetTitleId()) {
		v.Add("viewing_event.title_id", "is required: letters, digits, - and _, at most 64")
	}
	if e.GetDurationSeconds() < 0 || e.GetDurationSeconds() > 7*24*3600 {
		v.Add("viewing_event.duration_seconds", "must be between 0 and one week")
	}
	if len(e.GetDeviceType()) > 20 {
		v.Add("viewing_event.device_type", "at most 20 characters")
	}
	now := s.now()
	at := now
	if e.GetViewTime() != nil {
		at = e.GetViewTime().AsTime()
		if at.After(now.Add(time.Minute)) || at.Year() < 2000 {
			v.Add("viewing_event.view_time", "must be a past time")
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if req.GetRequestId() != "" {
		row := s.DB.QueryRowContext(ctx, `SELECT `+eventCols+` FROM viewing_events WHERE request_id = $1 AND owner = $2`, req.GetRequestId(), id)
		if got, _, err := scanEvent(row, id); err == nil {
			return got, nil
		}
	}
	eid := ids.New()
	var reqID any
	if req.GetRequestId() != "" {
		reqID = req.GetRequestId()
	}
	if _, err := s.DB.ExecContext(ctx, `INSERT INTO viewing_events (id, owner, title_id, view_time, duration_seconds, device_type, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		eid, id, e.GetTitleId(), micros(at), e.GetDurationSeconds(), e.GetDeviceType(), reqID); err != nil {
		return nil, err
	}
	if err := s.postToNetworks(ctx, id, PostViewingActivity, e.GetTitleId(), 0); err != nil {
		return nil, err
	}
	return &preferencesv1.ViewingEvent{Name: "members/" + id + "/viewingEvents/" + eid, TitleId: e.GetTitleId(), ViewTime: timestamppb.New(at),
		DurationSeconds: e.GetDurationSeconds(), DeviceType: e.GetDeviceType()}, nil
}

// ListViewingEvents implements PreferencesService: newest first, keyset-paginated.
func (s *Server) ListViewingEvents(ctx context.Context, req *preferencesv1.ListViewingEventsRequest) (*preferencesv1.ListViewingEventsResponse, error) {
	id, err := member(req.GetParent(), "", "parent")
	if err != nil {
		return nil, err
	}
	n, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	c, err := decodeCursor(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &preferencesv1.ListViewingEventsResponse{}
	next, err := s.eventPage(ctx, id, c, n, func(e *preferencesv1.ViewingEvent) error {
		out.ViewingEvents = append(out.ViewingEvents, e)
		return nil
	})
	if next != nil {
		out.NextPageToken = next.encode()
	}
	return out, err
}

// eventPage reads up to n events after c and returns the cursor of the next page (nil
// at the end).
func (s *Server) eventPage(ctx context.Context, memberID string, c cursor, n int, fn func(*preferencesv1.ViewingEvent) error) (*cursor, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT `+eventCols+` FROM viewing_events
		WHERE owner = $1 AND view_time <= $2 AND (view_time < $2 OR id < $3) ORDER BY view_time DESC, id DESC LIMIT $4`, memberID, c.ts, c.id, n+1)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	count := 0
	var last cursor
	for rows.Next() {
		e, at, err := scanEvent(rows, memberID)
		if err != nil {
			return nil, err
		}
		if count == n {
			return &last, nil
		}
		if err := fn(e); err != nil {
			return nil, err
		}
		count++
		last = cursor{at, e.GetName()[strings.LastIndex(e.GetName(), "/")+1:]}
	}
	return nil, rows.Err()
}

// DeleteViewingEvent implements PreferencesService.
func (s *Server) DeleteViewingEvent(ctx context.Context, req *preferencesv1.DeleteViewingEventRequest) (*emptypb.Empty, error) {
	mid, eid, err := child(req.GetName(), "viewingEvents", "name")
	if err != nil {
		return nil, err
	}
	if err := s.refuseHeld(ctx, mid); err != nil {
		return nil, err
	}
	res, err := s.DB.ExecContext(ctx, `DELETE FROM viewing_events WHERE id = $1 AND owner = $2`, eid, mid)
	if err != nil {
		return nil, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, errs.NotFoundf("VIEWING_EVENT_NOT_FOUND", "viewing event")
	}
	return &emptypb.Empty{}, nil
}

// ClearViewingHistory implements PreferencesService.
func (s *Server) ClearViewingHistory(ctx context.Context, req *preferencesv1.ClearViewingHistoryRequest) (*preferencesv1.ClearViewingHistoryResponse, error) {
	id, err := member(req.GetParent(), "", "parent")
	if err != nil {
		return nil, err
	}
	if err := s.refuseHeld(ctx, id); err != nil {
		return nil, err
	}
	res, err := s.DB.ExecContext(ctx, `DELETE FROM viewing_events WHERE owner = $1`, id)
	if err != nil {
		return nil, err
	}
	n, _ := res.RowsAffected()
	return &preferencesv1.ClearViewingHistoryResponse{DeletedCount: n}, nil
}

// SetRating implements PreferencesService (an upsert: one rating per title).
func (s *Server) SetRating(ctx context.Context, req *preferencesv1.SetRatingRequest) (*preferencesv1.Rating, error) {
	mid, title, err := child(req.GetRating().GetName(), "ratings", "rating.name")
	if err != nil {
		return nil, err
	}
	if err := s.refuseErased(ctx, s.DB, mid); err != nil {
		return nil, err
	}
	var v errs.Violations
	if !validTitle(title) {
		v.Add("rating.name", "title must be letters, digits, - and _, at most 64")
	}
	if st := req.GetRating().GetStars(); st < 1 || st > 5 {
		v.Add("rating.stars", "must be 1 to 5")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	now := s.now()
	if _, err := s.DB.ExecContext(ctx, `INSERT INTO ratings (owner, title_id, stars, updated_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (owner, title_id) DO UPDATE SET stars = excluded.stars, updated_at = excluded.updated_at`, mid, title, req.GetRating().GetStars(), micros(now)); err != nil {
		return nil, err
	}
	if err := s.postToNetworks(ctx, mid, PostRating, title, req.GetRating().GetStars()); err != nil {
		return nil, err
	}
	return &preferencesv1.Rating{Name: req.GetRating().GetName(), Stars: req.GetRating().GetStars(), UpdateTime: timestamppb.New(now)}, nil
}

// ListRatings implements PreferencesService.
func (s *Server) ListRatings(ctx context.Context, req *preferencesv1.ListRatingsRequest) (*preferencesv1.ListRatingsResponse, error) {
	id, err := member(req.GetParent(), "", "parent")
	if err != nil {
		return nil, err
	}
	n, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	c, err := decodeCursor(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &preferencesv1.ListRatingsResponse{}
	next, err := s.ratingPage(ctx, id, c, n, func(r *preferencesv1.Rating) error {
		out.Ratings = append(out.Ratings, r)
		return nil
	})
	if next != nil {
		out.NextPageToken = next.encode()
	}
	return out, err
}

func (s *Server) ratingPage(ctx context.Context, memberID string, c cursor, n int, fn func(*preferencesv1.Rating) error) (*cursor, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT title_id, stars, updated_at FROM ratings
		WHERE owner = $1 AND updated_at <= $2 AND (updated_at < $2 OR title_id < $3) ORDER BY updated_at DESC, title_id DESC LIMIT $4`, memberID, c.ts, c.id, n+1)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	count := 0
	var last cursor
	for rows.Next() {
		var title string
		var stars int32
		var at int64
		if err := rows.Scan(&title, &stars, &at); err != nil {
			return nil, err
		}
		if count == n {
			return &last, nil
		}
		if err := fn(&preferencesv1.Rating{Name: "members/" + memberID + "/ratings/" + title, Stars: stars, UpdateTime: ts(at)}); err != nil {
			return nil, err
		}
		count++
		last = cursor{at, title}
	}
	return nil, rows.Err()
}

// DeleteRating implements PreferencesService.
func (s *Server) DeleteRating(ctx context.Context, req *preferencesv1.DeleteRatingRequest) (*emptypb.Empty, error) {
	mid, title, err := child(req.GetName(), "ratings", "name")
	if err != nil {
		return nil, err
	}
	if err := s.refuseHeld(ctx, mid); err != nil {
		return nil, err
	}
	res, err := s.DB.ExecContext(ctx, `DELETE FROM ratings WHERE owner = $1 AND title_id = $2`, mid, title)
	if err != nil {
		return nil, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, errs.NotFoundf("RATING_NOT_FOUND", "rating")
	}
	return &emptypb.Empty{}, nil
}

// MinStatisticsMembers is the least number of distinct members (or pseudonyms of erased
// members) behind a title's statistics; below it they are withheld, so a count or an
// average cannot single out one member's viewing or rating (k-anonymity, k = 10).
const MinStatisticsMembers = 10

// GetTitleStatistics implements PreferencesService: aggregates over every row of a
// title, whoever (or whichever pseudonym) owns it. Titles watched by fewer than
// MinStatisticsMembers members answer FAILED_PRECONDITION STATISTICS_WITHHELD; the
// rating figures are 0 unless at least MinStatisticsMembers members rated it.
func (s *Server) GetTitleStatistics(ctx context.Context, req *preferencesv1.GetTitleStatisticsRequest) (*preferencesv1.TitleStatistics, error) {
	rest, ok := strings.CutPrefix(req.GetName(), "titles/")
	title, ok2 := strings.CutSuffix(rest, "/statistics")
	if !ok || !ok2 || !validTitle(title) {
		return nil, errs.Invalid(errs.FieldViolation{Field: "name", Description: "must be titles/{title}/statistics"})
	}
	out := &preferencesv1.TitleStatistics{Name: req.GetName()}
	var viewers, raters int
	if err := s.DB.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(DISTINCT owner) FROM viewing_events WHERE title_id = $1`, title).Scan(&out.ViewCount, &viewers); err != nil {
		return nil, err
	}
	var avg sql.NullFloat64
	if err := s.DB.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(DISTINCT owner), AVG(stars) FROM ratings WHERE title_id = $1`, title).Scan(&out.RatingCount, &raters, &avg); err != nil {
		return nil, err
	}
	if viewers < MinStatisticsMembers && raters < MinStatisticsMembers {
		return nil, errs.New(errs.FailedPrecondition, "STATISTICS_WITHHELD", "too few members watched this title to show its statistics")
	}
	if viewers < MinStatisticsMembers {
		out.ViewCount = 0
	}
	if raters < MinStatisticsMembers {
		out.RatingCount, avg.Float64 = 0, 0
	}
	out.AverageRating = avg.Float64
	return out, nil
}

// unsubscribePayload is sealed (AES-256-GCM via Tink) into the token, so the link
// carries no member id in clear and cannot be forged or altered.
type unsubscribePayload struct {
	Member  string `json:"m"`
	Channel int32  `json:"c"`
	Topic   int32  `json:"t"`
	Expires int64  `json:"e"`
}

var tokenAD = []byte("lethe unsubscribe v1")

// CreateUnsubscribeToken implements PreferencesService.
func (s *Server) CreateUnsubscribeToken(ctx context.Context, req *preferencesv1.CreateUnsubscribeTokenRequest) (*preferencesv1.UnsubscribeToken, error) {
	id, err := member(req.GetName(), commSuffix, "name")
	if err != nil {
		return nil, err
	}
	if err := s.refuseErased(ctx, s.DB, id); err != nil {
		return nil, err
	}
	var v errs.Violations
	if !isKnownChannel(req.GetChannel()) {
		v.Add("channel", "unknown channel")
	}
	if !isKnownTopic(req.GetTopic()) || req.GetTopic() == preferencesv1.Topic_TOPIC_TRANSACTIONAL {
		v.Add("topic", "must be a marketing topic")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	exp := s.now().Add(s.TokenTTL)
	raw, _ := json.Marshal(unsubscribePayload{Member: id, Channel: int32(req.GetChannel()), Topic: int32(req.GetTopic()), Expires: exp.Unix()})
	ct, err := s.Tokens.Encrypt(raw, tokenAD)
	if err != nil {
		return nil, err
	}
	return &preferencesv1.UnsubscribeToken{Token: base64.RawURLEncoding.EncodeToString(ct), ExpireTime: timestamppb.New(exp)}, nil
}

// Unsubscribe implements PreferencesService: one topic, no sign-in. Replaying a token
// is harmless: the member stays unsubscribed.
func (s *Server) Unsubscribe(ctx context.Context, req *preferencesv1.UnsubscribeRequest) (*preferencesv1.UnsubscribeResponse, error) {
	ct, err := base64.RawURLEncoding.DecodeString(req.GetToken())
	if err != nil || len(req.GetToken()) > 1024 {
		return nil, errs.Invalid(errs.FieldViolation{Field: "token", Description: "is not an unsubscribe token"})
	}
	raw, err := s.Tokens.Decrypt(ct, tokenAD)
	var p unsubscribePayload
	if err != nil || json.Unmarshal(raw, &p) != nil || !ids.Valid(p.Member) {
		return nil, &errs.Error{Code: errs.InvalidArgument, Reason: "TOKEN_INVALID", Message: "the unsubscribe token is not valid",
			Violations: []errs.FieldViolation{{Field: "token", Description: "is not an unsubscribe token this service issued"}}}
	}
	if s.now().Unix() > p.Expires {
		return nil, errs.New(errs.FailedPrecondition, "TOKEN_EXPIRED", "the unsubscribe link expired; manage preferences after signing in")
	}
	ch := &preferencesv1.SubscriptionChange{Channel: preferencesv1.Channel(p.Channel), Topic: preferencesv1.Topic(p.Topic)}
	err = s.DB.InTx(ctx, func(tx *sql.Tx) error {
		return s.applyChanges(ctx, tx, p.Member, []*preferencesv1.SubscriptionChange{ch}, preferencesv1.ConsentSource_CONSENT_SOURCE_UNSUBSCRIBE_LINK, "")
	})
	if err != nil {
		return nil, err
	}
	return &preferencesv1.UnsubscribeResponse{Channel: ch.GetChannel(), Topic: ch.GetTopic()}, nil
}
