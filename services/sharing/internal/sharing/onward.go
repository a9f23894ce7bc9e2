package sharing

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/ids"
	"lethe.dev/platform/legalhold"
)

// Callback freshness: partners sign a timestamp; older or future ones are refused.
const (
	callbackMaxAge  = 5 * time.Minute
	callbackMaxSkew = time.Minute
)

// Sign returns the hex HMAC-SHA256 of message under secret, as partners compute it.
func Sign(secret, message string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(message))
	return hex.EncodeToString(m.Sum(nil))
}

// ListErasureRecipients implements SharingService: processors with an erasure webhook
// that appear in the member's disclosure log.
func (s *Server) ListErasureRecipients(ctx context.Context, req *sharingv1.ListErasureRecipientsRequest) (*sharingv1.ListErasureRecipientsResponse, error) {
	mid, err := memberOf(req.GetMember(), "member")
	if err != nil {
		return nil, err
	}
	rows, err := s.DB.QueryContext(ctx, `SELECT DISTINCT p.id FROM disclosures d JOIN partners p ON p.id = d.partner_id
		WHERE d.subject = $1 AND p.kind = $2 AND p.webhook_url <> '' ORDER BY p.id`, mid, int32(sharingv1.PartnerKind_PARTNER_KIND_PROCESSOR))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := &sharingv1.ListErasureRecipientsResponse{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out.Partners = append(out.Partners, "partners/"+id)
	}
	return out, rows.Err()
}

const onwardCols = `id, partner_id, request_id, state, attempts, sent_at, acked_at, last_error`

func scanOnward(row interface{ Scan(...any) error }) (*sharingv1.OnwardErasure, error) {
	var id, pid string
	var state, attempts int32
	var sent, acked sql.NullInt64
	o := &sharingv1.OnwardErasure{}
	if err := row.Scan(&id, &pid, &o.RequestId, &state, &attempts, &sent, &acked, &o.LastError); err != nil {
		return nil, err
	}
	o.Name, o.State, o.AttemptCount = "partners/"+pid+"/onwardErasures/"+id, sharingv1.OnwardErasureState(state), attempts
	if sent.Valid {
		o.SendTime = timestamppb.New(time.UnixMicro(sent.Int64))
	}
	if acked.Valid {
		o.AcknowledgeTime = timestamppb.New(time.UnixMicro(acked.Int64))
	}
	return o, nil
}

// erasureRequest is what a processor receives: the pseudonym it already holds for the
// member, never new personal data.
type erasureRequest struct {
	ErasureID        string    `json:"erasure_id"`
	PartnerSubjectID string    `json:"partner_subject_id"`
	RequestTime      time.Time `json:"request_time"`
	CallbackURL      string    `json:"callback_url"`
}

// SendOnwardErasure implements SharingService: POST a signed erasure request to the
// processor's webhook. 200 {"status":"erased"} acknowledges at once; 202 waits for a
// callback; anything else is FAILED with a code and the caller (a workflow) retries.
// Once acknowledged, repeats return the stored state without sending.
func (s *Server) SendOnwardErasure(ctx context.Context, req *sharingv1.SendOnwardErasureRequest) (*sharingv1.OnwardErasure, error) {
	mid, err := memberOf(req.GetMember(), "member")
	if err != nil {
		return nil, err
	}
	pid, err := partnerOf(req.GetPartner(), "partner")
	if err != nil {
		return nil, err
	}
	if req.GetRequestId() == "" {
		return nil, errs.Invalid(errs.FieldViolation{Field: "request_id", Description: "is required"})
	}
	// No processor is told to erase while the member's data is on legal hold.
	if err := legalhold.Refuse(ctx, s.Holds, mid, s.Logger); err != nil {
		return nil, err
	}
	partner, err := s.partner(ctx, pid)
	if err != nil {
		return nil, err
	}
	if partner.p.GetErasureWebhookUrl() == "" || len(partner.secret) == 0 {
		return nil, errs.New(errs.FailedPrecondition, "NO_ERASURE_WEBHOOK", "the partner has no erasure webhook")
	}
	_, err = s.DB.ExecContext(ctx, `INSERT INTO onward_erasures (id, partner_id, request_id, pseudonym, state, attempts, last_error) VALUES ($1, $2, $3, $4, $5, 0, '')
		ON CONFLICT (request_id, partner_id) DO NOTHING`, ids.New(), pid, req.GetRequestId(), s.Pseudonym(pid, mid), int32(sharingv1.OnwardErasureState_ONWARD_ERASURE_STATE_SENT))
	if err != nil {
		return nil, err
	}
	cur, err := scanOnward(s.DB.QueryRowContext(ctx, `SELECT `+onwardCols+` FROM onward_erasures WHERE request_id = $1 AND partner_id = $2`, req.GetRequestId(), pid))
	if err != nil {
		return nil, err
	}
	if cur.GetState() == sharingv1.OnwardErasureState_ONWARD_ERASURE_STATE_ACKNOWLEDGED {
		return cur, nil
	}
	eid := cur.GetName()[strings.LastIndex(cur.GetName(), "/")+1:]
	secret, err := s.Secrets.Decrypt(partner.secret, []byte("webhook:"+pid))
	if err != nil {
		return nil, err
	}
	now := s.now()
	body, _ := json.Marshal(erasureRequest{ErasureID: eid, PartnerSubjectID: s.Pseudonym(pid, mid), RequestTime: now,
		CallbackURL: strings.TrimRight(s.PublicURL, "/") + "/v1/" + cur.GetName() + ":acknowledge"})
	state, code := s.deliver(ctx, partner.p.GetErasureWebhookUrl(), string(secret), body, now)
	var acked any
	if state == sharingv1.OnwardErasureState_ONWARD_ERASURE_STATE_ACKNOWLEDGED {
		acked = s.now().UnixMicro()
	}
	if _, err := s.DB.ExecContext(ctx, `UPDATE onward_erasures SET state = CASE WHEN state = $1 THEN state ELSE $2 END, attempts = attempts + 1, sent_at = $3,
		first_sent_at = COALESCE(first_sent_at, $3), acked_at = COALESCE(acked_at, $4), last_error = $5 WHERE id = $6`,
		int32(sharingv1.OnwardErasureState_ONWARD_ERASURE_STATE_ACKNOWLEDGED), int32(state), now.UnixMicro(), acked, code, eid); err != nil {
		return nil, err
	}
	if acked != nil && cur.GetAcknowledgeTime() == nil {
		s.observeAck(ctx, pid, eid)
	}
	return scanOnward(s.DB.QueryRowContext(ctx, `SELECT `+onwardCols+` FROM onward_erasures WHERE id = $1`, eid))
}

