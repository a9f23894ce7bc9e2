package sharing

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/types/known/timestamppb"

	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/ids"
)

// MemberPager lists members a page at a time (identity, which alone knows them).
type MemberPager interface {
	MemberPage(ctx context.Context, pageToken string) (memberIDs []string, next string, err error)
}

// SignUpPager lists members newest first with when each signed up (identity), for the
// business-transfer newcomer sweeps; Members implements it in production.
type SignUpPager interface {
	MemberSignUps(ctx context.Context, pageToken string) (members []MemberSignUp, next string, err error)
}

// MemberSignUp is one member of a SignUpPager page: the opaque id and the sign-up time.
type MemberSignUp struct {
	ID       string
	SignedUp time.Time
}

// TransferStarter starts a business transfer's workflow; starting again joins the
// running one.
type TransferStarter interface {
	StartTransfer(ctx context.Context, transferID string, effective time.Time) error
}

type transferRow struct {
	id, partner, purpose string
	cats                 []string
	effective, created   int64
	state                int32
	notified             int64
	cursor               string
}

func (t transferRow) proto() *sharingv1.BusinessTransfer {
	return &sharingv1.BusinessTransfer{Name: "businessTransfers/" + t.id, Acquirer: "partners/" + t.partner, Purpose: t.purpose, DataCategories: t.cats,
		EffectiveTime: timestamppb.New(time.UnixMicro(t.effective)), State: sharingv1.BusinessTransferState(t.state), NotifiedCount: t.notified,
		CreateTime: timestamppb.New(time.UnixMicro(t.created))}
}

func (s *Server) transfer(ctx context.Context, id string) (*transferRow, error) {
	t := &transferRow{id: id}
	var cats string
	err := s.DB.QueryRowContext(ctx, `SELECT partner_id, purpose_id, data_categories, effective_at, state, notify_cursor, notified_count, created_at FROM business_transfers WHERE id = $1`, id).
		Scan(&t.partner, &t.purpose, &cats, &t.effective, &t.state, &t.cursor, &t.notified, &t.created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errs.NotFoundf("BUSINESS_TRANSFER_NOT_FOUND", "business transfer")
	}
	_ = json.Unmarshal([]byte(cats), &t.cats)
	return t, err
}

