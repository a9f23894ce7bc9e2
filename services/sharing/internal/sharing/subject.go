package sharing

import (
	"context"
	"database/sql"
	"errors"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	privacyv1 "lethe.dev/gen/lethe/privacy/v1"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	subjectv1 "lethe.dev/gen/lethe/subject/v1"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/ids"
	"lethe.dev/platform/legalhold"
	"lethe.dev/platform/storage"
)

// LegalBasisDisclosures justifies keeping the disclosure log after an erasure.
const LegalBasisDisclosures = "record of disclosures to recipients (GDPR Art. 30); member id replaced by the tombstone id"

// ExportSubjectData implements DataSubjectService: objections, notices, the restriction
// of processing in force and the disclosure log (the recipients of the member's data).
func (s *Server) ExportSubjectData(req *subjectv1.ExportSubjectDataRequest, stream subjectv1.DataSubjectService_ExportSubjectDataServer) error {
	ctx := stream.Context()
	mid, err := memberOf(req.GetSubject(), "subject")
	if err != nil {
		return err
	}
	send := func(dataset, category string, msgs []proto.Message, cursor string) error {
		recs := make([][]byte, 0, len(msgs))
		for _, m := range msgs {
			b, _ := protojson.Marshal(m)
			recs = append(recs, b)
		}
		return stream.Send(&subjectv1.ExportSubjectDataResponse{Dataset: dataset, Category: category, SchemaVersion: 1, Records: recs, Cursor: cursor})
	}
	if req.GetCursor() == "" {
		objs, err := s.objections(ctx, mid)
		if err != nil {
			return err
		}
		notices, err := s.notices(ctx, mid)
		if err != nil {
			return err
		}
		if err := send("objections", "user.privacy_preferences", toMessages(objs), "notices"); err != nil {
			return err
		}
		if err := send("notices", "user.privacy_preferences", toMessages(notices), "restrictions"); err != nil {
			return err
		}
		restriction, err := s.restriction(ctx, mid)
		if err != nil {
			return err
		}
		if err := send("restrictions", "user.privacy_preferences", restriction, "disclosures:"); err != nil {
			return err
		}
	}
	token := ""
	for {
		page, err := s.ListDisclosures(ctx, &sharingv1.ListDisclosuresRequest{Parent: "members/" + mid, PageSize: 500, PageToken: token})
		if err != nil {
			return err
		}
		if err := send("disclosures", "user.unique_id", toMessages(page.GetDisclosures()), "disclosures:"+page.GetNextPageToken()); err != nil {
			return err
		}
		if token = page.GetNextPageToken(); token == "" {
			return nil
		}
	}
}

func toMessages[T proto.Message](in []T) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}