// deliver POSTs a signed body and classifies the answer. Errors become codes such as
// HTTP_503 or TIMEOUT; nothing of the response body is kept.
func (s *Server) deliver(ctx context.Context, url, secret string, body []byte, now time.Time) (sharingv1.OnwardErasureState, string) {
	stamp := strconv.FormatInt(now.Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return sharingv1.OnwardErasureState_ONWARD_ERASURE_STATE_FAILED, "BAD_URL"
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Lethe-Timestamp", stamp)
	req.Header.Set("X-Lethe-Signature", Sign(secret, stamp+"."+string(body)))
	resp, err := s.HTTP.Do(req)
	if err != nil {
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
			return sharingv1.OnwardErasureState_ONWARD_ERASURE_STATE_FAILED, "TIMEOUT"
		}
		return sharingv1.OnwardErasureState_ONWARD_ERASURE_STATE_FAILED, "CONNECTION_FAILED"
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode == http.StatusOK:
		var ack struct{ Status string }
		if json.Unmarshal(raw, &ack) == nil && ack.Status == "erased" {
			return sharingv1.OnwardErasureState_ONWARD_ERASURE_STATE_ACKNOWLEDGED, ""
		}
		return sharingv1.OnwardErasureState_ONWARD_ERASURE_STATE_SENT, ""
	case resp.StatusCode == http.StatusAccepted:
		return sharingv1.OnwardErasureState_ONWARD_ERASURE_STATE_SENT, ""
	default:
		return sharingv1.OnwardErasureState_ONWARD_ERASURE_STATE_FAILED, "HTTP_" + strconv.Itoa(resp.StatusCode)
	}
}

// GetOnwardErasure implements SharingService.
func (s *Server) GetOnwardErasure(ctx context.Context, req *sharingv1.GetOnwardErasureRequest) (*sharingv1.OnwardErasure, error) {
	pid, eid, err := onwardName(req.GetName())
	if err != nil {
		return nil, err
	}
	o, err := scanOnward(s.DB.QueryRowContext(ctx, `SELECT `+onwardCols+` FROM onward_erasures WHERE id = $1 AND partner_id = $2`, eid, pid))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errs.NotFoundf("ONWARD_ERASURE_NOT_FOUND", "onward erasure")
	}
	return o, err
}

func onwardName(name string) (string, string, error) {
	rest, ok := strings.CutPrefix(name, "partners/")
	pid, eid, ok2 := strings.Cut(rest, "/onwardErasures/")
	if !ok || !ok2 || !slugRE.MatchString(pid) || eid == "" || len(eid) > 64 {
		return "", "", errs.Invalid(errs.FieldViolation{Field: "name", Description: "must be partners/{partner}/onwardErasures/{erasure}"})
	}
	return pid, eid, nil
}

