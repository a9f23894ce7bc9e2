package grpcapi

import (
	"context"

	"google.golang.org/protobuf/encoding/protojson"

	"lethe.dev/services/fulfillment/internal/request"
)

// ExportOwn implements request.OwnData: fulfillment's own records of the member, for
// their access archive (fulfillment/{dataset}.json), as the API shows them to the
// member — every privacy request (a rectification with the value the member asserted
// and their statement; denials with reason; objections and restrictions with their
// target and lift time) and every complaint. Per-member legal holds are not included:
// a hold may rest on an order whose disclosure to the member is restricted (GDPR
// Art. 23), so whether one exists is not disclosed (docs/portability.md).
func (s *Server) ExportOwn(ctx context.Context, memberID string) ([]request.OwnDataset, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT `+reqCols+` FROM requests WHERE member_id = $1 ORDER BY created_at, id`, memberID)
	if err != nil {
		return nil, err
	}
	reqs := request.OwnDataset{Name: "privacy_requests", Category: "user.privacy_preferences"}
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		rec, _ := protojson.Marshal(r.pr)
		reqs.Records = append(reqs.Records, rec)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := []request.OwnDataset{reqs}
	if s.Complaints != nil {
		cs := request.OwnDataset{Name: "complaints", Category: "user.content"}
		for offset := 0; ; offset += 100 {
			page, next, err := s.Complaints.List(ctx, memberID, 100, offset)
			if err != nil {
				return nil, err
			}
			for _, c := range page {
				rec, _ := protojson.Marshal(c)
				cs.Records = append(cs.Records, rec)
			}
			if next == "" {
				break
			}
		}
		out = append(out, cs)
	}
	return out, nil
}
