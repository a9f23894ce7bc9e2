package sharing

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/ids"
	"lethe.dev/platform/storage"
)

// Pseudonym is how a partner knows a member: HMAC-SHA256(partner key, member id), the
// partner key being derived per partner from the master PRF key in the data dir, so two
// partners cannot join their data on it and one partner's key can be rotated or handed
// over without exposing the others.
func (s *Server) Pseudonym(partnerID, memberID string) string {
	key, err := s.Keys.ComputePrimaryPRF([]byte("partner-key\x00"+partnerID), 32)
	if err != nil {
		panic("sharing: pseudonym key: " + err.Error())
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(memberID))
	return hex.EncodeToString(mac.Sum(nil))
}

// erasedHash is how an erased member is remembered (keyed, like blocks).
func (s *Server) erasedHash(memberID string) string {
	out, err := s.Keys.ComputePrimaryPRF([]byte("erased\x00"+memberID), 32)
	if err != nil {
		panic("sharing: erased key: " + err.Error())
	}
	return hex.EncodeToString(out)
}

// ErrMemberNotFound answers writes for an erased member: what an unknown member gets
// from identity and the gateway.
var ErrMemberNotFound = errs.NotFoundf("MEMBER_NOT_FOUND", "member")

// refuseErased fails with ErrMemberNotFound when memberID was erased here.
func (s *Server) refuseErased(ctx context.Context, memberID string) error {
	var one int
	err := s.DB.QueryRowContext(ctx, `SELECT 1 FROM erased_members WHERE member_hash = $1`, s.erasedHash(memberID)).Scan(&one)
	switch {
	case err == nil:
		return ErrMemberNotFound
	case errors.Is(err, sql.ErrNoRows):
		return nil
	default:
		return err
	}
}

func (s *Server) blockHash(memberID string) string {
	out, err := s.Keys.ComputePrimaryPRF([]byte("block\x00"+memberID), 32)
	if err != nil {
		panic("sharing: block key: " + err.Error())
	}
	return hex.EncodeToString(out)
}

