// Package sharing is the third-party sharing service: the partner registry, objections,
// advance notices, the authorization check with its tamper-evident disclosure log, and
// onward erasure to processors. It implements lethe.sharing.v1.SharingService and the
// lethe.subject.v1 contract.
package sharing

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tink-crypto/tink-go/v2/prf"
	"github.com/tink-crypto/tink-go/v2/tink"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	subjectv1 "lethe.dev/gen/lethe/subject/v1"
	"lethe.dev/platform/classify"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/ids"
	"lethe.dev/platform/legalhold"
	"lethe.dev/platform/storage"
)

// Notifier starts and signals notice workflows (Temporal in production).
type Notifier interface {
	StartNotice(ctx context.Context, noticeID string, period time.Duration) error
	SignalObjection(ctx context.Context, noticeID string) error
}

// OnwardAcker tells a request's onward-erasure workflow that a processor acknowledged,
// so it stops re-sending at once instead of at its next poll.
type OnwardAcker interface {
	OnwardAcknowledged(ctx context.Context, requestID, partner string) error
}

// Server implements SharingService and DataSubjectService.
type Server struct {
	sharingv1.UnimplementedSharingServiceServer
	subjectv1.UnimplementedDataSubjectServiceServer
	DB       *storage.DB
	Secrets  tink.AEAD   // encrypts webhook secrets at rest
	Keys     *prf.Set    // derives per-partner pseudonyms and block hashes
	Notifier Notifier    // nil: notices cannot be started (FAILED_PRECONDITION)
	Acks     OnwardAcker // nil: fulfillment learns of acknowledgements at its next poll
	HTTP     *http.Client
	Logger   *slog.Logger
	Now      func() time.Time
	// AllowLoopbackHTTP admits http:// webhooks on loopback hosts (development).
	AllowLoopbackHTTP bool
	// PublicURL is where partners send acknowledgement callbacks (the gateway).
	PublicURL string
	// AdChoices reads members' ad choices from preferences; nil refuses every sale or
	// sharing with UNAVAILABLE.
	AdChoices AdChoices
	// PolicyConsent reads members' acceptances of policy changes from preferences; nil
	// refuses every disclosure with UNAVAILABLE.
	PolicyConsent PolicyConsent
	// Members lists members for business-transfer notices (identity); Transfers starts
	// a transfer's workflow. Without Transfers, transfers cannot be recorded.
	Members   MemberPager
	Transfers TransferStarter
	// Holds answers whether a member's data is on legal hold (fulfillment); erasure and
	// onward erasure refuse while it is, or while it cannot be told. nil: no holds.
	Holds legalhold.Checker
}

const defaultNoticePeriod = 30 * 24 * time.Hour

var slugRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{2,62}$`)

func (s *Server) now() time.Time { return s.Now().UTC() }

func memberOf(name, field string) (string, error) {
	id, ok := strings.CutPrefix(name, "members/")
	if !ok || !ids.Valid(id) {
		return "", errs.Invalid(errs.FieldViolation{Field: field, Description: "must be members/{member}"})
	}
	return id, nil
}

func partnerOf(name, field string) (string, error) {
	id, ok := strings.CutPrefix(name, "partners/")
	if !ok || !slugRE.MatchString(id) {
		return "", errs.Invalid(errs.FieldViolation{Field: field, Description: "must be partners/{partner}"})
	}
	return id, nil
}

// needsNotice reports whether a partner kind receives data only after advance notice.
// Processors act on our instructions and legal authorities under legal process; every
// other recipient is a third party in the policy's sense.
func needsNotice(k sharingv1.PartnerKind) bool {
	switch k {
	case sharingv1.PartnerKind_PARTNER_KIND_PROCESSOR, sharingv1.PartnerKind_PARTNER_KIND_LEGAL_AUTHORITY:
		return false
	}
	return true
}

func (s *Server) validWebhook(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil {
		return false
	}
	if u.Scheme == "https" {
		return true
	}
	if u.Scheme != "http" || !s.AllowLoopbackHTTP {
		return false
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

func checkCategories(field string, cats []string, v *errs.Violations) {
	if len(cats) == 0 {
		v.Add(field, "must list at least one data category")
	}
	for _, c := range cats {
		if !classify.KnownCategory(c) || !strings.HasPrefix(c, "user") {
			v.Add(field, "unknown data category (use fideslang user.* categories)")
			return
		}
	}
}

type partnerRow struct {
	p       *sharingv1.Partner
	secret  []byte
	version int64
}

const partnerCols = `id, display_name, kind, purposes, data_categories, agreement_ref, webhook_url, webhook_secret, ack_deadline_s, created_at, version`

func scanPartner(row interface{ Scan(...any) error }) (*partnerRow, error) {
	var id, purposes, cats string
	var kind int32
	var ackS, created, version int64
	p := &sharingv1.Partner{}
	var secret []byte
	if err := row.Scan(&id, &p.DisplayName, &kind, &purposes, &cats, &p.AgreementRef, &p.ErasureWebhookUrl, &secret, &ackS, &created, &version); err != nil {
		return nil, err
	}
	_ = json.Unmarshal([]byte(purposes), &p.Purposes)
	_ = json.Unmarshal([]byte(cats), &p.DataCategories)
	p.Name, p.Kind, p.AckDeadline, p.CreateTime, p.Etag = "partners/"+id, sharingv1.PartnerKind(kind), durationpb.New(time.Duration(ackS)*time.Second), timestamppb.New(time.UnixMicro(created)), strconv.FormatInt(version, 10)
	return &partnerRow{p: p, secret: secret, version: version}, nil
}

func (s *Server) partner(ctx context.Context, id string) (*partnerRow, error) {
	r, err := scanPartner(s.DB.QueryRowContext(ctx, `SELECT `+partnerCols+` FROM partners WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errs.NotFoundf("PARTNER_NOT_FOUND", "partner")
	}
	if err == nil {
		err = s.countObjections(ctx, r.p)
	}
	return r, err
}