// observeAck records an onward erasure's acknowledgement latency, from its first delivery.
func (s *Server) observeAck(ctx context.Context, pid, eid string) {
	var first, acked sql.NullInt64
	if err := s.DB.QueryRowContext(ctx, `SELECT COALESCE(first_sent_at, sent_at), acked_at FROM onward_erasures WHERE id = $1`, eid).Scan(&first, &acked); err == nil {
		recordAck(ctx, pid, first.Int64, acked.Int64)
	}
}

func (s *Server) rejectCallback(ctx context.Context, pid, reason, msg string) error {
	_, _ = s.DB.ExecContext(ctx, `INSERT INTO rejected_callbacks (id, partner_id, reason, received_at) VALUES ($1, $2, $3, $4)`, ids.New(), pid, reason, s.now().UnixMicro())
	if s.Logger != nil {
		s.Logger.Warn("erasure callback rejected", "partner", pid, "reason", reason)
	}
	return errs.New(errs.PermissionDenied, reason, msg)
}

// AcknowledgeErasure implements SharingService: a processor's signed callback. The
// signature covers "name.timestamp.nonce"; stale timestamps and reused nonces are
// refused, and every refusal is recorded.
func (s *Server) AcknowledgeErasure(ctx context.Context, req *sharingv1.AcknowledgeErasureRequest) (*emptypb.Empty, error) {
	pid, eid, err := onwardName(req.GetName())
	if err != nil {
		return nil, err
	}
	var v errs.Violations
	if len(req.GetNonce()) < 16 || len(req.GetNonce()) > 128 {
		v.Add("nonce", "must be 16 to 128 characters")
	}
	if len(req.GetSignature()) != 64 {
		v.Add("signature", "must be a hex HMAC-SHA256")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	partner, err := s.partner(ctx, pid)
	if err != nil {
		return nil, err
	}
	secret, err := s.Secrets.Decrypt(partner.secret, []byte("webhook:"+pid))
	if err != nil || len(partner.secret) == 0 {
		return nil, s.rejectCallback(ctx, pid, "BAD_SIGNATURE", "the signature does not verify")
	}
	want := Sign(string(secret), req.GetName()+"."+strconv.FormatInt(req.GetTimestamp(), 10)+"."+req.GetNonce())
	if !hmac.Equal([]byte(want), []byte(strings.ToLower(req.GetSignature()))) {
		return nil, s.rejectCallback(ctx, pid, "BAD_SIGNATURE", "the signature does not verify")
	}
	at := time.Unix(req.GetTimestamp(), 0)
	if now := s.now(); at.Before(now.Add(-callbackMaxAge)) || at.After(now.Add(callbackMaxSkew)) {
		return nil, s.rejectCallback(ctx, pid, "STALE_TIMESTAMP", "the callback timestamp is outside the accepted window")
	}
	if _, err := s.DB.ExecContext(ctx, `INSERT INTO callback_nonces (nonce, received_at) VALUES ($1, $2)`, pid+":"+req.GetNonce(), s.now().UnixMicro()); err != nil {
		return nil, s.rejectCallback(ctx, pid, "REPLAYED_NONCE", "the callback nonce was already used")
	}
	// The first acknowledgement stamps acked_at (and is measured); a repeat only
	// confirms the state.
	res, err := s.DB.ExecContext(ctx, `UPDATE onward_erasures SET state = $1, acked_at = $2 WHERE id = $3 AND partner_id = $4 AND acked_at IS NULL`,
		int32(sharingv1.OnwardErasureState_ONWARD_ERASURE_STATE_ACKNOWLEDGED), s.now().UnixMicro(), eid, pid)
	if err != nil {
		return nil, err
	}
	if n, _ := res.RowsAffected(); n == 1 {
		s.observeAck(ctx, pid, eid)
	} else {
		res, err := s.DB.ExecContext(ctx, `UPDATE onward_erasures SET state = $1 WHERE id = $2 AND partner_id = $3`,
			int32(sharingv1.OnwardErasureState_ONWARD_ERASURE_STATE_ACKNOWLEDGED), eid, pid)
		if err != nil {
			return nil, err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil, errs.NotFoundf("ONWARD_ERASURE_NOT_FOUND", "onward erasure")
		}
	}
	if s.Acks != nil {
		// Best effort: the acknowledgement is recorded; if the signal is lost, the
		// workflow's next poll reads it from here.
		var requestID string
		if err := s.DB.QueryRowContext(ctx, `SELECT request_id FROM onward_erasures WHERE id = $1`, eid).Scan(&requestID); err == nil {
			if err := s.Acks.OnwardAcknowledged(ctx, requestID, "partners/"+pid); err != nil && s.Logger != nil {
				s.Logger.Warn("onward acknowledgement not signalled; the workflow's poll will see it", "partner", pid, "error", err)
			}
		}
	}
	return &emptypb.Empty{}, nil
}
