// Package grpcapi serves lethe.fulfillment.v1.FulfillmentService: intake of privacy
// requests (which starts their workflows), the signals members and operators send them,
// and the read model, archives and receipts they produce.
package grpcapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tink-crypto/tink-go/v2/tink"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	identityv1 "lethe.dev/gen/lethe/identity/v1"
	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/platform/authz"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/grpcserver"
	"lethe.dev/platform/ids"
	"lethe.dev/platform/storage"
	"lethe.dev/platform/transport"
	"lethe.dev/services/fulfillment/internal/audit"
	"lethe.dev/services/fulfillment/internal/complaint"
	"lethe.dev/services/fulfillment/internal/request"
)

// Server implements FulfillmentService.
type Server struct {
	fulfillmentv1.UnimplementedFulfillmentServiceServer
	DB                 *storage.DB
	Temporal           client.Client
	Identity           identityv1.IdentityServiceClient
	Preferences        preferencesv1.PreferencesServiceClient // lifts restrictions of processing
	Sharing            sharingv1.SharingServiceClient
	CoolingOff         time.Duration
	VerificationWindow time.Duration
	ArchiveTTL         time.Duration
	OnwardPollInterval time.Duration
	DownloadMAC        tink.MAC                    // signs download links (shared keyset)
	ReceiptKeys        []*fulfillmentv1.ReceiptKey // every enabled receipt-verifying key
	Now                func() time.Time
	Archives           *request.Archives
	// TokenKey derives receipt tokens from request ids (HMAC-SHA256), so a retried
	// filing answers with the same token without the token being stored.
	TokenKey     []byte
	Logger       *slog.Logger
	Audit        *audit.Store
	ServiceToken string // checks the gateway's vouching for operator downloads
	// Complaints is the complaints store; the windows are the acknowledgement and
	// resolution deadlines (zero: complaint.DefaultAckWindow, DefaultResolveWindow).
	Complaints             *complaint.Store
	ComplaintAckWindow     time.Duration
	ComplaintResolveWindow time.Duration
	// StartConcurrency bounds the workflow starts in flight at once (zero:
	// DefaultStartConcurrency); startSlots holds them.
	StartConcurrency int
	startOnce        sync.Once
	startSlots       chan struct{}
}

func (s *Server) now() time.Time { return s.Now().UTC() }

var kindNames = map[fulfillmentv1.RequestKind]string{
	fulfillmentv1.RequestKind_REQUEST_KIND_ACCESS:        request.KindAccess,
	fulfillmentv1.RequestKind_REQUEST_KIND_ERASURE:       request.KindErasure,
	fulfillmentv1.RequestKind_REQUEST_KIND_CHILD_ERASURE: request.KindChildErasure,
	fulfillmentv1.RequestKind_REQUEST_KIND_RECTIFICATION: request.KindRectification,
	fulfillmentv1.RequestKind_REQUEST_KIND_RESTRICTION:   request.KindRestriction,
	fulfillmentv1.RequestKind_REQUEST_KIND_OBJECTION:     request.KindObjection,
	fulfillmentv1.RequestKind_REQUEST_KIND_SALE_OPT_OUT:  request.KindSaleOptOut,
	fulfillmentv1.RequestKind_REQUEST_KIND_PORTABILITY:   request.KindPortability,
}

// isErasure reports whether a kind erases (erasure and child erasure share one workflow id).
func isErasure(k fulfillmentv1.RequestKind) bool {
	return k == fulfillmentv1.RequestKind_REQUEST_KIND_ERASURE || k == fulfillmentv1.RequestKind_REQUEST_KIND_CHILD_ERASURE
}

func parseName(name string) (member, id string, err error) {
	rest, ok := strings.CutPrefix(name, "members/")
	m, r, ok2 := strings.Cut(rest, "/privacyRequests/")
	if !ok || !ok2 || !ids.Valid(m) || !ids.Valid(r) {
		return "", "", errs.Invalid(errs.FieldViolation{Field: "name", Description: "must be members/{member}/privacyRequests/{request}"})
	}
	return m, r, nil
}

// recentSignIn reports whether the gateway vouched that the caller signed in recently.
func recentSignIn(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get("x-lethe-recent-signin")
	return len(v) == 1 && v[0] == "true"
}

