package prefs

import (
	"context"
	"database/sql"
	"errors"
	"regexp"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/types/known/timestamppb"

	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	"lethe.dev/platform/authz"
	"lethe.dev/platform/errs"
	"lethe.dev/services/preferences/internal/mailing"
)

// MarketingMailer sends one member a marketing message through identity (which alone
// holds addresses); requestID keys the message, so a retry sends nothing twice.
type MarketingMailer interface {
	MemberPage(ctx context.Context, pageToken string) (members []PageMember, next string, err error)
	MailMarketing(ctx context.Context, memberID, reference, detail, requestID string) error
}

// MarketingMailings starts a mailing's workflow; starting it again joins the running one,
// or does nothing after it ended.
type MarketingMailings interface {
	StartMarketingMailing(ctx context.Context, mailingID string) error
}

var mailingIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{7,63}$`)

const mailingCols = `mailing_id, channel, topic, created_at, sent_count, refused_count, done`

func scanMailing(r interface{ Scan(...any) error }) (*preferencesv1.MarketingMailing, error) {
	var id string
	var ch, tp int32
	var created, sent, refused int64
	var done bool
	if err := r.Scan(&id, &ch, &tp, &created, &sent, &refused, &done); err != nil {
		return nil, err
	}
	return &preferencesv1.MarketingMailing{Name: "marketingMailings/" + id, Channel: preferencesv1.Channel(ch), Topic: preferencesv1.Topic(tp),
		SentCount: sent, RefusedCount: refused, Done: done, CreateTime: timestamppb.New(time.UnixMicro(created))}, nil
}

func (s *Server) loadMailing(ctx context.Context, id string) (*preferencesv1.MarketingMailing, error) {
	m, err := scanMailing(s.DB.QueryRowContext(ctx, `SELECT `+mailingCols+` FROM marketing_mailings WHERE mailing_id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errs.NotFoundf("MARKETING_MAILING_NOT_FOUND", "marketing mailing")
	}
	return m, err
}