// entryHash is the chain hash of one log entry. It covers everything but the subject,
// so replacing the member id with a tombstone id keeps the chain verifiable.
func entryHash(seq int64, partner, purpose, categories, basis string, at int64, prev string) string {
	h := sha256.New()
	for _, part := range []string{strconv.FormatInt(seq, 10), partner, purpose, categories, basis, strconv.FormatInt(at, 10), prev} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (s *Server) deny(ctx context.Context, partnerID, purposeID, reason string) (*sharingv1.AuthorizeDisclosureResponse, error) {
	_, err := s.DB.ExecContext(ctx, `INSERT INTO denials (id, partner_id, purpose_id, reason, denied_at) VALUES ($1, $2, $3, $4, $5)`, ids.New(), partnerID, purposeID, reason, s.now().UnixMicro())
	if s.Logger != nil {
		s.Logger.Info("disclosure denied", "partner", partnerID, "purpose", purposeID, "reason", reason)
	}
	return &sharingv1.AuthorizeDisclosureResponse{Allowed: false, Reason: reason}, err
}

// AuthorizeDisclosure implements SharingService: the one check before any data leaves.
// Bad input is an error; a refusal is an answer with its reason. Only an allowed
// disclosure is logged, once per request id.
func (s *Server) AuthorizeDisclosure(ctx context.Context, req *sharingv1.AuthorizeDisclosureRequest) (*sharingv1.AuthorizeDisclosureResponse, error) {
	mid, err := memberOf(req.GetMember(), "member")
	if err != nil {
		return nil, err
	}
	pid, err := partnerOf(req.GetPartner(), "partner")
	if err != nil {
		return nil, err
	}
	var v errs.Violations
	if req.GetPurpose() == "" {
		v.Add("purpose", "is required")
	}
	if req.GetRequestId() == "" {
		v.Add("request_id", "is required: one log entry per request")
	}
	checkCategories("data_categories", req.GetDataCategories(), &v)
	if err := v.Err(); err != nil {
		return nil, err
	}
	if got, err := s.disclosureByRequest(ctx, mid, pid, req.GetPurpose(), req.GetRequestId()); err != nil {
		return nil, err
	} else if got != nil {
		return &sharingv1.AuthorizeDisclosureResponse{Allowed: true, Reason: "ALLOWED", Disclosure: got, PartnerSubjectId: s.Pseudonym(pid, mid)}, nil
	}
	partner, err := s.partner(ctx, pid)
	if errs.ReasonOf(err) == "PARTNER_NOT_FOUND" {
		return s.deny(ctx, pid, req.GetPurpose(), "PARTNER_UNKNOWN")
	} else if err != nil {
		return nil, err
	}
	var blocked int
	if err := s.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM blocks WHERE member_hash = $1`, s.blockHash(mid)).Scan(&blocked); err != nil {
		return nil, err
	}
	if blocked > 0 {
		return s.deny(ctx, pid, req.GetPurpose(), "SHARING_BLOCKED")
	}
	// A restriction of processing (GDPR Art. 18) keeps the data but lets none of it flow.
	if restricted, err := s.restricted(ctx, mid); err != nil {
		return nil, err
	} else if restricted {
		return s.deny(ctx, pid, req.GetPurpose(), "PROCESSING_RESTRICTED")
	}
	if !slices.Contains(partner.p.GetPurposes(), req.GetPurpose()) {
		return s.deny(ctx, pid, req.GetPurpose(), "PURPOSE_NOT_DECLARED")
	}
	purpose, err := s.purpose(ctx, pid, req.GetPurpose())
	if err != nil {
		return nil, err
	}
	allowedCats := partner.p.GetDataCategories()
	basis := "contract"
	if purpose != nil {
		allowedCats, basis = purpose.cats, purpose.legalBasis
	}
	for _, c := range req.GetDataCategories() {
		if !slices.Contains(allowedCats, c) {
			return s.deny(ctx, pid, req.GetPurpose(), "CATEGORY_NOT_DECLARED")
		}
	}
	var objections int
	if err := s.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM objections WHERE member_id = $1 AND withdrawn_at IS NULL
		AND (partner_id = $2 OR partner_id = '') AND (purpose_id = $3 OR purpose_id = '')`, mid, pid, req.GetPurpose()).Scan(&objections); err != nil {
		return nil, err
	}
	if objections > 0 {
		return s.deny(ctx, pid, req.GetPurpose(), "OBJECTED")
	}
	// Ad opt-out and Global Privacy Control: a sale or sharing waits for nothing else.
	if reason, err := s.adRefusal(ctx, partner.p.GetKind(), mid); err != nil {
		return nil, err
	} else if reason != "" {
		return s.deny(ctx, pid, req.GetPurpose(), reason)
	}
	// An acquirer receives data only under a business transfer, from its date.
	if reason, err := s.transferRefusal(ctx, partner.p.GetKind(), pid, req.GetPurpose()); err != nil {
		return nil, err
	} else if reason != "" {
		return s.deny(ctx, pid, req.GetPurpose(), reason)
	}
	// A policy change lowering protection for this purpose waits for the member's consent.
	if reason, err := s.policyRefusal(ctx, mid, req.GetPurpose()); err != nil {
		return nil, err
	} else if reason != "" {
		return s.deny(ctx, pid, req.GetPurpose(), reason)
	}
	if needsNotice(partner.p.GetKind()) {
		if purpose == nil {
			return s.deny(ctx, pid, req.GetPurpose(), "NO_NOTICE")
		}
		var state int
		err := s.DB.QueryRowContext(ctx, `SELECT state FROM notices WHERE member_id = $1 AND partner_id = $2 AND purpose_id = $3`, mid, pid, req.GetPurpose()).Scan(&state)
		switch {
		case (errors.Is(err, sql.ErrNoRows) || state == 0) && partner.p.GetKind() == sharingv1.PartnerKind_PARTNER_KIND_ACQUIRER && s.Notifier != nil:
			// The transfer is in effect (transferRefusal) but this member was not in its
			// fan-out: they signed up after it. They are told now, like everyone was,
			// and nothing flows until their own notice period has run its course.
			if _, err := s.noticeFor(ctx, mid, pid, req.GetPurpose(), max(purpose.period, time.Second)); err != nil {
				return nil, err
			}
			return s.deny(ctx, pid, req.GetPurpose(), "NOTICE_PENDING")
		case errors.Is(err, sql.ErrNoRows) || state == 0:
			return s.deny(ctx, pid, req.GetPurpose(), "NO_NOTICE")
		case err != nil:
			return nil, err
		case state == 1:
			return s.deny(ctx, pid, req.GetPurpose(), "NOTICE_PENDING")
		case state == 3:
			return s.deny(ctx, pid, req.GetPurpose(), "NOTICE_BLOCKED")
		}
	}
	d, err := s.appendDisclosure(ctx, mid, pid, req.GetPurpose(), req.GetDataCategories(), basis, req.GetRequestId())
	if err != nil {
		return nil, err
	}
	return &sharingv1.AuthorizeDisclosureResponse{Allowed: true, Reason: "ALLOWED", Disclosure: d, PartnerSubjectId: s.Pseudonym(pid, mid)}, nil
}