// CreateBusinessTransfer implements SharingService: record the transfer and start its
// workflow, which gives every member notice and marks it effective at its date.
func (s *Server) CreateBusinessTransfer(ctx context.Context, req *sharingv1.CreateBusinessTransferRequest) (*sharingv1.BusinessTransfer, error) {
	in := req.GetBusinessTransfer()
	var v errs.Violations
	if !slugRE.MatchString(req.GetBusinessTransferId()) {
		v.Add("business_transfer_id", "must be 3 to 63 lowercase letters, digits or '-'")
	}
	pid, err := partnerOf(in.GetAcquirer(), "business_transfer.acquirer")
	if err != nil {
		return nil, err
	}
	if in.GetEffectiveTime() == nil || !in.GetEffectiveTime().IsValid() || !in.GetEffectiveTime().AsTime().After(s.now()) {
		v.Add("business_transfer.effective_time", "is required and must be in the future: members are told before the date")
	}
	cats := slices.Clone(in.GetDataCategories())
	slices.Sort(cats)
	cats = slices.Compact(cats)
	if len(cats) == 0 {
		v.Add("business_transfer.data_categories", "name the data categories that pass to the acquirer")
	}
	checkCategories("business_transfer.data_categories", cats, &v)
	partner, err := s.partner(ctx, pid)
	if errs.ReasonOf(err) == "PARTNER_NOT_FOUND" {
		v.Add("business_transfer.acquirer", "is not a registered partner")
	} else if err != nil {
		return nil, err
	} else if partner.p.GetKind() != sharingv1.PartnerKind_PARTNER_KIND_ACQUIRER {
		v.Add("business_transfer.acquirer", "must be a partner of kind ACQUIRER")
	} else if purpose, err := s.purpose(ctx, pid, in.GetPurpose()); err != nil {
		return nil, err
	} else if purpose == nil {
		v.Add("business_transfer.purpose", "must be one of the acquirer's purposes (CreatePurpose first: its description is what members are told)")
	} else {
		for _, c := range cats {
			if !slices.Contains(purpose.cats, c) {
				v.Add("business_transfer.data_categories", "must be within the purpose's data categories")
				break
			}
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if s.Transfers == nil || s.Notifier == nil {
		return nil, errs.New(errs.FailedPrecondition, "TEMPORAL_DISABLED", "business transfers need the Temporal worker; this instance runs without it")
	}
	cj, _ := json.Marshal(cats)
	eff := in.GetEffectiveTime().AsTime().UnixMicro()
	if _, err := s.DB.ExecContext(ctx, `INSERT INTO business_transfers (id, partner_id, purpose_id, data_categories, effective_at, state, notify_cursor, notified_count, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, '', 0, $7) ON CONFLICT (id) DO NOTHING`,
		req.GetBusinessTransferId(), pid, in.GetPurpose(), string(cj), eff, int32(sharingv1.BusinessTransferState_BUSINESS_TRANSFER_STATE_NOTIFYING), s.now().UnixMicro()); err != nil {
		return nil, err
	}
	t, err := s.transfer(ctx, req.GetBusinessTransferId())
	if err != nil {
		return nil, err
	}
	if t.partner != pid || t.purpose != in.GetPurpose() || t.effective != eff || !slices.Equal(t.cats, cats) {
		return nil, errs.New(errs.AlreadyExists, "BUSINESS_TRANSFER_EXISTS", "a business transfer with this id was recorded with other terms")
	}
	if err := s.Transfers.StartTransfer(ctx, t.id, time.UnixMicro(t.effective)); err != nil {
		return nil, errs.Wrap(err, errs.Unavailable, "TRANSFER_START_FAILED", "could not start the transfer's notices; retry the call")
	}
	if s.Logger != nil {
		s.Logger.Info("business transfer recorded", "transfer", t.id, "partner", pid)
	}
	return t.proto(), nil
}

// GetBusinessTransfer implements SharingService.
func (s *Server) GetBusinessTransfer(ctx context.Context, req *sharingv1.GetBusinessTransferRequest) (*sharingv1.BusinessTransfer, error) {
	id, ok := strings.CutPrefix(req.GetName(), "businessTransfers/")
	if !ok || !slugRE.MatchString(id) {
		return nil, errs.Invalid(errs.FieldViolation{Field: "name", Description: "must be businessTransfers/{transfer}"})
	}
	t, err := s.transfer(ctx, id)
	if err != nil {
		return nil, err
	}
	return t.proto(), nil
}

// NotifyTransferPage gives the next page of identity's members an advance notice of the
// transfer: one notice per member (the notice workflow emails them the objection link
// and ends at the transfer's date). Safe to repeat: notices are unique per member,
// partner and purpose, notice workflows start once, and the cursor advances by
// compare-and-set.
func (s *Server) NotifyTransferPage(ctx context.Context, transferID string) (int, bool, error) {
	t, err := s.transfer(ctx, transferID)
	if errs.ReasonOf(err) == "BUSINESS_TRANSFER_NOT_FOUND" {
		return 0, false, temporal.NewNonRetryableApplicationError("transfer no longer exists", "TRANSFER_GONE", nil)
	}
	if err != nil {
		return 0, false, err
	}
	if t.state != int32(sharingv1.BusinessTransferState_BUSINESS_TRANSFER_STATE_NOTIFYING) {
		return 0, true, nil
	}
	if s.Members == nil || s.Notifier == nil {
		return 0, false, errors.New("sharing: no member list or notice starter configured")
	}
	members, next, err := s.Members.MemberPage(ctx, t.cursor)
	if err != nil {
		return 0, false, err
	}
	// Each notice ends at the transfer's date, whenever in the fan-out it starts.
	period := time.UnixMicro(t.effective).Sub(s.now())
	if period < time.Second {
		period = time.Second
	}
	for _, m := range members {
		if _, err := s.noticeFor(ctx, m, t.partner, t.purpose, period); err != nil {
			return 0, false, err
		}
	}
	state := sharingv1.BusinessTransferState_BUSINESS_TRANSFER_STATE_NOTIFYING
	if next == "" {
		state = sharingv1.BusinessTransferState_BUSINESS_TRANSFER_STATE_NOTIFIED
	}
	if _, err := s.DB.ExecContext(ctx, `UPDATE business_transfers SET notify_cursor = $1, notified_count = notified_count + $2, state = $3 WHERE id = $4 AND notify_cursor = $5 AND state = $6`,
		next, len(members), int32(state), transferID, t.cursor, t.state); err != nil {
		return 0, false, err
	}
	return len(members), next == "", nil
}

// noticeFor creates the member's notice of (partner, purpose) unless there is one, and
// starts its workflow unless it started; started says whether this call started it. An
// erased member gets none.
func (s *Server) noticeFor(ctx context.Context, memberID, pid, purposeID string, period time.Duration) (started bool, err error) {
	if err := s.refuseErased(ctx, memberID); errs.ReasonOf(err) == "MEMBER_NOT_FOUND" {
		return false, nil
	} else if err != nil {
		return false, err
	}
	if _, err := s.DB.ExecContext(ctx, `INSERT INTO notices (id, member_id, partner_id, purpose_id, state, created_at) VALUES ($1, $2, $3, $4, 0, $5)
		ON CONFLICT (member_id, partner_id, purpose_id) DO NOTHING`, ids.New(), memberID, pid, purposeID, s.now().UnixMicro()); err != nil {
		return false, err
	}
	var noticeID string
	var state int
	if err := s.DB.QueryRowContext(ctx, `SELECT id, state FROM notices WHERE member_id = $1 AND partner_id = $2 AND purpose_id = $3`, memberID, pid, purposeID).Scan(&noticeID, &state); err != nil {
		return false, err
	}
	if state != 0 {
		return false, nil // started before
	}
	return true, s.Notifier.StartNotice(ctx, noticeID, period)
}

// NotifyTransferNewcomers gives notice of the transfer to the members who signed up
// after since (the fan-out's start, then the previous sweep's): identity lists members
// newest first, so they are the head of the list and the sweep stops at the first member
// who signed up at or before since. Each newcomer's notice lasts until the transfer's
// date or the purpose's notice period, whichever is longer: they did not have the
// others' time in advance. Safe to repeat (notices are unique per member and start once;
// the count and notified_count grow only by notices this call started).
func (s *Server) NotifyTransferNewcomers(ctx context.Context, transferID string, since time.Time) (int, error) {
	t, err := s.transfer(ctx, transferID)
	if errs.ReasonOf(err) == "BUSINESS_TRANSFER_NOT_FOUND" {
		return 0, temporal.NewNonRetryableApplicationError("transfer no longer exists", "TRANSFER_GONE", nil)
	}
	if err != nil {
		return 0, err
	}
	pager, ok := s.Members.(SignUpPager)
	if !ok || s.Notifier == nil {
		return 0, errors.New("sharing: no member list with sign-up times or notice starter configured")
	}
	purpose, err := s.purpose(ctx, t.partner, t.purpose)
	if err != nil {
		return 0, err
	}
	period := time.UnixMicro(t.effective).Sub(s.now())
	if purpose != nil {
		period = max(period, purpose.period)
	}
	period = max(period, time.Second)
	n := 0
	for token := ""; ; {
		members, next, err := pager.MemberSignUps(ctx, token)
		if err != nil {
			return n, err
		}
		for _, m := range members {
			if !m.SignedUp.After(since) {
				return n, nil // the fan-out or an earlier sweep reached them
			}
			started, err := s.noticeFor(ctx, m.ID, t.partner, t.purpose, period)
			if err != nil {
				return n, err
			}
			if started {
				if _, err := s.DB.ExecContext(ctx, `UPDATE business_transfers SET notified_count = notified_count + 1 WHERE id = $1`, transferID); err != nil {
					return n, err
				}
				n++
			}
		}
		if next == "" {
			return n, nil
		}
		token = next
	}
}

// MakeTransferEffective records that the transfer's date has come.
func (s *Server) MakeTransferEffective(ctx context.Context, transferID string) error {
	_, err := s.DB.ExecContext(ctx, `UPDATE business_transfers SET state = $1 WHERE id = $2`, int32(sharingv1.BusinessTransferState_BUSINESS_TRANSFER_STATE_EFFECTIVE), transferID)
	return err
}

// transferRefusal returns why data may not flow to an acquirer yet: no transfer to it
// for this purpose is on record (NO_BUSINESS_TRANSFER), or its date has not come
// (TRANSFER_NOT_EFFECTIVE). Other kinds of partner are not affected.
func (s *Server) transferRefusal(ctx context.Context, k sharingv1.PartnerKind, pid, purpose string) (string, error) {
	if k != sharingv1.PartnerKind_PARTNER_KIND_ACQUIRER {
		return "", nil
	}
	var eff sql.NullInt64
	if err := s.DB.QueryRowContext(ctx, `SELECT MIN(effective_at) FROM business_transfers WHERE partner_id = $1 AND purpose_id = $2`, pid, purpose).Scan(&eff); err != nil {
		return "", err
	}
	switch {
	case !eff.Valid:
		return "NO_BUSINESS_TRANSFER", nil
	case s.now().UnixMicro() < eff.Int64:
		return "TRANSFER_NOT_EFFECTIVE", nil
	}
	return "", nil
}
