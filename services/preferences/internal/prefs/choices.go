package prefs

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/ids"
)

const commSuffix = "/communicationPreferences"

func (s *Server) loadComm(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, memberID string) (*preferencesv1.CommunicationPreferences, error) {
	type key struct {
		c preferencesv1.Channel
		t preferencesv1.Topic
	}
	stored := map[key]*preferencesv1.Subscription{}
	rows, err := q.QueryContext(ctx, `SELECT channel, topic, subscribed, updated_at FROM subscriptions WHERE member_id = $1`, memberID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var c, t int32
		var sub bool
		var up int64
		if err := rows.Scan(&c, &t, &sub, &up); err != nil {
			return nil, err
		}
		stored[key{preferencesv1.Channel(c), preferencesv1.Topic(t)}] = &preferencesv1.Subscription{Subscribed: sub, UpdateTime: ts(up)}
	}
	out := &preferencesv1.CommunicationPreferences{Name: "members/" + memberID + commSuffix}
	for _, c := range Channels {
		for _, t := range Topics {
			sub := &preferencesv1.Subscription{Channel: c, Topic: t}
			if got := stored[key{c, t}]; got != nil {
				sub.Subscribed, sub.UpdateTime = got.Subscribed, got.UpdateTime
			}
			if t == preferencesv1.Topic_TOPIC_TRANSACTIONAL {
				sub.Subscribed, sub.Locked = true, true
			}
			out.Subscriptions = append(out.Subscriptions, sub)
		}
	}
	return out, rows.Err()
}

// GetCommunicationPreferences implements PreferencesService.
func (s *Server) GetCommunicationPreferences(ctx context.Context, req *preferencesv1.GetCommunicationPreferencesRequest) (*preferencesv1.CommunicationPreferences, error) {
	id, err := member(req.GetName(), commSuffix, "name")
	if err != nil {
		return nil, err
	}
	return s.loadComm(ctx, s.DB, id)
}

// applyChanges writes subscription changes and their consent records in tx; all or
// nothing.
func (s *Server) applyChanges(ctx context.Context, tx *sql.Tx, memberID string, changes []*preferencesv1.SubscriptionChange, source preferencesv1.ConsentSource, policy string) error {
	if err := s.refuseErased(ctx, tx, memberID); err != nil {
		return err // checked again inside the transaction: an erasure may have just committed
	}
	if len(changes) == 0 {
		return nil
	}
	now := s.now()
	// Two statements for any number of changes (stopping all marketing is fifteen): the
	// subscriptions upserted, the last change of a channel and topic winning as it would
	// one by one (an upsert may not touch a row twice), and a consent record per change.
	type key struct{ c, t int32 }
	last := map[key]int{}
	for i, ch := range changes {
		last[key{int32(ch.GetChannel()), int32(ch.GetTopic())}] = i
	}
	var subs, recs strings.Builder
	var subArgs, recArgs []any
	for i, ch := range changes {
		c, t := int32(ch.GetChannel()), int32(ch.GetTopic())
		if last[key{c, t}] == i {
			if len(subArgs) > 0 {
				subs.WriteString(", ")
			}
			n := len(subArgs)
			fmt.Fprintf(&subs, "($%d, $%d, $%d, $%d, $%d)", n+1, n+2, n+3, n+4, n+5)
			subArgs = append(subArgs, memberID, c, t, ch.GetSubscribed(), micros(now))
		}
		value := "unsubscribed"
		if ch.GetSubscribed() {
			value = "subscribed"
		}
		if len(recArgs) > 0 {
			recs.WriteString(", ")
		}
		n := len(recArgs)
		fmt.Fprintf(&recs, "($%d, $%d, $%d, $%d, $%d, $%d, $%d)", n+1, n+2, n+3, n+4, n+5, n+6, n+7)
		recArgs = append(recArgs, ids.New(), memberID, settingName(ch.GetChannel(), ch.GetTopic()), value, policy, int32(source), micros(now))
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO subscriptions (member_id, channel, topic, subscribed, updated_at) VALUES `+subs.String()+`
		ON CONFLICT (member_id, channel, topic) DO UPDATE SET subscribed = excluded.subscribed, updated_at = excluded.updated_at`, subArgs...); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO consent_records (id, member_id, setting, value, policy_version, source, created_at) VALUES `+recs.String(), recArgs...)
	return err
}