func (s *Server) appendDisclosure(ctx context.Context, mid, pid, purpose string, cats []string, basis, requestID string) (*sharingv1.Disclosure, error) {
	sorted := slices.Clone(cats)
	slices.Sort(sorted)
	catsJSON, _ := json.Marshal(sorted)
	var out *sharingv1.Disclosure
	err := s.DB.InTx(ctx, func(tx *sql.Tx) error {
		var seq int64
		prev := ""
		err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM disclosures WHERE subject = $1 ORDER BY seq DESC LIMIT 1`, mid).Scan(&seq, &prev)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		seq++
		at := s.now().UnixMicro()
		hash := entryHash(seq, pid, purpose, string(catsJSON), basis, at, prev)
		if _, err := tx.ExecContext(ctx, `INSERT INTO disclosures (subject, seq, partner_id, purpose_id, data_categories, legal_basis, disclosed_at, prev_hash, hash, request_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, mid, seq, pid, purpose, string(catsJSON), basis, at, prev, hash, requestID); err != nil {
			return err
		}
		out = &sharingv1.Disclosure{Name: "members/" + mid + "/disclosures/" + strconv.FormatInt(seq, 10), Partner: "partners/" + pid, Purpose: purpose,
			DataCategories: sorted, LegalBasis: basis, DiscloseTime: timestamppb.New(time.UnixMicro(at)), PreviousHash: prev, Hash: hash}
		return nil
	})
	if storage.IsUniqueViolation(err) { // a concurrent retry of the same request won
		return s.disclosureByRequest(ctx, mid, pid, purpose, requestID)
	}
	return out, err
}

const disclosureCols = `subject, seq, partner_id, purpose_id, data_categories, legal_basis, disclosed_at, prev_hash, hash`

func scanDisclosure(row interface{ Scan(...any) error }) (*sharingv1.Disclosure, error) {
	var subject, pid, cats string
	var seq, at int64
	d := &sharingv1.Disclosure{}
	if err := row.Scan(&subject, &seq, &pid, &d.Purpose, &cats, &d.LegalBasis, &at, &d.PreviousHash, &d.Hash); err != nil {
		return nil, err
	}
	_ = json.Unmarshal([]byte(cats), &d.DataCategories)
	d.Name, d.Partner, d.DiscloseTime = "members/"+subject+"/disclosures/"+strconv.FormatInt(seq, 10), "partners/"+pid, timestamppb.New(time.UnixMicro(at))
	return d, nil
}

