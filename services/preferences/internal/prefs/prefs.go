// Package prefs is the preferences service: communication choices with their consent
// history, ad personalization and Global Privacy Control, profile visibility, social
// connections, and the statistical data (viewing history and ratings). It implements
// lethe.preferences.v1.PreferencesService and the lethe.subject.v1 contract.
package prefs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tink-crypto/tink-go/v2/tink"
	"google.golang.org/protobuf/types/known/timestamppb"

	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	subjectv1 "lethe.dev/gen/lethe/subject/v1"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/ids"
	"lethe.dev/platform/shred"
	"lethe.dev/platform/storage"
)

// Server implements PreferencesService and DataSubjectService.
type Server struct {
	preferencesv1.UnimplementedPreferencesServiceServer
	subjectv1.UnimplementedDataSubjectServiceServer
	DB     *storage.DB
	Tokens tink.AEAD // seals unsubscribe tokens
	// Keys holds each member's data key (crypto-shredding: erasure destroys it).
	Keys   *shred.Keys
	Logger *slog.Logger
	Now    func() time.Time
	// Holds answers whether a member's data is on legal hold (fulfillment's per-member
	// holds); nil: no holds are configured (no fulfillment address).
	Holds Holds
	// Names gives display names for profiles (identity); nil: profiles show none.
	Names Names
	// TokenTTL is how long an unsubscribe link works.
	TokenTTL time.Duration
	// PolicyMailer emails members about policy changes (through identity); nil sends none.
	PolicyMailer PolicyMailer
	// PolicyNotices starts the change-notice workflow of a published version (Temporal);
	// nil: publishing is refused (TEMPORAL_DISABLED), since nobody would be told.
	PolicyNotices PolicyNotices
	// MarketingMailer lists members and mails them marketing through identity, and
	// MarketingMailings starts a mailing's workflow; without both no mailing can be sent.
	MarketingMailer   MarketingMailer
	MarketingMailings MarketingMailings
	// SignUps tells when members signed up (identity), so a member who signed up after a
	// policy version accepted it then; nil: every member is asked.
	SignUps SignUps

	signUps signUpCache
}

// Page size limits for list calls: default and maximum. Oversized pages are refused,
// not clamped, so a client learns its request was wrong.
const (
	defaultPage = 50
	maxPage     = 1000
)

// Channels and topics a member can choose about.
var (
	Channels = []preferencesv1.Channel{preferencesv1.Channel_CHANNEL_EMAIL, preferencesv1.Channel_CHANNEL_POSTAL, preferencesv1.Channel_CHANNEL_PUSH}
	Topics   = []preferencesv1.Topic{
		preferencesv1.Topic_TOPIC_NEWSLETTER, preferencesv1.Topic_TOPIC_PRODUCT_NEWS, preferencesv1.Topic_TOPIC_PROMOTIONS,
		preferencesv1.Topic_TOPIC_SURVEYS, preferencesv1.Topic_TOPIC_PARTNER_OFFERS, preferencesv1.Topic_TOPIC_TRANSACTIONAL,
	}
)

func (s *Server) now() time.Time { return s.Now().UTC() }

func micros(t time.Time) int64 { return t.UnixMicro() }

func ts(us int64) *timestamppb.Timestamp { return timestamppb.New(time.UnixMicro(us)) }

// member parses "members/{member}" followed by suffix (e.g. "/adPreferences").
func member(name, suffix, field string) (string, error) {
	rest, ok := strings.CutPrefix(name, "members/")
	id, ok2 := strings.CutSuffix(rest, suffix)
	if !ok || !ok2 || !ids.Valid(id) {
		return "", errs.Invalid(errs.FieldViolation{Field: field, Description: "must be members/{member}" + suffix})
	}
	return id, nil
}

// child parses "members/{member}/{collection}/{id}".
func child(name, collection, field string) (string, string, error) {
	rest, ok := strings.CutPrefix(name, "members/")
	m, id, ok2 := strings.Cut(rest, "/"+collection+"/")
	if !ok || !ok2 || !ids.Valid(m) || id == "" || len(id) > 128 || strings.Contains(id, "/") {
		return "", "", errs.Invalid(errs.FieldViolation{Field: field, Description: "must be members/{member}/" + collection + "/{id}"})
	}
	return m, id, nil
}

func pageSize(n int32) (int, error) {
	switch {
	case n == 0:
		return defaultPage, nil
	case n < 0 || n > maxPage:
		return 0, errs.Invalid(errs.FieldViolation{Field: "page_size", Description: fmt.Sprintf("must be between 0 and %d", maxPage)})
	}
	return int(n), nil
}

func isKnownChannel(c preferencesv1.Channel) bool {
	for _, x := range Channels {
		if x == c {
			return true
		}
	}
	return false
}

func isKnownTopic(t preferencesv1.Topic) bool {
	for _, x := range Topics {
		if x == t {
			return true
		}
	}
	return false
}

func settingName(c preferencesv1.Channel, t preferencesv1.Topic) string {
	return strings.ToLower(strings.TrimPrefix(c.String(), "CHANNEL_") + "/" + strings.TrimPrefix(t.String(), "TOPIC_"))
}

// consent appends a consent record in tx.
func (s *Server) consent(ctx context.Context, tx *sql.Tx, memberID, setting, value, policy string, source preferencesv1.ConsentSource, now time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO consent_records (id, member_id, setting, value, policy_version, source, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		ids.New(), memberID, setting, value, policy, int32(source), micros(now))
	return err
}

// replay returns the stored result bytes of an idempotent request, or nil.
func replay(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, requestID, kind string) ([]byte, bool, error) {
	if requestID == "" {
		return nil, false, nil
	}
	var result []byte
	var k string
	err := q.QueryRowContext(ctx, `SELECT kind, result FROM request_log WHERE request_id = $1`, requestID).Scan(&k, &result)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if k != kind {
		return nil, false, errs.New(errs.FailedPrecondition, "REQUEST_ID_REUSED", "request_id was used for a different call")
	}
	return result, true, nil
}
