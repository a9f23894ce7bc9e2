package prefs

import (
	"context"
	"database/sql"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
)

// historyChunk is how many viewing events one export message carries: the history is
// the export's bulk, so its messages are larger than other datasets' (~2,000 × 130 B).
const historyChunk = 2000

// plainJSON reports whether s can be written between JSON quotes as it is: printable
// ASCII without a quote or a backslash (what protojson also writes unescaped).
func plainJSON(s []byte) bool {
	for _, c := range s {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// appendViewingEvent appends the protojson form of one viewing event (the same fields,
// names and value formats: int64 as a string, the time as RFC 3339 in UTC, zero values
// left out) without reflection. ok is false when a string needs escaping; the caller
// then falls back to protojson.
func appendViewingEvent(buf []byte, member string, id, title []byte, at, duration int64, device []byte) (_ []byte, ok bool) {
	if !plainJSON(id) || !plainJSON(title) || !plainJSON(device) || !plainJSON([]byte(member)) {
		return buf, false
	}
	buf = append(buf, `{"name":"members/`...)
	buf = append(buf, member...)
	buf = append(buf, "/viewingEvents/"...)
	buf = append(buf, id...)
	buf = append(buf, '"')
	if len(title) > 0 {
		buf = append(buf, `,"titleId":"`...)
		buf = append(buf, title...)
		buf = append(buf, '"')
	}
	buf = append(buf, `,"viewTime":"`...)
	buf = appendTimestamp(buf, at)
	buf = append(buf, '"')
	if duration != 0 {
		buf = append(buf, `,"durationSeconds":"`...)
		buf = strconv.AppendInt(buf, duration, 10)
		buf = append(buf, '"')
	}
	if len(device) > 0 {
		buf = append(buf, `,"deviceType":"`...)
		buf = append(buf, device...)
		buf = append(buf, '"')
	}
	return append(buf, '}'), true
}

// appendTimestamp writes a google.protobuf.Timestamp as protojson does: RFC 3339 in UTC
// with 0, 3, 6 or 9 fractional digits.
func appendTimestamp(buf []byte, micros int64) []byte {
	t := time.UnixMicro(micros).UTC()
	buf = t.AppendFormat(buf, "2006-01-02T15:04:05")
	if ns := t.Nanosecond(); ns != 0 {
		frac := strconv.AppendInt(nil, int64(ns)+1e9, 10)[1:] // nine digits
		switch {
		case ns%1e6 == 0:
			frac = frac[:3]
		case ns%1e3 == 0:
			frac = frac[:6]
		}
		buf = append(buf, '.')
		buf = append(buf, frac...)
	}
	return append(buf, 'Z')
}

// readHistory is the viewing-history dataset of an export: one query in keyset order
// from cursor c, emitted historyChunk events at a time with the cursor after each chunk.
// Records are encoded into one buffer per chunk, so memory stays flat however long the
// history and a chunk costs two allocations, not several per record.
func readHistory(ctx context.Context, s *Server, member string, c cursor, emit func([][]byte, *cursor) error) error {
	rows, err := s.DB.QueryContext(ctx, `SELECT `+eventCols+` FROM viewing_events
		WHERE owner = $1 AND view_time <= $2 AND (view_time < $2 OR id < $3) ORDER BY view_time DESC, id DESC`, member, c.ts, c.id)
	if err != nil {
		return err
	}
	defer rows.Close()
	recs := make([][]byte, 0, historyChunk)
	buf := make([]byte, 0, historyChunk*160)
	var id, title, device sql.RawBytes
	var at, duration int64
	for rows.Next() {
		if err := rows.Scan(&id, &title, &at, &duration, &device); err != nil {
			return err
		}
		start := len(buf)
		var ok bool
		if buf, ok = appendViewingEvent(buf, member, id, title, at, duration, device); !ok {
			rec, err := protojson.Marshal(&preferencesv1.ViewingEvent{Name: "members/" + member + "/viewingEvents/" + string(id), TitleId: string(title),
				ViewTime: ts(at), DurationSeconds: duration, DeviceType: string(device)})
			if err != nil {
				return err
			}
			buf = append(buf, rec...)
		}
		recs = append(recs, buf[start:len(buf):len(buf)])
		if len(recs) == historyChunk {
			if err := emit(recs, &cursor{at, string(id)}); err != nil {
				return err
			}
			// A sent message must not change (stats handlers may read it later): each
			// chunk gets fresh buffers, and the sent one is garbage once delivered.
			recs, buf = make([][]byte, 0, historyChunk), make([]byte, 0, historyChunk*160)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return emit(recs, nil)
}