func validateChanges(changes []*preferencesv1.SubscriptionChange) error {
	var v errs.Violations
	if len(changes) == 0 {
		v.Add("changes", "must list at least one change")
	}
	for i, ch := range changes {
		if !isKnownChannel(ch.GetChannel()) {
			v.Add(fieldIdx("changes", i, "channel"), "unknown channel")
		}
		if !isKnownTopic(ch.GetTopic()) {
			v.Add(fieldIdx("changes", i, "topic"), "unknown topic")
		}
	}
	if err := v.Err(); err != nil {
		return err
	}
	for _, ch := range changes {
		if ch.GetTopic() == preferencesv1.Topic_TOPIC_TRANSACTIONAL && !ch.GetSubscribed() {
			return errs.New(errs.FailedPrecondition, "TRANSACTIONAL_LOCKED", "account and transaction messages cannot be turned off")
		}
	}
	return nil
}

func fieldIdx(list string, i int, field string) string {
	return list + "[" + strconv.Itoa(i) + "]." + field
}

// UpdateCommunicationPreferences implements PreferencesService.
func (s *Server) UpdateCommunicationPreferences(ctx context.Context, req *preferencesv1.UpdateCommunicationPreferencesRequest) (*preferencesv1.CommunicationPreferences, error) {
	id, err := member(req.GetName(), commSuffix, "name")
	if err != nil {
		return nil, err
	}
	if err := s.refuseErased(ctx, s.DB, id); err != nil {
		return nil, err
	}
	if err := validateChanges(req.GetChanges()); err != nil {
		return nil, err
	}
	source := req.GetSource()
	if source == preferencesv1.ConsentSource_CONSENT_SOURCE_UNSPECIFIED {
		source = preferencesv1.ConsentSource_CONSENT_SOURCE_MEMBER
	}
	err = s.DB.InTx(ctx, func(tx *sql.Tx) error {
		if _, done, err := replay(ctx, tx, req.GetRequestId(), "update_communication"); err != nil || done {
			return err
		}
		if err := s.applyChanges(ctx, tx, id, req.GetChanges(), source, req.GetPolicyVersion()); err != nil {
			return err
		}
		return logRequest(ctx, tx, req.GetRequestId(), id, "update_communication", nil, s.now())
	})
	if err != nil {
		return nil, err
	}
	return s.loadComm(ctx, s.DB, id)
}

