package sharing

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/ids"
)

// NotifyMembers implements SharingService: one notice (and one workflow) per member not
// yet notified of the purpose. A retry starts the workflows of notices whose start was
// lost, so the call is safe to repeat.
func (s *Server) NotifyMembers(ctx context.Context, req *sharingv1.NotifyMembersRequest) (*sharingv1.NotifyMembersResponse, error) {
	rest, ok := strings.CutPrefix(req.GetPurpose(), "partners/")
	pid, purposeID, ok2 := strings.Cut(rest, "/purposes/")
	if !ok || !ok2 || !slugRE.MatchString(pid) {
		return nil, errs.Invalid(errs.FieldViolation{Field: "purpose", Description: "must be partners/{partner}/purposes/{purpose}"})
	}
	var v errs.Violations
	if n := len(req.GetMembers()); n == 0 || n > 1000 {
		v.Add("members", "must list 1 to 1000 members")
	}
	members := make([]string, 0, len(req.GetMembers()))
	for _, m := range req.GetMembers() {
		id, err := memberOf(m, "members")
		if err != nil {
			v.Add("members", "each must be members/{member}")
			break
		}
		members = append(members, id)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	p, err := s.purpose(ctx, pid, purposeID)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, errs.NotFoundf("PURPOSE_NOT_FOUND", "purpose")
	}
	if s.Notifier == nil {
		return nil, errs.New(errs.FailedPrecondition, "TEMPORAL_DISABLED", "notices need the Temporal worker; this instance runs without it")
	}
	out := &sharingv1.NotifyMembersResponse{}
	for _, id := range members {
		if err := s.refuseErased(ctx, id); errs.ReasonOf(err) == "MEMBER_NOT_FOUND" {
			continue // erased: no notice, no row
		} else if err != nil {
			return nil, err
		}
		noticeID := ids.New()
		res, err := s.DB.ExecContext(ctx, `INSERT INTO notices (id, member_id, partner_id, purpose_id, state, created_at) VALUES ($1, $2, $3, $4, 0, $5)
			ON CONFLICT (member_id, partner_id, purpose_id) DO NOTHING`, noticeID, id, pid, purposeID, s.now().UnixMicro())
		if err != nil {
			return nil, err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var state int
			if err := s.DB.QueryRowContext(ctx, `SELECT id, state FROM notices WHERE member_id = $1 AND partner_id = $2 AND purpose_id = $3`, id, pid, purposeID).Scan(&noticeID, &state); err != nil {
				return nil, err
			}
			out.AlreadyNotifiedCount++
			if state != 0 {
				continue
			}
		} else {
			out.StartedCount++
		}
		if err := s.Notifier.StartNotice(ctx, noticeID, p.period); err != nil {
			return nil, errs.Wrap(err, errs.Unavailable, "NOTICE_START_FAILED", "could not start the notice; retry the call")
		}
	}
	return out, nil
}

// ListNotices implements SharingService.
func (s *Server) ListNotices(ctx context.Context, req *sharingv1.ListNoticesRequest) (*sharingv1.ListNoticesResponse, error) {
	id, err := memberOf(req.GetParent(), "parent")
	if err != nil {
		return nil, err
	}
	notices, err := s.notices(ctx, id)
	if err != nil {
		return nil, err
	}
	return &sharingv1.ListNoticesResponse{Notices: notices}, nil
}