// CreateMarketingMailing implements PreferencesService: record the mailing and start its
// workflow (mailing.MarketingMailing), which sends it to every member who allows it. A
// retry with the same id and content finds the same mailing and the same workflow.
func (s *Server) CreateMarketingMailing(ctx context.Context, req *preferencesv1.CreateMarketingMailingRequest) (*preferencesv1.MarketingMailing, error) {
	in := req.GetMarketingMailing()
	var v errs.Violations
	if !mailingIDRE.MatchString(req.GetMarketingMailingId()) {
		v.Add("marketing_mailing_id", "must be an opaque campaign id: 8 to 64 of a-z 0-9 -")
	}
	if in.GetChannel() != preferencesv1.Channel_CHANNEL_EMAIL {
		v.Add("marketing_mailing.channel", "must be CHANNEL_EMAIL (the only channel delivered)")
	}
	if !isKnownTopic(in.GetTopic()) || in.GetTopic() == preferencesv1.Topic_TOPIC_TRANSACTIONAL {
		v.Add("marketing_mailing.topic", "must be a marketing topic")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if s.MarketingMailings == nil || s.MarketingMailer == nil {
		return nil, errs.New(errs.FailedPrecondition, "TEMPORAL_DISABLED", "a marketing mailing runs as a Temporal workflow and mails through identity; this instance has neither")
	}
	by := ""
	if p := authz.FromContext(ctx); p.Role == authz.RoleOperator {
		by = "operators/" + p.ID
	}
	id := req.GetMarketingMailingId()
	if _, err := s.DB.ExecContext(ctx, `INSERT INTO marketing_mailings (mailing_id, channel, topic, created_by, created_at, cursor, sent_count, refused_count, done)
		VALUES ($1, $2, $3, $4, $5, '', 0, 0, FALSE) ON CONFLICT (mailing_id) DO NOTHING`, id, int32(in.GetChannel()), int32(in.GetTopic()), by, micros(s.now())); err != nil {
		return nil, err
	}
	got, err := s.loadMailing(ctx, id)
	if err != nil {
		return nil, err
	}
	if got.GetChannel() != in.GetChannel() || got.GetTopic() != in.GetTopic() {
		return nil, errs.New(errs.AlreadyExists, "MARKETING_MAILING_EXISTS", "this campaign id was already used for another channel or topic")
	}
	if !got.GetDone() {
		if err := s.MarketingMailings.StartMarketingMailing(ctx, id); err != nil {
			return nil, err
		}
	}
	return got, nil
}

// GetMarketingMailing implements PreferencesService.
func (s *Server) GetMarketingMailing(ctx context.Context, req *preferencesv1.GetMarketingMailingRequest) (*preferencesv1.MarketingMailing, error) {
	id, ok := strings.CutPrefix(req.GetName(), "marketingMailings/")
	if !ok || !mailingIDRE.MatchString(id) {
		return nil, errs.Invalid(errs.FieldViolation{Field: "name", Description: "must be marketingMailings/{marketing_mailing}"})
	}
	return s.loadMailing(ctx, id)
}

// SendMailingPage sends the mailing to the next page of members and advances its
// cursor: the mailing workflow's activity. Each member is asked through AuthorizeMarketing
// (subscription, restriction of processing, policy consent, erasure); only those allowed
// are mailed, each message keyed by mailing and member, and the cursor moves by
// compare-and-set, so a retried page or a crash between a page and its cursor update
// sends every message at most once.
func (s *Server) SendMailingPage(ctx context.Context, id string) (sent, refused int, done bool, err error) {
	m, err := s.loadMailing(ctx, id)
	if errs.ReasonOf(err) == "MARKETING_MAILING_NOT_FOUND" {
		return 0, 0, false, temporal.NewNonRetryableApplicationError("marketing mailing no longer exists", mailing.ErrMailingGone, nil)
	}
	if err != nil {
		return 0, 0, false, err
	}
	if m.GetDone() {
		return 0, 0, true, nil
	}
	if s.MarketingMailer == nil {
		return 0, 0, false, errors.New("prefs: no member list or mailer configured (IDENTITY_ADDRESS)")
	}
	var cursor string
	if err := s.DB.QueryRowContext(ctx, `SELECT cursor FROM marketing_mailings WHERE mailing_id = $1`, id).Scan(&cursor); err != nil {
		return 0, 0, false, err
	}
	members, next, err := s.MarketingMailer.MemberPage(ctx, cursor)
	if err != nil {
		return 0, 0, false, err
	}
	for _, mb := range members {
		name := "members/" + mb.ID
		auth, err := s.AuthorizeMarketing(ctx, &preferencesv1.AuthorizeMarketingRequest{Member: name, Channel: m.GetChannel(), Topic: m.GetTopic()})
		if errs.ReasonOf(err) == "MEMBER_NOT_FOUND" {
			refused++ // erased since the page was read
			continue
		}
		if err != nil {
			return 0, 0, false, err
		}
		if !auth.GetAllowed() {
			refused++
			continue
		}
		tok, err := s.CreateUnsubscribeToken(ctx, &preferencesv1.CreateUnsubscribeTokenRequest{Name: name + commSuffix, Channel: m.GetChannel(), Topic: m.GetTopic()})
		if err != nil {
			return 0, 0, false, err
		}
		detail := "You get this because you subscribed to " + topicWords(m.GetTopic()) + ". To stop, unsubscribe with one click: POST /v1/unsubscribe with the token " + tok.GetToken()
		if err := s.MarketingMailer.MailMarketing(ctx, mb.ID, m.GetName(), detail, "marketing-mailing/"+id+"/"+mb.ID); err != nil {
			return 0, 0, false, err
		}
		sent++
	}
	res, err := s.DB.ExecContext(ctx, `UPDATE marketing_mailings SET cursor = $1, sent_count = sent_count + $2, refused_count = refused_count + $3, done = $4
		WHERE mailing_id = $5 AND cursor = $6 AND done = FALSE`, next, sent, refused, next == "", id, cursor)
	if err != nil {
		return 0, 0, false, err
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		sent, refused = 0, 0 // another attempt recorded this page first
	}
	return sent, refused, next == "", nil
}

// topicWords names a marketing topic for a reader.
func topicWords(t preferencesv1.Topic) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(t.String(), "TOPIC_")), "_", " ")
}