// countObjections sets a partner's count of objections not withdrawn.
func (s *Server) countObjections(ctx context.Context, p *sharingv1.Partner) error {
	return s.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM objections WHERE partner_id = $1 AND withdrawn_at IS NULL`,
		strings.TrimPrefix(p.GetName(), "partners/")).Scan(&p.ActiveObjectionCount)
}

func (s *Server) validatePartner(p *sharingv1.Partner, v *errs.Violations) {
	if n := len(p.GetDisplayName()); n == 0 || n > 200 {
		v.Add("partner.display_name", "is required, at most 200 characters")
	}
	if p.GetKind() < 1 || p.GetKind() > 6 {
		v.Add("partner.kind", "is required")
	}
	if len(p.GetPurposes()) == 0 {
		v.Add("partner.purposes", "must list at least one purpose")
	}
	for _, x := range p.GetPurposes() {
		if !slugRE.MatchString(strings.ReplaceAll(x, "_", "-")) {
			v.Add("partner.purposes", "purposes are lower-case ids like payment_processing")
			break
		}
	}
	checkCategories("partner.data_categories", p.GetDataCategories(), v)
	if p.GetAgreementRef() == "" {
		v.Add("partner.agreement_ref", "is required: the contract or data processing agreement")
	}
	if p.GetKind() == sharingv1.PartnerKind_PARTNER_KIND_PROCESSOR {
		if !s.validWebhook(p.GetErasureWebhookUrl()) {
			v.Add("partner.erasure_webhook_url", "processors need an https:// erasure webhook (http only on loopback in development)")
		}
		if len(p.GetWebhookSecret()) < 32 {
			v.Add("partner.webhook_secret", "processors need a shared secret of at least 32 characters")
		}
	} else if p.GetErasureWebhookUrl() != "" && !s.validWebhook(p.GetErasureWebhookUrl()) {
		v.Add("partner.erasure_webhook_url", "must be an https:// URL")
	}
}

// CreatePartner implements SharingService.
func (s *Server) CreatePartner(ctx context.Context, req *sharingv1.CreatePartnerRequest) (*sharingv1.Partner, error) {
	p := req.GetPartner()
	var v errs.Violations
	if !slugRE.MatchString(req.GetPartnerId()) {
		v.Add("partner_id", "must match [a-z0-9][a-z0-9-]{2,62}")
	}
	s.validatePartner(p, &v)
	if err := v.Err(); err != nil {
		return nil, err
	}
	var secret []byte
	if p.GetWebhookSecret() != "" {
		var err error
		if secret, err = s.Secrets.Encrypt([]byte(p.GetWebhookSecret()), []byte("webhook:"+req.GetPartnerId())); err != nil {
			return nil, err
		}
	}
	ack := p.GetAckDeadline().AsDuration()
	if ack <= 0 {
		ack = 30 * 24 * time.Hour
	}
	purposes, _ := json.Marshal(p.GetPurposes())
	cats, _ := json.Marshal(p.GetDataCategories())
	_, err := s.DB.ExecContext(ctx, `INSERT INTO partners (`+partnerCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1)`,
		req.GetPartnerId(), p.GetDisplayName(), int32(p.GetKind()), string(purposes), string(cats), p.GetAgreementRef(), p.GetErasureWebhookUrl(), secret, int64(ack/time.Second), s.now().UnixMicro())
	if storage.IsUniqueViolation(err) {
		return nil, errs.New(errs.AlreadyExists, "PARTNER_EXISTS", "a partner with this id exists")
	}
	if err != nil {
		return nil, err
	}
	r, err := s.partner(ctx, req.GetPartnerId())
	if err != nil {
		return nil, err
	}
	return r.p, nil
}

