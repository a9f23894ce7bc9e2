package prefs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	privacyv1 "lethe.dev/gen/lethe/privacy/v1"
	subjectv1 "lethe.dev/gen/lethe/subject/v1"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/storage"
)

// exportChunk is how many records one export message carries.
const exportChunk = 500

// dataset is one file of a member's export.
type dataset struct {
	name, category string
	// read emits the dataset's records after cursor c, calling emit per chunk with the
	// cursor that resumes after it.
	read func(ctx context.Context, s *Server, member string, c cursor, emit func(records [][]byte, next *cursor) error) error
}

func single(get func(ctx context.Context, s *Server, member string) (proto.Message, error)) func(context.Context, *Server, string, cursor, func([][]byte, *cursor) error) error {
	return func(ctx context.Context, s *Server, member string, _ cursor, emit func([][]byte, *cursor) error) error {
		m, err := get(ctx, s, member)
		if err != nil {
			return err
		}
		rec, _ := protojson.Marshal(m)
		return emit([][]byte{rec}, nil)
	}
}

var datasets = []dataset{
	{"communication_preferences", "user.privacy_preferences", single(func(ctx context.Context, s *Server, m string) (proto.Message, error) {
		return s.loadComm(ctx, s.DB, m)
	})},
	{"consent_records", "user.privacy_preferences", func(ctx context.Context, s *Server, m string, c cursor, emit func([][]byte, *cursor) error) error {
		for {
			resp, err := s.ListConsentRecords(ctx, &preferencesv1.ListConsentRecordsRequest{Parent: "members/" + m, PageSize: exportChunk, PageToken: tokenOf(c)})
			if err != nil {
				return err
			}
			var recs [][]byte
			for _, r := range resp.GetConsentRecords() {
				b, _ := protojson.Marshal(r)
				recs = append(recs, b)
			}
			next, _ := decodeOptional(resp.GetNextPageToken())
			if err := emit(recs, next); err != nil || next == nil {
				return err
			}
			c = *next
		}
	}},
	{"ad_preferences", "user.privacy_preferences", single(func(ctx context.Context, s *Server, m string) (proto.Message, error) {
		// The member's own choices as stored, and whether a restriction of processing
		// overrides them now.
		a, err := s.loadAds(ctx, s.DB, m)
		if err != nil {
			return nil, err
		}
		a.ProcessingRestricted, err = restricted(ctx, s.DB, m)
		return a, err
	})},
	{"profile_visibility", "user.privacy_preferences", single(func(ctx context.Context, s *Server, m string) (proto.Message, error) {
		return s.loadVisibility(ctx, s.DB, m)
	})},
	{"social_connections", "user.social", single(func(ctx context.Context, s *Server, m string) (proto.Message, error) {
		return s.ListSocialConnections(ctx, &preferencesv1.ListSocialConnectionsRequest{Parent: "members/" + m})
	})},
	{"viewing_history", "user.behavior.media_consumption", readHistory},
	{"ratings", "user.behavior.media_consumption", func(ctx context.Context, s *Server, m string, c cursor, emit func([][]byte, *cursor) error) error {
		for {
			recs := make([][]byte, 0, exportChunk)
			next, err := s.ratingPage(ctx, m, c, exportChunk, func(r *preferencesv1.Rating) error {
				b, err := protojson.Marshal(r)
				recs = append(recs, b)
				return err
			})
			if err != nil {
				return err
			}
			if err := emit(recs, next); err != nil || next == nil {
				return err
			}
			c = *next
		}
	}},
	// Appended last: an export cursor names its dataset by position, so a new dataset
	// never moves the ones before it (an export in flight resumes where it was).
	{"social_posts", "user.social", single(func(ctx context.Context, s *Server, m string) (proto.Message, error) {
		return s.ListSocialPosts(ctx, &preferencesv1.ListSocialPostsRequest{Parent: "members/" + m})
	})},
	// The restriction of processing in force, with the request that asked for it (none:
	// no record; ad_preferences.processing_restricted says the same as a flag).
	{"processing_restriction", "user.privacy_preferences", func(ctx context.Context, s *Server, m string, _ cursor, emit func([][]byte, *cursor) error) error {
		var ref string
		err := s.DB.QueryRowContext(ctx, `SELECT reference FROM processing_restrictions WHERE member_id = $1`, m).Scan(&ref)
		if errors.Is(err, sql.ErrNoRows) {
			return emit(nil, nil)
		}
		if err != nil {
			return err
		}
		rec, _ := protojson.Marshal(&preferencesv1.SetProcessingRestrictionRequest{Name: "members/" + m + adSuffix, Restricted: true, Reference: ref})
		return emit([][]byte{rec}, nil)
	}},
}

func tokenOf(c cursor) string {
	if c.id == "" && c.ts == 0 {
		return ""
	}
	return c.encode()
}