// disclosureByRequest finds the entry an earlier call with the same idempotency key
// logged. The key is (member, partner, purpose, request id): a request id alone would
// hand one member's decision and pseudonym to another who reused it.
func (s *Server) disclosureByRequest(ctx context.Context, mid, pid, purpose, requestID string) (*sharingv1.Disclosure, error) {
	d, err := scanDisclosure(s.DB.QueryRowContext(ctx, `SELECT `+disclosureCols+` FROM disclosures WHERE subject = $1 AND partner_id = $2 AND purpose_id = $3 AND request_id = $4`,
		mid, pid, purpose, requestID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return d, err
}

// ListDisclosures implements SharingService: the member's recipients, in log order.
func (s *Server) ListDisclosures(ctx context.Context, req *sharingv1.ListDisclosuresRequest) (*sharingv1.ListDisclosuresResponse, error) {
	mid, err := memberOf(req.GetParent(), "parent")
	if err != nil {
		return nil, err
	}
	n := int(req.GetPageSize())
	if n == 0 {
		n = 50
	}
	if n < 0 || n > 500 {
		return nil, errs.Invalid(errs.FieldViolation{Field: "page_size", Description: "must be between 0 and 500"})
	}
	after := int64(0)
	if t := req.GetPageToken(); t != "" {
		if after, err = strconv.ParseInt(t, 10, 64); err != nil {
			return nil, errs.Invalid(errs.FieldViolation{Field: "page_token", Description: "is not a token this API issued"})
		}
	}
	rows, err := s.DB.QueryContext(ctx, `SELECT `+disclosureCols+` FROM disclosures WHERE subject = $1 AND seq > $2 ORDER BY seq LIMIT $3`, mid, after, n+1)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := &sharingv1.ListDisclosuresResponse{}
	for rows.Next() {
		d, err := scanDisclosure(rows)
		if err != nil {
			return nil, err
		}
		if len(out.Disclosures) == n {
			last := out.Disclosures[n-1].GetName()
			out.NextPageToken = last[strings.LastIndex(last, "/")+1:]
			break
		}
		out.Disclosures = append(out.Disclosures, d)
	}
	return out, rows.Err()
}

// verifyChain recomputes the hash chain of one subject's log.
func (s *Server) verifyChain(ctx context.Context, subject string) (*sharingv1.VerifyDisclosureLogResponse, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT seq, partner_id, purpose_id, data_categories, legal_basis, disclosed_at, prev_hash, hash FROM disclosures WHERE subject = $1 ORDER BY seq`, subject)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := &sharingv1.VerifyDisclosureLogResponse{Valid: true}
	prev := ""
	want := int64(1)
	for rows.Next() {
		var seq, at int64
		var pid, purpose, cats, basis, prevHash, hash string
		if err := rows.Scan(&seq, &pid, &purpose, &cats, &basis, &at, &prevHash, &hash); err != nil {
			return nil, err
		}
		out.EntriesChecked++
		if seq != want || prevHash != prev || entryHash(seq, pid, purpose, cats, basis, at, prevHash) != hash {
			out.Valid, out.FirstInvalid = false, "members/"+subject+"/disclosures/"+strconv.FormatInt(seq, 10)
			return out, nil
		}
		prev, want = hash, want+1
	}
	return out, rows.Err()
}

// VerifyDisclosureLog implements SharingService.
func (s *Server) VerifyDisclosureLog(ctx context.Context, req *sharingv1.VerifyDisclosureLogRequest) (*sharingv1.VerifyDisclosureLogResponse, error) {
	mid, err := memberOf(req.GetParent(), "parent")
	if err != nil {
		return nil, err
	}
	return s.verifyChain(ctx, mid)
}

// BlockSharing implements SharingService; idempotent.
func (s *Server) BlockSharing(ctx context.Context, req *sharingv1.BlockSharingRequest) (*sharingv1.BlockSharingResponse, error) {
	mid, err := memberOf(req.GetMember(), "member")
	if err != nil {
		return nil, err
	}
	now := s.now().UnixMicro()
	if _, err := s.DB.ExecContext(ctx, `INSERT INTO blocks (member_hash, blocked_at) VALUES ($1, $2) ON CONFLICT (member_hash) DO NOTHING`, s.blockHash(mid), now); err != nil {
		return nil, err
	}
	var at int64
	if err := s.DB.QueryRowContext(ctx, `SELECT blocked_at FROM blocks WHERE member_hash = $1`, s.blockHash(mid)).Scan(&at); err != nil {
		return nil, err
	}
	return &sharingv1.BlockSharingResponse{BlockTime: timestamppb.New(time.UnixMicro(at))}, nil
}