func logRequest(ctx context.Context, tx *sql.Tx, requestID, memberID, kind string, result []byte, now interface{ UnixMicro() int64 }) error {
	if requestID == "" {
		return nil
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO request_log (request_id, member_id, kind, result, created_at) VALUES ($1, $2, $3, $4, $5)`, requestID, memberID, kind, result, now.UnixMicro())
	return err
}

// marketingChanges turns off every non-transactional pair.
func marketingChanges() []*preferencesv1.SubscriptionChange {
	var out []*preferencesv1.SubscriptionChange
	for _, c := range Channels {
		for _, t := range Topics {
			if t != preferencesv1.Topic_TOPIC_TRANSACTIONAL {
				out = append(out, &preferencesv1.SubscriptionChange{Channel: c, Topic: t})
			}
		}
	}
	return out
}

// StopAllMarketing implements PreferencesService.
func (s *Server) StopAllMarketing(ctx context.Context, req *preferencesv1.StopAllMarketingRequest) (*preferencesv1.CommunicationPreferences, error) {
	id, err := member(req.GetName(), commSuffix, "name")
	if err != nil {
		return nil, err
	}
	if err := s.refuseErased(ctx, s.DB, id); err != nil {
		return nil, err
	}
	source := req.GetSource()
	if source == preferencesv1.ConsentSource_CONSENT_SOURCE_UNSPECIFIED {
		source = preferencesv1.ConsentSource_CONSENT_SOURCE_PRIVACY_REQUEST
	}
	err = s.DB.InTx(ctx, func(tx *sql.Tx) error {
		if _, done, err := replay(ctx, tx, req.GetRequestId(), "stop_all_marketing"); err != nil || done {
			return err
		}
		if err := s.applyChanges(ctx, tx, id, marketingChanges(), source, ""); err != nil {
			return err
		}
		return logRequest(ctx, tx, req.GetRequestId(), id, "stop_all_marketing", nil, s.now())
	})
	if err != nil {
		return nil, err
	}
	return s.loadComm(ctx, s.DB, id)
}

// ListConsentRecords implements PreferencesService.
func (s *Server) ListConsentRecords(ctx context.Context, req *preferencesv1.ListConsentRecordsRequest) (*preferencesv1.ListConsentRecordsResponse, error) {
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
	rows, err := s.DB.QueryContext(ctx, `SELECT id, setting, value, policy_version, source, created_at FROM consent_records
		WHERE member_id = $1 AND created_at <= $2 AND (created_at < $2 OR id < $3) ORDER BY created_at DESC, id DESC LIMIT $4`, id, c.ts, c.id, n+1)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := &preferencesv1.ListConsentRecordsResponse{}
	var last cursor
	for rows.Next() {
		var r preferencesv1.ConsentRecord
		var rid string
		var src int32
		var at int64
		if err := rows.Scan(&rid, &r.Setting, &r.Value, &r.PolicyVersion, &src, &at); err != nil {
			return nil, err
		}
		if len(out.ConsentRecords) == n {
			out.NextPageToken = last.encode()
			break
		}
		r.Name, r.Source, r.CreateTime = "members/"+id+"/consentRecords/"+rid, preferencesv1.ConsentSource(src), ts(at)
		out.ConsentRecords = append(out.ConsentRecords, &r)
		last = cursor{at, rid}
	}
	return out, rows.Err()
}

const adSuffix = "/adPreferences"

func (s *Server) loadAds(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id string) (*preferencesv1.AdPreferences, error) {
	out := &preferencesv1.AdPreferences{Name: "members/" + id + adSuffix}
	var gpc sql.NullInt64
	var up int64
	err := q.QueryRowContext(ctx, `SELECT personalized_ads, sale_sharing_opt_out, gpc_at, updated_at FROM ad_preferences WHERE member_id = $1`, id).
		Scan(&out.PersonalizedAds, &out.SaleSharingOptOut, &gpc, &up)
	if err == sql.ErrNoRows {
		return out, nil // default: no personalization until the member allows it
	}
	if err != nil {
		return nil, err
	}
	out.UpdateTime = ts(up)
	if gpc.Valid {
		out.GpcSignalTime = ts(gpc.Int64)
	}
	return out, nil
}

func (s *Server) saveAds(ctx context.Context, tx *sql.Tx, id string, a *preferencesv1.AdPreferences) error {
	var gpc any
	if a.GetGpcSignalTime() != nil {
		gpc = micros(a.GetGpcSignalTime().AsTime())
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO ad_preferences (member_id, personalized_ads, sale_sharing_opt_out, gpc_at, updated_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (member_id) DO UPDATE SET personalized_ads = excluded.personalized_ads, sale_sharing_opt_out = excluded.sale_sharing_opt_out, gpc_at = excluded.gpc_at, updated_at = excluded.updated_at`,
		id, a.GetPersonalizedAds(), a.GetSaleSharingOptOut(), gpc, micros(s.now()))
	return err
}

// GetAdPreferences implements PreferencesService.
func (s *Server) GetAdPreferences(ctx context.Context, req *preferencesv1.GetAdPreferencesRequest) (*preferencesv1.AdPreferences, error) {
	id, err := member(req.GetName(), adSuffix, "name")
	if err != nil {
		return nil, err
	}
	out, err := s.loadAds(ctx, s.DB, id)
	if err != nil {
		return nil, err
	}
	// While processing is restricted nothing is personalized; the member's own choice
	// is kept for after the lift.
	if out.ProcessingRestricted, err = restricted(ctx, s.DB, id); out.ProcessingRestricted {
		out.PersonalizedAds = false
	}
	return out, err
}