const reqCols = `id, member_id, kind, jurisdiction, origin, state, created_at, due_at, completed_at, extended, extension_reason, hold_reason, cooling_off_end, progress, challenge_id, archive_path, breached, is_open, verified, workflow_started, receipt_token_hash,
	denial_reason, denial_explanation, objection_purpose, objection_partner, objection_marketing, restriction_lifted_at, acknowledged_at,
	COALESCE((SELECT field FROM rectifications rf WHERE rf.request_id = requests.id), 0), COALESCE((SELECT value FROM rectifications rf WHERE rf.request_id = requests.id), ''),
	COALESCE((SELECT statement FROM rectifications rf WHERE rf.request_id = requests.id), ''), COALESCE((SELECT approved FROM rectifications rf WHERE rf.request_id = requests.id), FALSE), client_request_id`

type row struct {
	pr        *fulfillmentv1.PrivacyRequest
	member    string
	id        string
	challenge string
	archive   string
	due       time.Time
	created   time.Time
	open      bool
	verified  bool
	started   bool // the workflow's start was confirmed
	// inserted says this call inserted the row, so no workflow was ever started for it.
	inserted  bool
	tokenHash []byte // SHA-256 of the receipt token (erasures)
	// clientRequestID is the filer's idempotency key.
	clientRequestID string
}

func scanRow(r interface{ Scan(...any) error }) (*row, error) {
	var x row
	var kind, jur, origin, state int32
	var created, due int64
	var completed, cooling sql.NullInt64
	var extended, breached bool
	var extReason, hold, progress string
	var denial, rectField int32
	var denialText, objPurpose, objPartner, rectValue, rectStatement string
	var objMarketing, rectApproved bool
	var lifted, acked sql.NullInt64
	if err := r.Scan(&x.id, &x.member, &kind, &jur, &origin, &state, &created, &due, &completed, &extended, &extReason, &hold, &cooling, &progress, &x.challenge, &x.archive, &breached, &x.open, &x.verified, &x.started, &x.tokenHash,
		&denial, &denialText, &objPurpose, &objPartner, &objMarketing, &lifted, &acked, &rectField, &rectValue, &rectStatement, &rectApproved, &x.clientRequestID); err != nil {
		return nil, err
	}
	x.due, x.created = time.UnixMicro(due).UTC(), time.UnixMicro(created).UTC()
	pr := &fulfillmentv1.PrivacyRequest{
		Name: "members/" + x.member + "/privacyRequests/" + x.id, Kind: fulfillmentv1.RequestKind(kind), Jurisdiction: fulfillmentv1.Jurisdiction(jur),
		Origin: fulfillmentv1.RequestOrigin(origin), State: fulfillmentv1.RequestState(state), CreateTime: timestamppb.New(x.created), DueTime: timestamppb.New(x.due),
		Extended: extended, ExtensionReason: extReason, HoldReason: hold,
	}
	if completed.Valid {
		pr.CompleteTime = timestamppb.New(time.UnixMicro(completed.Int64))
	}
	if cooling.Valid {
		pr.CoolingOffEndTime = timestamppb.New(time.UnixMicro(cooling.Int64))
	}
	pr.DenialReason, pr.DenialExplanation = fulfillmentv1.DenialReason(denial), denialText
	if pr.GetKind() == fulfillmentv1.RequestKind_REQUEST_KIND_OBJECTION {
		pr.Objection = &fulfillmentv1.ObjectionTarget{Purpose: objPurpose, Partner: objPartner, DirectMarketing: objMarketing}
	}
	if rectField != 0 {
		pr.Rectification = &fulfillmentv1.Rectification{Field: fulfillmentv1.RectifiableField(rectField), Value: rectValue, Statement: rectStatement, Approved: rectApproved}
	}
	if lifted.Valid {
		pr.RestrictionLiftTime = timestamppb.New(time.UnixMicro(lifted.Int64))
	}
	if acked.Valid {
		pr.AcknowledgeTime = timestamppb.New(time.UnixMicro(acked.Int64))
	}
	var steps []request.Step
	_ = json.Unmarshal([]byte(progress), &steps)
	for _, st := range steps {
		pr.Progress = append(pr.Progress, &fulfillmentv1.StepProgress{Step: st.Step, State: st.State, Count: st.Count, UpdateTime: timestamppb.New(st.Time)})
	}
	x.pr = pr
	return &x, nil
}