// EraseSubjectData implements DataSubjectService: objections and notices are deleted;
// the disclosure log stays as a legal record with the member id replaced by the
// tombstone id (its hash chain does not cover the subject, so it still verifies).
// Sharing stays blocked by keyed hash. Idempotent by request id.
func (s *Server) EraseSubjectData(ctx context.Context, req *subjectv1.EraseSubjectDataRequest) (*subjectv1.EraseSubjectDataResponse, error) {
	mid, err := memberOf(req.GetSubject(), "subject")
	if err != nil {
		return nil, err
	}
	var v errs.Violations
	if req.GetRequestId() == "" {
		v.Add("request_id", "is required")
	}
	if !ids.Valid(req.GetTombstoneId()) {
		v.Add("tombstone_id", "is required: an opaque id of 8 to 64 lower-case letters and digits")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if err := legalhold.Refuse(ctx, s.Holds, mid, s.Logger); err != nil {
		return nil, err
	}
	var out *subjectv1.EraseSubjectDataResponse
	err = s.DB.InTx(ctx, func(tx *sql.Tx) error {
		var stored []byte
		if err := tx.QueryRowContext(ctx, `SELECT result FROM erasures WHERE request_id = $1`, req.GetRequestId()).Scan(&stored); err == nil {
			out = &subjectv1.EraseSubjectDataResponse{}
			if err := protojson.Unmarshal(stored, out); err != nil {
				return err
			}
			out.Replayed = true
			return nil
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		out = &subjectv1.EraseSubjectDataResponse{CompleteTime: timestamppb.New(s.now())}
		for _, d := range []struct{ dataset, table string }{{"objections", "objections"}, {"notices", "notices"}} {
			res, err := tx.ExecContext(ctx, `DELETE FROM `+d.table+` WHERE member_id = $1`, mid)
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			out.Results = append(out.Results, &subjectv1.CategoryResult{Dataset: d.dataset, Category: "user.privacy_preferences", Action: privacyv1.ErasureAction_ERASURE_ACTION_DELETE, Count: n})
		}
		if res, err := tx.ExecContext(ctx, `DELETE FROM restrictions WHERE member_id = $1`, mid); err != nil {
			return err
		} else if n, _ := res.RowsAffected(); n > 0 {
			out.Results = append(out.Results, &subjectv1.CategoryResult{Dataset: "restrictions", Category: "user.privacy_preferences", Action: privacyv1.ErasureAction_ERASURE_ACTION_DELETE, Count: n})
		}
		res, err := tx.ExecContext(ctx, `UPDATE disclosures SET subject = $1, request_id = NULL WHERE subject = $2`, req.GetTombstoneId(), mid)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		out.Results = append(out.Results, &subjectv1.CategoryResult{Dataset: "disclosures", Category: "user.unique_id", Action: privacyv1.ErasureAction_ERASURE_ACTION_RETAIN, Count: n, LegalBasis: LegalBasisDisclosures})
		if _, err := tx.ExecContext(ctx, `INSERT INTO blocks (member_hash, blocked_at) VALUES ($1, $2) ON CONFLICT (member_hash) DO NOTHING`, s.blockHash(mid), s.now().UnixMicro()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO erased_members (member_hash, erased_at) VALUES ($1, $2) ON CONFLICT (member_hash) DO NOTHING`, s.erasedHash(mid), s.now().UnixMicro()); err != nil {
			return err
		}
		raw, _ := protojson.Marshal(out)
		_, err = tx.ExecContext(ctx, `INSERT INTO erasures (request_id, result) VALUES ($1, $2)`, req.GetRequestId(), raw)
		return err
	})
	return out, err
}

// ReportSubjectData implements DataSubjectService. With tombstone_id it also counts the
// disclosure records retained under it, with their legal basis.
func (s *Server) ReportSubjectData(ctx context.Context, req *subjectv1.ReportSubjectDataRequest) (*subjectv1.ReportSubjectDataResponse, error) {
	mid, err := memberOf(req.GetSubject(), "subject")
	if err != nil {
		return nil, err
	}
	sets := []storage.Dataset{
		{Name: "objections", Category: "user.privacy_preferences", Count: `SELECT COUNT(*) FROM objections WHERE member_id = $1`},
		{Name: "notices", Category: "user.privacy_preferences", Count: `SELECT COUNT(*) FROM notices WHERE member_id = $1`},
		{Name: "restrictions", Category: "user.privacy_preferences", Count: `SELECT COUNT(*) FROM restrictions WHERE member_id = $1`},
		{Name: "disclosures", Category: "user.unique_id", Count: `SELECT COUNT(*) FROM disclosures WHERE subject = $1`},
	}
	args := []any{mid}
	if t := req.GetTombstoneId(); t != "" { // the log kept under the tombstone, with its legal basis
		sets = append(sets, storage.Dataset{Name: "disclosures", Category: "user.unique_id", LegalBasis: LegalBasisDisclosures, Count: `SELECT COUNT(*) FROM disclosures WHERE subject = $2`})
		args = append(args, t)
	}
	held, err := s.DB.Held(ctx, sets, args...) // one statement: one round trip, one snapshot
	if err != nil {
		return nil, err
	}
	out := &subjectv1.ReportSubjectDataResponse{}
	for _, h := range held {
		out.Held = append(out.Held, &subjectv1.HeldData{Dataset: h.Name, Category: h.Category, Count: h.Rows, LegalBasis: h.LegalBasis})
	}
	return out, nil
}

// VerifyTombstoneLog checks the chain of a log kept under a tombstone id (operators).
func (s *Server) VerifyTombstoneLog(ctx context.Context, tombstoneID string) (*sharingv1.VerifyDisclosureLogResponse, error) {
	return s.verifyChain(ctx, tombstoneID)
}

// restriction is the member's restriction of processing in force, if any, as the record
// that set it (with the privacy request that asked for it).
func (s *Server) restriction(ctx context.Context, mid string) ([]proto.Message, error) {
	var ref string
	err := s.DB.QueryRowContext(ctx, `SELECT reference FROM restrictions WHERE member_id = $1`, mid).Scan(&ref)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return []proto.Message{&sharingv1.SetProcessingRestrictionRequest{Member: "members/" + mid, Restricted: true, Reference: ref}}, nil
}