// GetPartner implements SharingService.
func (s *Server) GetPartner(ctx context.Context, req *sharingv1.GetPartnerRequest) (*sharingv1.Partner, error) {
	id, err := partnerOf(req.GetName(), "name")
	if err != nil {
		return nil, err
	}
	r, err := s.partner(ctx, id)
	if err != nil {
		return nil, err
	}
	return r.p, nil
}

// ListPartners implements SharingService (ordered by id).
func (s *Server) ListPartners(ctx context.Context, req *sharingv1.ListPartnersRequest) (*sharingv1.ListPartnersResponse, error) {
	n := int(req.GetPageSize())
	if n == 0 {
		n = 50
	}
	if n < 0 || n > 500 {
		return nil, errs.Invalid(errs.FieldViolation{Field: "page_size", Description: "must be between 0 and 500"})
	}
	rows, err := s.DB.QueryContext(ctx, `SELECT `+partnerCols+` FROM partners WHERE id > $1 ORDER BY id LIMIT $2`, req.GetPageToken(), n+1)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := &sharingv1.ListPartnersResponse{}
	for rows.Next() {
		r, err := scanPartner(rows)
		if err != nil {
			return nil, err
		}
		if len(out.Partners) == n {
			out.NextPageToken = strings.TrimPrefix(out.Partners[n-1].GetName(), "partners/")
			break
		}
		out.Partners = append(out.Partners, r.p)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	for _, p := range out.Partners {
		if err := s.countObjections(ctx, p); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// UpdatePartner implements SharingService.
func (s *Server) UpdatePartner(ctx context.Context, req *sharingv1.UpdatePartnerRequest) (*sharingv1.Partner, error) {
	in := req.GetPartner()
	id, err := partnerOf(in.GetName(), "partner.name")
	if err != nil {
		return nil, err
	}
	cur, err := s.partner(ctx, id)
	if err != nil {
		return nil, err
	}
	if in.GetEtag() != "" && in.GetEtag() != cur.p.GetEtag() {
		return nil, errs.New(errs.Aborted, "ETAG_MISMATCH", "the partner changed since it was read")
	}
	p := cur.p
	var v errs.Violations
	if len(req.GetUpdateMask().GetPaths()) == 0 {
		v.Add("update_mask", "must name at least one field")
	}
	for _, path := range req.GetUpdateMask().GetPaths() {
		switch path {
		case "display_name":
			p.DisplayName = in.GetDisplayName()
		case "purposes":
			p.Purposes = in.GetPurposes()
		case "data_categories":
			p.DataCategories = in.GetDataCategories()
		case "agreement_ref":
			p.AgreementRef = in.GetAgreementRef()
		case "erasure_webhook_url":
			p.ErasureWebhookUrl = in.GetErasureWebhookUrl()
		case "webhook_secret":
			p.WebhookSecret = in.GetWebhookSecret()
		case "ack_deadline":
			p.AckDeadline = in.GetAckDeadline()
		default:
			v.Add("update_mask", "unknown or read-only field path")
		}
	}
	if p.WebhookSecret == "" && len(cur.secret) > 0 {
		p.WebhookSecret = strings.Repeat("x", 32) // keep the stored secret; only validation sees this
	}
	s.validatePartner(p, &v)
	if err := v.Err(); err != nil {
		return nil, err
	}
	secret := cur.secret
	if slices.Contains(req.GetUpdateMask().GetPaths(), "webhook_secret") {
		if secret, err = s.Secrets.Encrypt([]byte(in.GetWebhookSecret()), []byte("webhook:"+id)); err != nil {
			return nil, err
		}
	}
	purposes, _ := json.Marshal(p.GetPurposes())
	cats, _ := json.Marshal(p.GetDataCategories())
	res, err := s.DB.ExecContext(ctx, `UPDATE partners SET display_name = $1, purposes = $2, data_categories = $3, agreement_ref = $4, webhook_url = $5, webhook_secret = $6,
		ack_deadline_s = $7, version = version + 1 WHERE id = $8 AND version = $9`,
		p.GetDisplayName(), string(purposes), string(cats), p.GetAgreementRef(), p.GetErasureWebhookUrl(), secret, int64(p.GetAckDeadline().AsDuration()/time.Second), id, cur.version)
	if err != nil {
		return nil, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, errs.New(errs.Aborted, "ETAG_MISMATCH", "the partner changed since it was read")
	}
	r, err := s.partner(ctx, id)
	if err != nil {
		return nil, err
	}
	return r.p, nil
}

// CreatePurpose implements SharingService.
func (s *Server) CreatePurpose(ctx context.Context, req *sharingv1.CreatePurposeRequest) (*sharingv1.Purpose, error) {
	pid, err := partnerOf(req.GetParent(), "parent")
	if err != nil {
		return nil, err
	}
	partner, err := s.partner(ctx, pid)
	if err != nil {
		return nil, err
	}
	in := req.GetPurpose()
	var v errs.Violations
	if !slices.Contains(partner.p.GetPurposes(), req.GetPurposeId()) {
		v.Add("purpose_id", "must be one of the partner's declared purposes")
	}
	checkCategories("purpose.data_categories", in.GetDataCategories(), &v)
	for _, c := range in.GetDataCategories() {
		if !slices.Contains(partner.p.GetDataCategories(), c) {
			v.Add("purpose.data_categories", "must be a subset of the partner's declared categories")
			break
		}
	}
	if in.GetDescription() == "" || len(in.GetDescription()) > 1000 {
		v.Add("purpose.description", "is required (shown to members), at most 1000 characters")
	}
	switch in.GetLegalBasis() {
	case "consent", "contract", "legitimate_interest", "legal_obligation":
	default:
		v.Add("purpose.legal_basis", "must be consent, contract, legitimate_interest or legal_obligation")
	}
	period := in.GetNoticePeriod().AsDuration()
	if period == 0 {
		period = defaultNoticePeriod
	}
	if period < 0 || period > 365*24*time.Hour {
		v.Add("purpose.notice_period", "must be between 0 and 365 days")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	cats, _ := json.Marshal(in.GetDataCategories())
	now := s.now()
	_, err = s.DB.ExecContext(ctx, `INSERT INTO purposes (partner_id, purpose_id, description, data_categories, legal_basis, notice_period_s, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		pid, req.GetPurposeId(), in.GetDescription(), string(cats), in.GetLegalBasis(), int64(period/time.Second), now.UnixMicro())
	if storage.IsUniqueViolation(err) {
		return nil, errs.New(errs.AlreadyExists, "PURPOSE_EXISTS", "the purpose is registered")
	}
	if err != nil {
		return nil, err
	}
	return &sharingv1.Purpose{Name: req.GetParent() + "/purposes/" + req.GetPurposeId(), Description: in.GetDescription(), DataCategories: in.GetDataCategories(),
		LegalBasis: in.GetLegalBasis(), NoticePeriod: durationpb.New(period), CreateTime: timestamppb.New(now)}, nil
}

type purposeRow struct {
	cats       []string
	legalBasis string
	period     time.Duration
}

func (s *Server) purpose(ctx context.Context, partnerID, purposeID string) (*purposeRow, error) {
	var cats string
	var secs int64
	r := &purposeRow{}
	err := s.DB.QueryRowContext(ctx, `SELECT data_categories, legal_basis, notice_period_s FROM purposes WHERE partner_id = $1 AND purpose_id = $2`, partnerID, purposeID).Scan(&cats, &r.legalBasis, &secs)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	_ = json.Unmarshal([]byte(cats), &r.cats)
	r.period = time.Duration(secs) * time.Second
	return r, nil
}

// ListPurposes implements SharingService.
func (s *Server) ListPurposes(ctx context.Context, req *sharingv1.ListPurposesRequest) (*sharingv1.ListPurposesResponse, error) {
	pid, err := partnerOf(req.GetParent(), "parent")
	if err != nil {
		return nil, err
	}
	rows, err := s.DB.QueryContext(ctx, `SELECT purpose_id, description, data_categories, legal_basis, notice_period_s, created_at FROM purposes WHERE partner_id = $1 ORDER BY purpose_id`, pid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := &sharingv1.ListPurposesResponse{}
	for rows.Next() {
		var id, cats string
		var secs, created int64
		p := &sharingv1.Purpose{}
		if err := rows.Scan(&id, &p.Description, &cats, &p.LegalBasis, &secs, &created); err != nil {
			return nil, err
		}
		_ = json.Unmarshal([]byte(cats), &p.DataCategories)
		p.Name, p.NoticePeriod, p.CreateTime = req.GetParent()+"/purposes/"+id, durationpb.New(time.Duration(secs)*time.Second), timestamppb.New(time.UnixMicro(created))
		out.Purposes = append(out.Purposes, p)
	}
	return out, rows.Err()
}
