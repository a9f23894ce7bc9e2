package sharing

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"errors"
	"net/url"
	"strings"

	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/ids"
)

// NoticeToken is the token of a notice's one-click objection link: the notice id and a
// keyed MAC over it (derived from the PRF keyset every replica shares), so only sharing
// can mint one and it names nothing but an opaque notice id.
func (s *Server) NoticeToken(noticeID string) string {
	mac, err := s.Keys.ComputePrimaryPRF([]byte("notice-objection\x00"+noticeID), 16)
	if err != nil {
		panic("sharing: notice link key: " + err.Error())
	}
	return noticeID + "." + hex.EncodeToString(mac)
}

// NoticeObjectionURL is the one-click objection link for a notice, on the public gateway.
func (s *Server) NoticeObjectionURL(noticeID string) string {
	return strings.TrimRight(s.PublicURL, "/") + "/v1/notices:object?token=" + url.QueryEscape(s.NoticeToken(noticeID))
}

var errBadNoticeToken = &errs.Error{Code: errs.InvalidArgument, Reason: "TOKEN_INVALID", Message: "the objection link is not valid",
	Violations: []errs.FieldViolation{{Field: "token", Description: "is not an objection link this service issued"}}}

// ObjectToNotice implements SharingService: the notice email's one-click objection. It
// records the member's objection to the notice's partner and purpose (idempotent per
// notice, so a second click or a mail scanner's fetch changes nothing) and signals the
// notice's workflow so it ends BLOCKED.
func (s *Server) ObjectToNotice(ctx context.Context, req *sharingv1.ObjectToNoticeRequest) (*sharingv1.ObjectToNoticeResponse, error) {
	tok := req.GetToken()
	noticeID, _, ok := strings.Cut(tok, ".")
	if !ok || len(tok) > 200 || !ids.Valid(noticeID) || subtle.ConstantTimeCompare([]byte(tok), []byte(s.NoticeToken(noticeID))) != 1 {
		return nil, errBadNoticeToken
	}
	var member, pid, purpose string
	err := s.DB.QueryRowContext(ctx, `SELECT member_id, partner_id, purpose_id FROM notices WHERE id = $1`, noticeID).Scan(&member, &pid, &purpose)
	if errors.Is(err, sql.ErrNoRows) {
		// The member was erased since: nothing of theirs is left to share.
		return nil, errs.NotFoundf("NOTICE_NOT_FOUND", "notice")
	}
	if err != nil {
		return nil, err
	}
	if _, err := s.CreateObjection(ctx, &sharingv1.CreateObjectionRequest{Parent: "members/" + member,
		Objection: &sharingv1.Objection{Partner: "partners/" + pid, Purpose: purpose}, RequestId: "notice-link/" + noticeID}); err != nil {
		return nil, err
	}
	out := &sharingv1.ObjectToNoticeResponse{Partner: "partners/" + pid, Purpose: purpose}
	if p, err := s.partner(ctx, pid); err == nil {
		out.PartnerDisplayName = p.p.GetDisplayName()
	}
	if s.Logger != nil {
		s.Logger.Info("objection by notice link", "partner", pid, "purpose", purpose)
	}
	return out, nil
}