func boolValue(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

// UpdateAdPreferences implements PreferencesService. While a Global Privacy Control
// signal is on record, only the member themself (source MEMBER) can turn personalization
// or sale/sharing back on.
func (s *Server) UpdateAdPreferences(ctx context.Context, req *preferencesv1.UpdateAdPreferencesRequest) (*preferencesv1.AdPreferences, error) {
	id, err := member(req.GetAdPreferences().GetName(), adSuffix, "ad_preferences.name")
	if err != nil {
		return nil, err
	}
	if err := s.refuseErased(ctx, s.DB, id); err != nil {
		return nil, err
	}
	paths := req.GetUpdateMask().GetPaths()
	var v errs.Violations
	if len(paths) == 0 {
		v.Add("update_mask", "must name at least one field")
	}
	for _, p := range paths {
		if p != "personalized_ads" && p != "sale_sharing_opt_out" {
			v.Add("update_mask", "unknown or read-only field path")
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	source := req.GetSource()
	if source == preferencesv1.ConsentSource_CONSENT_SOURCE_UNSPECIFIED {
		source = preferencesv1.ConsentSource_CONSENT_SOURCE_MEMBER
	}
	var out *preferencesv1.AdPreferences
	err = s.DB.InTx(ctx, func(tx *sql.Tx) error {
		cur, err := s.loadAds(ctx, tx, id)
		if err != nil {
			return err
		}
		in := req.GetAdPreferences()
		loosens := (slices.Contains(paths, "personalized_ads") && in.GetPersonalizedAds()) || (slices.Contains(paths, "sale_sharing_opt_out") && !in.GetSaleSharingOptOut())
		if cur.GetGpcSignalTime() != nil && loosens && source != preferencesv1.ConsentSource_CONSENT_SOURCE_MEMBER {
			return errs.New(errs.FailedPrecondition, "GPC_ACTIVE", "a Global Privacy Control signal is on record; only the member can opt back in")
		}
		now := s.now()
		for _, p := range paths {
			switch p {
			case "personalized_ads":
				cur.PersonalizedAds = in.GetPersonalizedAds()
				err = s.consent(ctx, tx, id, "ads/personalized", boolValue(cur.PersonalizedAds, "opted_in", "opted_out"), req.GetPolicyVersion(), source, now)
			case "sale_sharing_opt_out":
				cur.SaleSharingOptOut = in.GetSaleSharingOptOut()
				err = s.consent(ctx, tx, id, "ads/sale_sharing", boolValue(cur.SaleSharingOptOut, "opted_out", "opted_in"), req.GetPolicyVersion(), source, now)
			}
			if err != nil {
				return err
			}
		}
		if err := s.saveAds(ctx, tx, id, cur); err != nil {
			return err
		}
		out = cur
		out.UpdateTime = timestamppb.New(now)
		return nil
	})
	return out, err
}

// RecordGlobalPrivacyControl implements PreferencesService: a Sec-GPC: 1 signal opts the
// member out of sale and sharing and of ad personalization. Repeated signals only
// refresh the signal time.
func (s *Server) RecordGlobalPrivacyControl(ctx context.Context, req *preferencesv1.RecordGlobalPrivacyControlRequest) (*preferencesv1.AdPreferences, error) {
	id, err := member(req.GetName(), adSuffix, "name")
	if err != nil {
		return nil, err
	}
	if err := s.refuseErased(ctx, s.DB, id); err != nil {
		return nil, err
	}
	var out *preferencesv1.AdPreferences
	err = s.DB.InTx(ctx, func(tx *sql.Tx) (err error) {
		out, err = s.applyGPC(ctx, tx, id)
		return err
	})
	return out, err
}

// applyGPC opts the member out of sale and sharing and of ad personalization for a
// Global Privacy Control signal, with a consent record when anything changed.
func (s *Server) applyGPC(ctx context.Context, tx *sql.Tx, id string) (*preferencesv1.AdPreferences, error) {
	cur, err := s.loadAds(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	now := s.now()
	if cur.GetPersonalizedAds() || !cur.GetSaleSharingOptOut() || cur.GetGpcSignalTime() == nil {
		if err := s.consent(ctx, tx, id, "ads/sale_sharing", "opted_out", "", preferencesv1.ConsentSource_CONSENT_SOURCE_GLOBAL_PRIVACY_CONTROL, now); err != nil {
			return nil, err
		}
	}
	cur.PersonalizedAds, cur.SaleSharingOptOut, cur.GpcSignalTime = false, true, timestamppb.New(now)
	if err := s.saveAds(ctx, tx, id, cur); err != nil {
		return nil, err
	}
	cur.UpdateTime = timestamppb.New(now)
	return cur, nil
}

const visSuffix = "/profileVisibility"

// GetProfileVisibility implements PreferencesService. Default: everything private.
func (s *Server) GetProfileVisibility(ctx context.Context, req *preferencesv1.GetProfileVisibilityRequest) (*preferencesv1.ProfileVisibility, error) {
	id, err := member(req.GetName(), visSuffix, "name")
	if err != nil {
		return nil, err
	}
	return s.loadVisibility(ctx, s.DB, id)
}

func (s *Server) loadVisibility(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id string) (*preferencesv1.ProfileVisibility, error) {
	priv := int32(preferencesv1.Visibility_VISIBILITY_PRIVATE)
	d, h, r, c := priv, priv, priv, priv
	err := q.QueryRowContext(ctx, `SELECT display_name, viewing_history, ratings, social_connections FROM profile_visibility WHERE member_id = $1`, id).Scan(&d, &h, &r, &c)
	if err != nil && err != sql.ErrNoRows {
		return nil, err
	}
	return &preferencesv1.ProfileVisibility{Name: "members/" + id + visSuffix, DisplayName: preferencesv1.Visibility(d),
		ViewingHistory: preferencesv1.Visibility(h), Ratings: preferencesv1.Visibility(r), SocialConnections: preferencesv1.Visibility(c)}, nil
}

// UpdateProfileVisibility implements PreferencesService.
func (s *Server) UpdateProfileVisibility(ctx context.Context, req *preferencesv1.UpdateProfileVisibilityRequest) (*preferencesv1.ProfileVisibility, error) {
	in := req.GetProfileVisibility()
	id, err := member(in.GetName(), visSuffix, "profile_visibility.name")
	if err != nil {
		return nil, err
	}
	if err := s.refuseErased(ctx, s.DB, id); err != nil {
		return nil, err
	}
	var v errs.Violations
	valid := func(x preferencesv1.Visibility) bool { return x >= 1 && x <= 3 }
	fields := map[string]preferencesv1.Visibility{"display_name": in.GetDisplayName(), "viewing_history": in.GetViewingHistory(), "ratings": in.GetRatings(), "social_connections": in.GetSocialConnections()}
	if len(req.GetUpdateMask().GetPaths()) == 0 {
		v.Add("update_mask", "must name at least one field")
	}
	for _, p := range req.GetUpdateMask().GetPaths() {
		x, ok := fields[p]
		switch {
		case !ok:
			v.Add("update_mask", "unknown field path")
		case !valid(x):
			v.Add("profile_visibility."+p, "must be PUBLIC, MEMBERS or PRIVATE")
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	var out *preferencesv1.ProfileVisibility
	err = s.DB.InTx(ctx, func(tx *sql.Tx) error {
		cur, err := s.loadVisibility(ctx, tx, id)
		if err != nil {
			return err
		}
		for _, p := range req.GetUpdateMask().GetPaths() {
			switch p {
			case "display_name":
				cur.DisplayName = in.GetDisplayName()
			case "viewing_history":
				cur.ViewingHistory = in.GetViewingHistory()
			case "ratings":
				cur.Ratings = in.GetRatings()
			case "social_connections":
				cur.SocialConnections = in.GetSocialConnections()
			}
			if err := s.consent(ctx, tx, id, "visibility/"+p, fields[p].String(), "", preferencesv1.ConsentSource_CONSENT_SOURCE_MEMBER, s.now()); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO profile_visibility (member_id, display_name, viewing_history, ratings, social_connections) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (member_id) DO UPDATE SET display_name = excluded.display_name, viewing_history = excluded.viewing_history, ratings = excluded.ratings, social_connections = excluded.social_connections`,
			id, int32(cur.DisplayName), int32(cur.ViewingHistory), int32(cur.Ratings), int32(cur.SocialConnections))
		out = cur
		return err
	})
	return out, err
}

// refField binds sealed external account refs to their column.
const refField = "social_connections.external_account_ref"

// sealedPrefix marks a value sealed under the member's key (platform/shred); rows
// written before sealing hold plaintext and are read as they are.
const sealedPrefix = "sealed:v1:"

// sealRef encrypts an external account ref under the member's key, so erasing the
// member (destroying the key) leaves only ciphertext wherever the row's bytes remain.
func (s *Server) sealRef(ctx context.Context, memberID, ref string) (string, error) {
	ct, err := s.Keys.Seal(ctx, memberID, refField, []byte(ref))
	if err != nil {
		return "", err
	}
	return sealedPrefix + base64.RawStdEncoding.EncodeToString(ct), nil
}

func (s *Server) openRef(ctx context.Context, memberID, stored string) (string, error) {
	b64, ok := strings.CutPrefix(stored, sealedPrefix)
	if !ok {
		return stored, nil
	}
	ct, err := base64.RawStdEncoding.DecodeString(b64)
	if err != nil {
		return "", err
	}
	pt, err := s.Keys.Unseal(ctx, memberID, refField, ct)
	return string(pt), err
}

func (s *Server) scanSocial(ctx context.Context, rows interface{ Scan(...any) error }, memberID string) (*preferencesv1.SocialConnection, error) {
	var c preferencesv1.SocialConnection
	var id, ref string
	var created int64
	if err := rows.Scan(&id, &c.Network, &ref, &c.ShareViewingActivity, &c.ShareRatings, &created); err != nil {
		return nil, err
	}
	var err error
	if c.ExternalAccountRef, err = s.openRef(ctx, memberID, ref); err != nil {
		return nil, err
	}
	c.Name, c.CreateTime = "members/"+memberID+"/socialConnections/"+id, ts(created)
	return &c, nil
}

const socialCols = `id, network, external_account_ref, share_viewing_activity, share_ratings, created_at`

// ListSocialConnections implements PreferencesService.
func (s *Server) ListSocialConnections(ctx context.Context, req *preferencesv1.ListSocialConnectionsRequest) (*preferencesv1.ListSocialConnectionsResponse, error) {
	id, err := member(req.GetParent(), "", "parent")
	if err != nil {
		return nil, err
	}
	rows, err := s.DB.QueryContext(ctx, `SELECT `+socialCols+` FROM social_connections WHERE member_id = $1 ORDER BY created_at, id`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := &preferencesv1.ListSocialConnectionsResponse{}
	for rows.Next() {
		c, err := s.scanSocial(ctx, rows, id)
		if err != nil {
			return nil, err
		}
		out.SocialConnections = append(out.SocialConnections, c)
	}
	return out, rows.Err()
}

// CreateSocialConnection implements PreferencesService.
func (s *Server) CreateSocialConnection(ctx context.Context, req *preferencesv1.CreateSocialConnectionRequest) (*preferencesv1.SocialConnection, error) {
	id, err := member(req.GetParent(), "", "parent")
	if err != nil {
		return nil, err
	}
	if err := s.refuseErased(ctx, s.DB, id); err != nil {
		return nil, err
	}
	c := req.GetSocialConnection()
	var v errs.Violations
	if n := len(c.GetNetwork()); n == 0 || n > 40 {
		v.Add("social_connection.network", "is required, at most 40 characters")
	}
	if n := len(c.GetExternalAccountRef()); n == 0 || n > 200 {
		v.Add("social_connection.external_account_ref", "is required, at most 200 characters")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if req.GetRequestId() != "" {
		row := s.DB.QueryRowContext(ctx, `SELECT `+socialCols+` FROM social_connections WHERE request_id = $1 AND member_id = $2`, req.GetRequestId(), id)
		if got, err := s.scanSocial(ctx, row, id); err == nil {
			return got, nil
		}
	}
	cid, now := ids.New(), s.now()
	sealed, err := s.sealRef(ctx, id, c.GetExternalAccountRef())
	if err != nil {
		return nil, err
	}
	var reqID any
	if req.GetRequestId() != "" {
		reqID = req.GetRequestId()
	}
	if _, err := s.DB.ExecContext(ctx, `INSERT INTO social_connections (id, member_id, network, external_account_ref, share_viewing_activity, share_ratings, created_at, request_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, cid, id, c.GetNetwork(), sealed, c.GetShareViewingActivity(), c.GetShareRatings(), micros(now), reqID); err != nil {
		return nil, err
	}
	return &preferencesv1.SocialConnection{Name: "members/" + id + "/socialConnections/" + cid, Network: c.GetNetwork(), ExternalAccountRef: c.GetExternalAccountRef(),
		ShareViewingActivity: c.GetShareViewingActivity(), ShareRatings: c.GetShareRatings(), CreateTime: timestamppb.New(now)}, nil
}

// UpdateSocialConnection implements PreferencesService.
func (s *Server) UpdateSocialConnection(ctx context.Context, req *preferencesv1.UpdateSocialConnectionRequest) (*preferencesv1.SocialConnection, error) {
	in := req.GetSocialConnection()
	mid, cid, err := child(in.GetName(), "socialConnections", "social_connection.name")
	if err != nil {
		return nil, err
	}
	if err := s.refuseErased(ctx, s.DB, mid); err != nil {
		return nil, err
	}
	var v errs.Violations
	if len(req.GetUpdateMask().GetPaths()) == 0 {
		v.Add("update_mask", "must name at least one field")
	}
	for _, p := range req.GetUpdateMask().GetPaths() {
		if p != "share_viewing_activity" && p != "share_ratings" {
			v.Add("update_mask", "unknown or read-only field path")
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	cur, err := s.scanSocial(ctx, s.DB.QueryRowContext(ctx, `SELECT `+socialCols+` FROM social_connections WHERE id = $1 AND member_id = $2`, cid, mid), mid)
	if err == sql.ErrNoRows {
		return nil, errs.NotFoundf("SOCIAL_CONNECTION_NOT_FOUND", "social connection")
	} else if err != nil {
		return nil, err
	}
	for _, p := range req.GetUpdateMask().GetPaths() {
		if p == "share_viewing_activity" {
			cur.ShareViewingActivity = in.GetShareViewingActivity()
		} else {
			cur.ShareRatings = in.GetShareRatings()
		}
	}
	_, err = s.DB.ExecContext(ctx, `UPDATE social_connections SET share_viewing_activity = $1, share_ratings = $2 WHERE id = $3`, cur.ShareViewingActivity, cur.ShareRatings, cid)
	return cur, err
}

// DeleteSocialConnection implements PreferencesService.
func (s *Server) DeleteSocialConnection(ctx context.Context, req *preferencesv1.DeleteSocialConnectionRequest) (*emptypb.Empty, error) {
	mid, cid, err := child(req.GetName(), "socialConnections", "name")
	if err != nil {
		return nil, err
	}
	if err := s.refuseHeld(ctx, mid); err != nil {
		return nil, err
	}
	// Disconnecting deletes what the network was given through this connection, with it.
	err = s.DB.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM social_connections WHERE id = $1 AND member_id = $2`, cid, mid)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errs.NotFoundf("SOCIAL_CONNECTION_NOT_FOUND", "social connection")
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM social_posts WHERE connection_id = $1 AND member_id = $2`, cid, mid)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}