func (s *Server) load(ctx context.Context, where string, args ...any) (*row, error) {
	r, err := scanRow(s.DB.QueryRowContext(ctx, `SELECT `+reqCols+` FROM requests WHERE `+where, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errs.NotFoundf("REQUEST_NOT_FOUND", "privacy request")
	}
	return r, err
}

func (s *Server) loadByName(ctx context.Context, name string) (*row, error) {
	m, id, err := parseName(name)
	if err != nil {
		return nil, err
	}
	return s.load(ctx, `id = $1 AND member_id = $2`, id, m)
}

// GetPrivacyRequest implements FulfillmentService.
func (s *Server) GetPrivacyRequest(ctx context.Context, req *fulfillmentv1.GetPrivacyRequestRequest) (*fulfillmentv1.PrivacyRequest, error) {
	r, err := s.loadByName(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	// A running request's steps are the workflow's (lean-bookkeeping runs store them
	// only with state changes); a closed one's, or when Temporal does not answer, stored.
	if r.open && r.started && s.Temporal != nil {
		if steps, ok := request.QueryProgress(ctx, s.Temporal, kindNames[r.pr.GetKind()], r.member, r.id); ok {
			r.pr.Progress = r.pr.Progress[:0]
			for _, st := range steps {
				r.pr.Progress = append(r.pr.Progress, &fulfillmentv1.StepProgress{Step: st.Step, State: st.State, Count: st.Count, UpdateTime: timestamppb.New(st.Time)})
			}
		}
	}
	return r.pr, nil
}

// ListPrivacyRequests implements FulfillmentService, ordered by due date.
func (s *Server) ListPrivacyRequests(ctx context.Context, req *fulfillmentv1.ListPrivacyRequestsRequest) (*fulfillmentv1.ListPrivacyRequestsResponse, error) {
	member, ok := strings.CutPrefix(req.GetParent(), "members/")
	if !ok || (member != "-" && !ids.Valid(member)) {
		return nil, errs.Invalid(errs.FieldViolation{Field: "parent", Description: "must be members/{member} or members/-"})
	}
	n := int(req.GetPageSize())
	if n == 0 {
		n = 50
	}
	if n < 0 || n > 500 {
		return nil, errs.Invalid(errs.FieldViolation{Field: "page_size", Description: "must be between 0 and 500"})
	}
	offset := 0
	if t := req.GetPageToken(); t != "" {
		var err error
		if offset, err = strconv.Atoi(t); err != nil || offset < 0 {
			return nil, errs.Invalid(errs.FieldViolation{Field: "page_token", Description: "is not a token this API issued"})
		}
	}
	now := s.now().UnixMicro()
	where, args := []string{"1 = 1"}, []any{}
	arg := func(v any) string { args = append(args, v); return "$" + strconv.Itoa(len(args)) }
	if member != "-" {
		where = append(where, "member_id = "+arg(member))
	}
	if k := req.GetKind(); k != fulfillmentv1.RequestKind_REQUEST_KIND_UNSPECIFIED {
		if _, ok := kindNames[k]; !ok {
			return nil, errs.Invalid(errs.FieldViolation{Field: "kind", Description: "is not a request kind"})
		}
		where = append(where, "kind = "+arg(int32(k)))
	}
	if j := req.GetJurisdiction(); j != fulfillmentv1.Jurisdiction_JURISDICTION_UNSPECIFIED {
		if _, ok := request.Rules[j]; !ok {
			return nil, errs.Invalid(errs.FieldViolation{Field: "jurisdiction", Description: "is not a jurisdiction"})
		}
		where = append(where, "jurisdiction = "+arg(int32(j)))
	}
	// Counts per state and of at-risk and overdue requests, under the parent, kind and
	// jurisdiction (not the filter), for the queue's summary.
	base, baseArgs := strings.Join(where, " AND "), slices.Clone(args)
	out := &fulfillmentv1.ListPrivacyRequestsResponse{}
	counts, err := s.DB.QueryContext(ctx, `SELECT state, COUNT(*) FROM requests WHERE `+base+` GROUP BY state ORDER BY state`, baseArgs...)
	if err != nil {
		return nil, err
	}
	for counts.Next() {
		var st int32
		var n int64
		if err := counts.Scan(&st, &n); err != nil {
			counts.Close()
			return nil, err
		}
		out.StateCounts = append(out.StateCounts, &fulfillmentv1.StateCount{State: fulfillmentv1.RequestState(st), Count: n})
	}
	counts.Close()
	soon := now + int64(3*24*time.Hour/time.Microsecond)
	if err := s.DB.QueryRowContext(ctx, `SELECT COALESCE(SUM(CASE WHEN due_at >= $`+strconv.Itoa(len(baseArgs)+1)+` AND due_at < $`+strconv.Itoa(len(baseArgs)+2)+` THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN due_at < $`+strconv.Itoa(len(baseArgs)+1)+` THEN 1 ELSE 0 END), 0) FROM requests WHERE `+base+` AND is_open`,
		append(slices.Clone(baseArgs), now, soon)...).Scan(&out.AtRiskCount, &out.OverdueCount); err != nil {
		return nil, err
	}
	switch f := req.GetFilter(); f {
	case "":
	case "open":
		where = append(where, "is_open")
	case "at_risk":
		where = append(where, "is_open", "due_at >= "+arg(now), "due_at < "+arg(now+int64(3*24*time.Hour/time.Microsecond)))
	case "overdue":
		where = append(where, "is_open", "due_at < "+arg(now))
	default:
		code, ok := fulfillmentv1.RequestState_value[strings.ToUpper(f)]
		if !ok {
			code, ok = fulfillmentv1.RequestState_value["REQUEST_STATE_"+strings.ToUpper(f)]
		}
		if !ok {
			return nil, errs.Invalid(errs.FieldViolation{Field: "filter", Description: "must be open, at_risk, overdue or a state name"})
		}
		where = append(where, "state = "+arg(code))
	}
	var total int64
	if err := s.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM requests WHERE `+strings.Join(where, " AND "), args...).Scan(&total); err != nil {
		return nil, err
	}
	out.TotalSize = int32(total)
	q := `SELECT ` + reqCols + ` FROM requests WHERE ` + strings.Join(where, " AND ") + ` ORDER BY due_at, id LIMIT ` + arg(n+1) + ` OFFSET ` + arg(offset)
	rows, err := s.DB.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			return nil, err
		}
		if len(out.PrivacyRequests) == n {
			out.NextPageToken = strconv.Itoa(offset + n)
			break
		}
		out.PrivacyRequests = append(out.PrivacyRequests, r.pr)
	}
	return out, rows.Err()
}

func (s *Server) signal(ctx context.Context, r *row, name string) error {
	kind := kindNames[r.pr.GetKind()]
	return s.Temporal.SignalWorkflow(ctx, request.WorkflowID(kind, r.member), "", name, nil)
}

// VerifyPrivacyRequest implements FulfillmentService.
func (s *Server) VerifyPrivacyRequest(ctx context.Context, req *fulfillmentv1.VerifyPrivacyRequestRequest) (*fulfillmentv1.PrivacyRequest, error) {
	r, err := s.loadByName(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	if len(req.GetCode()) != 6 {
		return nil, errs.Invalid(errs.FieldViolation{Field: "code", Description: "must be the 6-digit code from the email"})
	}
	if r.pr.GetState() != fulfillmentv1.RequestState_REQUEST_STATE_AWAITING_VERIFICATION || r.challenge == "" {
		return nil, errs.New(errs.FailedPrecondition, "NOT_AWAITING_VERIFICATION", "the request is not waiting for a code")
	}
	res, err := s.Identity.CheckVerificationCode(ctx, &identityv1.CheckVerificationCodeRequest{Name: "members/" + r.member, ChallengeId: r.challenge, Code: req.GetCode()})
	if err != nil {
		return nil, err
	}
	if !res.GetVerified() || res.GetReference() != r.id {
		return nil, &errs.Error{Code: errs.InvalidArgument, Reason: "CODE_INCORRECT", Message: "the code is not correct",
			Violations: []errs.FieldViolation{{Field: "code", Description: "is not correct"}}}
	}
	if err := s.signal(ctx, r, request.VerifySignal); err != nil {
		return nil, err
	}
	return r.pr, nil
}

// CancelPrivacyRequest implements FulfillmentService: only before verification or
// during an erasure's cooling-off period.
func (s *Server) CancelPrivacyRequest(ctx context.Context, req *fulfillmentv1.CancelPrivacyRequestRequest) (*fulfillmentv1.PrivacyRequest, error) {
	if err := operatorReason(ctx, req.GetReason()); err != nil {
		return nil, err
	}
	r, err := s.loadByName(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	switch r.pr.GetState() {
	case fulfillmentv1.RequestState_REQUEST_STATE_COOLING_OFF, fulfillmentv1.RequestState_REQUEST_STATE_AWAITING_VERIFICATION:
		if r.pr.GetKind() == fulfillmentv1.RequestKind_REQUEST_KIND_CHILD_ERASURE {
			return nil, errs.New(errs.FailedPrecondition, "CANNOT_CANCEL", "a child's erasure cannot be cancelled")
		}
	default:
		return nil, errs.New(errs.FailedPrecondition, "CANNOT_CANCEL", "the request can be cancelled only before verification or during the cooling-off period")
	}
	if err := s.signal(ctx, r, request.CancelSignal); err != nil {
		return nil, err
	}
	return r.pr, nil
}

// ExtendPrivacyRequest implements FulfillmentService (operators): once, as the
// jurisdiction allows, with a reason the member is told.
func (s *Server) ExtendPrivacyRequest(ctx context.Context, req *fulfillmentv1.ExtendPrivacyRequestRequest) (*fulfillmentv1.PrivacyRequest, error) {
	r, err := s.loadByName(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	if n := len(req.GetReason()); n < 10 || n > 500 {
		return nil, errs.Invalid(errs.FieldViolation{Field: "reason", Description: "must explain the extension in 10 to 500 characters (no personal data)"})
	}
	rule := request.RuleFor(r.pr.GetJurisdiction())
	switch {
	case request.IsFinal(r.pr.GetState()):
		return nil, errs.New(errs.FailedPrecondition, "REQUEST_CLOSED", "the request is closed")
	case rule.Extend == nil:
		return nil, errs.New(errs.FailedPrecondition, "EXTENSION_NOT_ALLOWED", "this jurisdiction allows no extension")
	case r.pr.GetExtended():
		return nil, errs.New(errs.FailedPrecondition, "ALREADY_EXTENDED", "the request was already extended once")
	case s.now().After(rule.ExtendBy(r.created, r.due)):
		return nil, errs.New(errs.FailedPrecondition, "EXTENSION_TOO_LATE", "the member must be told of an extension within the first period")
	}
	due := rule.Extend(r.created, r.due)
	if _, err := s.Identity.NotifyMember(ctx, &identityv1.NotifyMemberRequest{Name: "members/" + r.member, Template: identityv1.MessageTemplate_MESSAGE_TEMPLATE_REQUEST_EXTENDED,
		Reference: req.GetName(), Detail: "Reason: " + req.GetReason() + "\nNew due date: " + due.Format("2 January 2006") + ".", RequestId: "extend-" + r.id}); err != nil {
		return nil, err // the member is told first; the message is idempotent, so a retry is safe
	}
	res, err := s.DB.ExecContext(ctx, `UPDATE requests SET due_at = $1, extended = TRUE, extension_reason = $2, extended_by = $3 WHERE id = $4 AND NOT extended`, due.UnixMicro(), req.GetReason(), actor(ctx), r.id)
	if err != nil {
		return nil, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, errs.New(errs.FailedPrecondition, "ALREADY_EXTENDED", "the request was already extended once")
	}
	if err := request.Notify(ctx, s.DB, r.id, "extension", req.GetReason(), s.now()); err != nil {
		return nil, err
	}
	// The workflow re-plans its escalations and activity bounds against the new date.
	if err := s.Temporal.SignalWorkflow(ctx, request.WorkflowID(kindNames[r.pr.GetKind()], r.member), "", request.ExtendSignal, due); err != nil {
		return nil, err
	}
	return s.GetPrivacyRequest(ctx, &fulfillmentv1.GetPrivacyRequestRequest{Name: req.GetName()})
}

func (s *Server) setHold(ctx context.Context, name, reason, signal string) (*fulfillmentv1.PrivacyRequest, error) {
	r, err := s.loadByName(ctx, name)
	if err != nil {
		return nil, err
	}
	if request.IsFinal(r.pr.GetState()) {
		return nil, errs.New(errs.FailedPrecondition, "REQUEST_CLOSED", "the request is closed")
	}
	by := actor(ctx)
	if reason == "" {
		by = ""
	}
	if _, err := s.DB.ExecContext(ctx, `UPDATE requests SET hold_reason = $1, hold_by = $2 WHERE id = $3`, reason, by, r.id); err != nil {
		return nil, err
	}
	if err := s.signal(ctx, r, signal); err != nil {
		return nil, err
	}
	return s.GetPrivacyRequest(ctx, &fulfillmentv1.GetPrivacyRequestRequest{Name: name})
}

// SetLegalHold implements FulfillmentService (operators).
func (s *Server) SetLegalHold(ctx context.Context, req *fulfillmentv1.SetLegalHoldRequest) (*fulfillmentv1.PrivacyRequest, error) {
	if n := len(req.GetReason()); n < 3 || n > 500 {
		return nil, errs.Invalid(errs.FieldViolation{Field: "reason", Description: "is required: a case reference, 3 to 500 characters"})
	}
	return s.setHold(ctx, req.GetName(), req.GetReason(), request.HoldSignal)
}

// ReleaseLegalHold implements FulfillmentService (operators).
func (s *Server) ReleaseLegalHold(ctx context.Context, req *fulfillmentv1.ReleaseLegalHoldRequest) (*fulfillmentv1.PrivacyRequest, error) {
	if len(req.GetReason()) > 500 {
		return nil, errs.Invalid(errs.FieldViolation{Field: "reason", Description: "at most 500 characters"})
	}
	return s.setHold(ctx, req.GetName(), "", request.ReleaseSignal)
}

// downloadSignature signs a download link for request id until exp (Unix seconds).
func (s *Server) downloadSignature(requestID string, exp int64) string {
	tag, err := s.DownloadMAC.ComputeMAC([]byte(fmt.Sprintf("%s.%d", requestID, exp)))
	if err != nil {
		return "" // a MAC over bytes does not fail with a valid keyset; an empty sig never verifies
	}
	return hex.EncodeToString(tag)
}

// validDownloadSignature checks sig against every key in the download keyset (the MAC
// compares in constant time).
func (s *Server) validDownloadSignature(requestID string, exp int64, sig string) bool {
	tag, err := hex.DecodeString(sig)
	return err == nil && len(tag) > 0 && s.DownloadMAC.VerifyMAC(tag, []byte(fmt.Sprintf("%s.%d", requestID, exp))) == nil
}

// GetExportDownload implements FulfillmentService.
func (s *Server) GetExportDownload(ctx context.Context, req *fulfillmentv1.GetExportDownloadRequest) (*fulfillmentv1.ExportDownload, error) {
	r, err := s.loadByName(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	var size int64
	var sum string
	var exp sql.NullInt64
	if err := s.DB.QueryRowContext(ctx, `SELECT archive_size, archive_sha256, archive_expires_at FROM requests WHERE id = $1`, r.id).Scan(&size, &sum, &exp); err != nil {
		return nil, err
	}
	if (r.pr.GetKind() != fulfillmentv1.RequestKind_REQUEST_KIND_ACCESS && r.pr.GetKind() != fulfillmentv1.RequestKind_REQUEST_KIND_PORTABILITY) || r.archive == "" || !exp.Valid || time.UnixMicro(exp.Int64).Before(s.now()) {
		return nil, errs.New(errs.FailedPrecondition, "NO_ARCHIVE", "no export archive is ready for this request")
	}
	e := time.UnixMicro(exp.Int64).Unix()
	return &fulfillmentv1.ExportDownload{
		DownloadUri: fmt.Sprintf("/v1/downloads/%s?exp=%d&sig=%s", r.id, e, s.downloadSignature(r.id, e)),
		ExpireTime:  timestamppb.New(time.Unix(e, 0)), SizeBytes: size, Sha256: sum,
	}, nil
}

// DownloadHandler serves /v1/downloads/{request}?exp=&sig=: it checks the signature
// and expiry, records the download and streams the archive with range support.
func (s *Server) DownloadHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		id := strings.TrimPrefix(req.URL.Path, "/v1/downloads/")
		exp, err := strconv.ParseInt(req.URL.Query().Get("exp"), 10, 64)
		if err != nil || !ids.Valid(id) || !s.validDownloadSignature(id, exp, req.URL.Query().Get("sig")) {
			writeJSONError(w, http.StatusForbidden, 7, "BAD_SIGNATURE", "the download link is not valid")
			return
		}
		if time.Unix(exp, 0).Before(s.now()) {
			writeJSONError(w, http.StatusGone, 9, "LINK_EXPIRED", "the download link expired")
			return
		}
		var path, member string
		var size int64
		if err := s.DB.QueryRowContext(req.Context(), `SELECT archive_path, member_id, archive_size FROM requests WHERE id = $1`, id).Scan(&path, &member, &size); err != nil || path == "" {
			writeJSONError(w, http.StatusNotFound, 5, "NO_ARCHIVE", "the archive no longer exists")
			return
		}
		f, err := s.Archives.OpenSeeker(req.Context(), id, path, size)
		if err != nil {
			writeJSONError(w, http.StatusNotFound, 5, "NO_ARCHIVE", "the archive no longer exists")
			return
		}
		defer f.Close()
		// An operator's download (the gateway vouches for the operator with the service
		// credential) goes to the audit log before any byte is sent.
		if op := s.operatorDownload(req); op != "" {
			if err := s.Audit.Record(req.Context(), authz.Event{Actor: "operators/" + op, Action: "download", Target: "members/" + member + "/privacyRequests/" + id,
				Reason: req.Header.Get(DownloadReasonHeader), RequestID: ids.New()}); err != nil {
				writeJSONError(w, http.StatusServiceUnavailable, 14, "AUDIT_UNAVAILABLE", "the audit log could not record this download; retry")
				return
			}
		}
		_, _ = s.DB.ExecContext(req.Context(), `INSERT INTO downloads (id, request_id, downloaded_at) VALUES ($1, $2, $3)`, ids.New(), id, s.now().UnixMicro())
		w.Header().Set("Content-Type", "application/zip")
		w.Header().Set("Content-Disposition", `attachment; filename="lethe-export.zip"`)
		w.Header().Set("Cache-Control", "no-store")
		cw := &countingResponse{ResponseWriter: w}
		http.ServeContent(cw, req, "lethe-export.zip", f.ModTime, f) // the decrypting reader seeks: ranges work
		request.CountDownloaded(req.Context(), cw.n)
	})
}

// Headers the gateway sets on a download it proxies for a signed-in operator.
const (
	DownloadOperatorHeader = "X-Lethe-Operator"
	DownloadReasonHeader   = "X-Lethe-Reason"
)

// operatorDownload returns the operator id the gateway vouches for, or "". The header
// counts only with the service credential (when one is configured), so a client cannot
// put a name in the log.
func (s *Server) operatorDownload(req *http.Request) string {
	op := req.Header.Get(DownloadOperatorHeader)
	if op == "" || !ids.Valid(op) {
		return ""
	}
	if s.ServiceToken != "" && subtle.ConstantTimeCompare([]byte(req.Header.Get(transport.TokenHeader)), []byte(s.ServiceToken)) != 1 {
		return ""
	}
	return op
}

func writeJSONError(w http.ResponseWriter, status, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg, "details": []any{map[string]any{
		"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": grpcserver.ErrorDomain}}})
}

// GetErasureReceipt implements FulfillmentService. A wrong token answers like an unknown
// request, so receipts cannot be probed.
func (s *Server) GetErasureReceipt(ctx context.Context, req *fulfillmentv1.GetErasureReceiptRequest) (*fulfillmentv1.ErasureReceipt, error) {
	var payload, sig, hash []byte
	err := s.DB.QueryRowContext(ctx, `SELECT receipt_payload, receipt_signature, receipt_token_hash FROM requests WHERE id = $1`, req.GetRequestId()).Scan(&payload, &sig, &hash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		// A database that cannot answer (e.g. refusing connections) is not a missing
		// receipt: the caller may try again.
		return nil, errs.Wrap(err, errs.Unavailable, "RECEIPT_UNAVAILABLE", "the receipt cannot be read now")
	}
	h := sha256.Sum256([]byte(req.GetReceiptToken()))
	if err != nil || len(hash) == 0 || subtle.ConstantTimeCompare(h[:], hash) != 1 {
		return nil, errs.NotFoundf("RECEIPT_NOT_FOUND", "receipt")
	}
	if len(payload) == 0 {
		return nil, errs.New(errs.FailedPrecondition, "RECEIPT_NOT_READY", "the erasure has not finished")
	}
	// The receipt names the key that signed it (any replica's, or one since rotated).
	var signed struct {
		KeyID string `json:"key_id"`
	}
	_ = json.Unmarshal(payload, &signed)
	return &fulfillmentv1.ErasureReceipt{Payload: payload, Signature: sig, KeyId: signed.KeyID}, nil
}

// GetReceiptKeys implements FulfillmentService.
func (s *Server) GetReceiptKeys(context.Context, *fulfillmentv1.GetReceiptKeysRequest) (*fulfillmentv1.ReceiptKeys, error) {
	return &fulfillmentv1.ReceiptKeys{Keys: s.ReceiptKeys}, nil
}

// GetRequestStatistics implements FulfillmentService: received, completed and denied
// per kind in a calendar year, and the median days to respond.
func (s *Server) GetRequestStatistics(ctx context.Context, req *fulfillmentv1.GetRequestStatisticsRequest) (*fulfillmentv1.RequestStatistics, error) {
	y := int(req.GetYear())
	if y < 2000 || y > 2100 {
		return nil, errs.Invalid(errs.FieldViolation{Field: "year", Description: "must be a year between 2000 and 2100"})
	}
	from := time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	to := time.Date(y+1, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	out := &fulfillmentv1.RequestStatistics{Year: req.GetYear()}
	for kind := fulfillmentv1.RequestKind_REQUEST_KIND_ACCESS; int(kind) < len(fulfillmentv1.RequestKind_name); kind++ {
		k := &fulfillmentv1.KindStatistics{Kind: kind}
		if err := s.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM requests WHERE kind = $1 AND created_at >= $2 AND created_at < $3`, int32(kind), from, to).Scan(&k.Received); err != nil {
			return nil, err
		}
		if err := s.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM requests WHERE kind = $1 AND state = $2 AND completed_at >= $3 AND completed_at < $4`, int32(kind), int32(fulfillmentv1.RequestState_REQUEST_STATE_DENIED), from, to).Scan(&k.Denied); err != nil {
			return nil, err
		}
		rows, err := s.DB.QueryContext(ctx, `SELECT completed_at - created_at FROM requests WHERE kind = $1 AND state = $2 AND completed_at >= $3 AND completed_at < $4`, int32(kind), int32(fulfillmentv1.RequestState_REQUEST_STATE_COMPLETED), from, to)
		if err != nil {
			return nil, err
		}
		var days []float64
		for rows.Next() {
			var us int64
			if err := rows.Scan(&us); err != nil {
				rows.Close()
				return nil, err
			}
			days = append(days, float64(us)/float64(24*time.Hour/time.Microsecond))
		}
		rows.Close()
		k.Completed = int64(len(days))
		if len(days) > 0 {
			slices.Sort(days)
			k.P90DaysToRespond = days[(len(days)*9+9)/10-1] // nearest rank: ⌈0.9·n⌉
			if m := len(days) / 2; len(days)%2 == 1 {
				k.MedianDaysToRespond = days[m]
			} else {
				k.MedianDaysToRespond = (days[m-1] + days[m]) / 2
			}
		}
		out.Kinds = append(out.Kinds, k)
	}
	if s.Complaints != nil {
		c, err := s.Complaints.Statistics(ctx, time.UnixMicro(from), time.UnixMicro(to))
		if err != nil {
			return nil, err
		}
		out.Complaints = c
	}
	counts, err := s.Audit.Counts(ctx, time.UnixMicro(from), time.UnixMicro(to))
	if err != nil {
		return nil, err
	}
	actions := make([]string, 0, len(counts))
	for a := range counts {
		actions = append(actions, a)
	}
	slices.Sort(actions)
	for _, a := range actions {
		out.OperatorActions = append(out.OperatorActions, &fulfillmentv1.ActionCount{Action: a, Count: counts[a]})
	}
	return out, nil
}

// countingResponse counts the body bytes written, for lethe_export_downloaded_bytes_total.
type countingResponse struct {
	http.ResponseWriter
	n int64
}

func (c *countingResponse) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}