func decodeOptional(tok string) (*cursor, error) {
	if tok == "" {
		return nil, nil
	}
	c, err := decodeCursor(tok)
	return &c, err
}

// ExportSubjectData implements DataSubjectService. The cursor is
// "{dataset index}.{keyset cursor}", so a resumed export continues inside the dataset it
// stopped in; memory stays flat because every dataset is read a page at a time.
func (s *Server) ExportSubjectData(req *subjectv1.ExportSubjectDataRequest, stream subjectv1.DataSubjectService_ExportSubjectDataServer) error {
	ctx := stream.Context()
	id, err := member(req.GetSubject(), "", "subject")
	if err != nil {
		return err
	}
	start, inner := 0, cursor{}
	if c := req.GetCursor(); c != "" {
		a, b, _ := strings.Cut(c, ".")
		n, err := strconv.Atoi(a)
		if err != nil || n < 0 || n > len(datasets) {
			return errs.Invalid(errs.FieldViolation{Field: "cursor", Description: "is not a cursor this service issued"})
		}
		start = n
		if b != "" {
			if inner, err = decodeCursor(b); err != nil {
				return err
			}
		}
	}
	for i := start; i < len(datasets); i++ {
		d := datasets[i]
		c := cursor{ts: 1<<63 - 1}
		if i == start && inner.id != "" {
			c = inner
		}
		sent := false
		err := d.read(ctx, s, id, c, func(records [][]byte, next *cursor) error {
			cur := strconv.Itoa(i+1) + "."
			if next != nil {
				cur = strconv.Itoa(i) + "." + next.encode()
			}
			if len(records) == 0 && sent {
				return nil
			}
			sent = true
			return stream.Send(&subjectv1.ExportSubjectDataResponse{Dataset: d.name, Category: d.category, SchemaVersion: 1, Records: records, Cursor: cur})
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// erasureResult is stored per member so a repeated erasure replays it.
type erasureResult struct {
	Results []*subjectv1.CategoryResult
	Time    time.Time
}

// EraseSubjectData implements DataSubjectService: choices, consent records, ad settings,
// visibility and social connections are deleted and the member's data key is destroyed
// (the sealed values left in database pages, WAL or backups are unreadable). Viewing
// history and ratings are anonymized, not pseudonymized: every row gets its own fresh
// random owner and id (no pseudonym shared between rows, nothing the member's export
// named), timestamps are coarsened to the day and idempotency keys dropped, so the title
// statistics stay exact while the rows can no longer be linked to each other or to the
// member.
func (s *Server) EraseSubjectData(ctx context.Context, req *subjectv1.EraseSubjectDataRequest) (*subjectv1.EraseSubjectDataResponse, error) {
	id, err := member(req.GetSubject(), "", "subject")
	if err != nil {
		return nil, err
	}
	if req.GetRequestId() == "" {
		return nil, errs.Invalid(errs.FieldViolation{Field: "request_id", Description: "is required"})
	}
	// An erasure already under way stops here when the member's data was put on legal
	// hold meanwhile; fulfillment's workflow waits for the release and asks again.
	if err := s.refuseHeld(ctx, id); err != nil {
		return nil, err
	}
	var out *subjectv1.EraseSubjectDataResponse
	err = s.DB.InTx(ctx, func(tx *sql.Tx) error {
		if stored, done, err := replay(ctx, tx, req.GetRequestId(), "erase"); err != nil {
			return err
		} else if done {
			var r struct {
				Results []json.RawMessage
				Time    time.Time
			}
			if err := json.Unmarshal(stored, &r); err != nil {
				return err
			}
			out = &subjectv1.EraseSubjectDataResponse{Replayed: true, CompleteTime: timestamppb.New(r.Time)}
			for _, raw := range r.Results {
				var cr subjectv1.CategoryResult
				if err := protojson.Unmarshal(raw, &cr); err != nil {
					return err
				}
				out.Results = append(out.Results, &cr)
			}
			return nil
		}
		var results []*subjectv1.CategoryResult
		del := privacyv1.ErasureAction_ERASURE_ACTION_DELETE
		for _, d := range []struct{ dataset, category, table, col string }{
			{"communication_preferences", "user.privacy_preferences", "subscriptions", "member_id"},
			{"consent_records", "user.privacy_preferences", "consent_records", "member_id"},
			{"ad_preferences", "user.privacy_preferences", "ad_preferences", "member_id"},
			{"profile_visibility", "user.privacy_preferences", "profile_visibility", "member_id"},
			{"social_connections", "user.social", "social_connections", "member_id"},
			{"social_posts", "user.social", "social_posts", "member_id"},
		} {
			res, err := tx.ExecContext(ctx, `DELETE FROM `+d.table+` WHERE `+d.col+` = $1`, id)
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			results = append(results, &subjectv1.CategoryResult{Dataset: d.dataset, Category: d.category, Action: del, Count: n})
		}
		// "anon_" owners are never valid member ids; each row draws its own.
		rnd := s.randomID()
		for _, d := range []struct{ dataset, q string }{
			{"viewing_history", `UPDATE viewing_events SET id = ` + rnd + `, owner = 'anon_' || ` + rnd + `, view_time = view_time - (view_time % ` + dayMicros + `), request_id = NULL WHERE owner = $1`},
			{"ratings", `UPDATE ratings SET owner = 'anon_' || ` + rnd + `, updated_at = updated_at - (updated_at % ` + dayMicros + `) WHERE owner = $1`},
		} {
			res, err := tx.ExecContext(ctx, d.q, id)
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			results = append(results, &subjectv1.CategoryResult{Dataset: d.dataset, Category: "user.behavior.media_consumption", Action: privacyv1.ErasureAction_ERASURE_ACTION_ANONYMIZE, Count: n})
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM processing_restrictions WHERE member_id = $1`, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM request_log WHERE member_id = $1`, id); err != nil {
			return err
		}
		now := s.now()
		raws := make([]json.RawMessage, len(results))
		for i, r := range results {
			raws[i], _ = protojson.Marshal(r)
		}
		stored, _ := json.Marshal(struct {
			Results []json.RawMessage
			Time    time.Time
		}{raws, now})
		if _, err := tx.ExecContext(ctx, `INSERT INTO erased_members (member_hash, erased_at) VALUES ($1, $2) ON CONFLICT (member_hash) DO NOTHING`, erasedHash(id), now.UnixMicro()); err != nil {
			return err
		}
		// The log row keeps only the request id: its member_id is the tombstone id.
		if err := logRequest(ctx, tx, req.GetRequestId(), req.GetTombstoneId(), "erase", stored, now); err != nil {
			return err
		}
		out = &subjectv1.EraseSubjectDataResponse{Results: results, CompleteTime: timestamppb.New(now)}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The key goes after the rows (a replay destroys nothing more); Destroy also
	// checkpoints SQLite's WAL, which still held the deleted rows.
	if _, err := s.Keys.Destroy(ctx, id); err != nil {
		return nil, err
	}
	return out, nil
}

// ReportSubjectData implements DataSubjectService.
func (s *Server) ReportSubjectData(ctx context.Context, req *subjectv1.ReportSubjectDataRequest) (*subjectv1.ReportSubjectDataResponse, error) {
	id, err := member(req.GetSubject(), "", "subject")
	if err != nil {
		return nil, err
	}
	held, err := s.DB.Held(ctx, []storage.Dataset{ // one statement: one round trip, one snapshot
		{Name: "communication_preferences", Category: "user.privacy_preferences", Count: `SELECT COUNT(*) FROM subscriptions WHERE member_id = $1`},
		{Name: "consent_records", Category: "user.privacy_preferences", Count: `SELECT COUNT(*) FROM consent_records WHERE member_id = $1`},
		{Name: "ad_preferences", Category: "user.privacy_preferences", Count: `SELECT COUNT(*) FROM ad_preferences WHERE member_id = $1`},
		{Name: "profile_visibility", Category: "user.privacy_preferences", Count: `SELECT COUNT(*) FROM profile_visibility WHERE member_id = $1`},
		{Name: "social_connections", Category: "user.social", Count: `SELECT COUNT(*) FROM social_connections WHERE member_id = $1`},
		{Name: "social_posts", Category: "user.social", Count: `SELECT COUNT(*) FROM social_posts WHERE member_id = $1`},
		{Name: "viewing_history", Category: "user.behavior.media_consumption", Count: `SELECT COUNT(*) FROM viewing_events WHERE owner = $1`},
		{Name: "ratings", Category: "user.behavior.media_consumption", Count: `SELECT COUNT(*) FROM ratings WHERE owner = $1`},
		{Name: "request_log", Category: "user.unique_id", Count: `SELECT COUNT(*) FROM request_log WHERE member_id = $1`},
		{Name: "processing_restrictions", Category: "user.privacy_preferences", Count: `SELECT COUNT(*) FROM processing_restrictions WHERE member_id = $1`},
	}, id)
	if err != nil {
		return nil, err
	}
	out := &subjectv1.ReportSubjectDataResponse{}
	for _, h := range held {
		out.Held = append(out.Held, &subjectv1.HeldData{Dataset: h.Name, Category: h.Category, Count: h.Rows})
	}
	return out, nil
}

// dayMicros is one day in the microseconds timestamps are stored in.
const dayMicros = "86400000000"

// randomID is an SQL expression giving a fresh random 32-hex-digit id per row.
func (s *Server) randomID() string {
	if s.DB.Dialect == storage.Postgres {
		return `replace(gen_random_uuid()::text, '-', '')`
	}
	return `lower(hex(randomblob(16)))`
}