func (s *Server) notices(ctx context.Context, memberID string) ([]*sharingv1.Notice, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT id, partner_id, purpose_id, state, notify_at, effective_at FROM notices WHERE member_id = $1 AND state > 0 ORDER BY created_at DESC, id`, memberID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*sharingv1.Notice
	for rows.Next() {
		var id, pid, purpose string
		var state int32
		var notify, eff sql.NullInt64
		if err := rows.Scan(&id, &pid, &purpose, &state, &notify, &eff); err != nil {
			return nil, err
		}
		n := &sharingv1.Notice{Name: "members/" + memberID + "/notices/" + id, Purpose: "partners/" + pid + "/purposes/" + purpose, State: sharingv1.NoticeState(state)}
		if notify.Valid {
			n.NotifyTime, n.EffectiveTime = timestamppb.New(time.UnixMicro(notify.Int64)), timestamppb.New(time.UnixMicro(eff.Int64))
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// CreateObjection implements SharingService. An objection to a partner, a purpose or
// both takes effect at once: the authorization check reads it, and pending notices it
// covers are signalled so they end BLOCKED.
func (s *Server) CreateObjection(ctx context.Context, req *sharingv1.CreateObjectionRequest) (*sharingv1.Objection, error) {
	id, err := memberOf(req.GetParent(), "parent")
	if err != nil {
		return nil, err
	}
	if err := s.refuseErased(ctx, id); err != nil {
		return nil, err
	}
	o := req.GetObjection()
	var v errs.Violations
	pid := ""
	if o.GetPartner() != "" {
		if pid, err = partnerOf(o.GetPartner(), "objection.partner"); err != nil {
			return nil, err
		}
	}
	if pid == "" && o.GetPurpose() == "" {
		v.Add("objection", "name a partner, a purpose, or both")
	}
	if len(o.GetPurpose()) > 64 {
		v.Add("objection.purpose", "at most 64 characters")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if req.GetRequestId() != "" {
		if got, err := s.objection(ctx, `request_id = $1 AND member_id = $2`, req.GetRequestId(), id); err == nil {
			return got, nil
		}
	}
	oid, now := ids.New(), s.now()
	var reqID any
	if req.GetRequestId() != "" {
		reqID = req.GetRequestId()
	}
	if _, err := s.DB.ExecContext(ctx, `INSERT INTO objections (id, member_id, partner_id, purpose_id, created_at, request_id) VALUES ($1, $2, $3, $4, $5, $6)`,
		oid, id, pid, o.GetPurpose(), now.UnixMicro(), reqID); err != nil {
		return nil, err
	}
	if s.Notifier != nil {
		rows, err := s.DB.QueryContext(ctx, `SELECT id FROM notices WHERE member_id = $1 AND state = 1 AND ($2 = '' OR partner_id = $2) AND ($3 = '' OR purpose_id = $3)`, id, pid, o.GetPurpose())
		if err != nil {
			return nil, err
		}
		var pending []string
		for rows.Next() {
			var nid string
			if rows.Scan(&nid) == nil {
				pending = append(pending, nid)
			}
		}
		rows.Close()
		for _, nid := range pending {
			// Resolve re-reads objections, so a failed signal cannot let data flow.
			if err := s.Notifier.SignalObjection(ctx, nid); err != nil && s.Logger != nil {
				s.Logger.Warn("objection signal not delivered; the notice will read the objection when it resolves", "notice", nid)
			}
		}
	}
	return s.objection(ctx, `id = $1`, oid)
}

func (s *Server) objection(ctx context.Context, where string, args ...any) (*sharingv1.Objection, error) {
	var id, member, pid, purpose string
	var created int64
	var withdrawn sql.NullInt64
	err := s.DB.QueryRowContext(ctx, `SELECT id, member_id, partner_id, purpose_id, created_at, withdrawn_at FROM objections WHERE `+where, args...).Scan(&id, &member, &pid, &purpose, &created, &withdrawn)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errs.NotFoundf("OBJECTION_NOT_FOUND", "objection")
	}
	if err != nil {
		return nil, err
	}
	o := &sharingv1.Objection{Name: "members/" + member + "/objections/" + id, Purpose: purpose, CreateTime: timestamppb.New(time.UnixMicro(created))}
	if pid != "" {
		o.Partner = "partners/" + pid
	}
	if withdrawn.Valid {
		o.WithdrawTime = timestamppb.New(time.UnixMicro(withdrawn.Int64))
	}
	return o, nil
}

// ListObjections implements SharingService: all objections, withdrawn ones included.
func (s *Server) ListObjections(ctx context.Context, req *sharingv1.ListObjectionsRequest) (*sharingv1.ListObjectionsResponse, error) {
	id, err := memberOf(req.GetParent(), "parent")
	if err != nil {
		return nil, err
	}
	out, err := s.objections(ctx, id)
	return &sharingv1.ListObjectionsResponse{Objections: out}, err
}

func (s *Server) objections(ctx context.Context, memberID string) ([]*sharingv1.Objection, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT id FROM objections WHERE member_id = $1 ORDER BY created_at DESC, id`, memberID)
	if err != nil {
		return nil, err
	}
	var objectionIDs []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		objectionIDs = append(objectionIDs, id)
	}
	rows.Close()
	var out []*sharingv1.Objection
	for _, id := range objectionIDs {
		o, err := s.objection(ctx, `id = $1`, id)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

// WithdrawObjection implements SharingService.
func (s *Server) WithdrawObjection(ctx context.Context, req *sharingv1.WithdrawObjectionRequest) (*sharingv1.Objection, error) {
	rest, ok := strings.CutPrefix(req.GetName(), "members/")
	mid, oid, ok2 := strings.Cut(rest, "/objections/")
	if !ok || !ok2 || !ids.Valid(mid) {
		return nil, errs.Invalid(errs.FieldViolation{Field: "name", Description: "must be members/{member}/objections/{objection}"})
	}
	if err := s.refuseErased(ctx, mid); err != nil {
		return nil, err
	}
	if _, err := s.DB.ExecContext(ctx, `UPDATE objections SET withdrawn_at = $1 WHERE id = $2 AND member_id = $3 AND withdrawn_at IS NULL`, s.now().UnixMicro(), oid, mid); err != nil {
		return nil, err
	}
	return s.objection(ctx, `id = $1 AND member_id = $2`, oid, mid)
}
