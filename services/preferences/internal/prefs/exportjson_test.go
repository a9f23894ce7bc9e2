package prefs

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
)

// TestViewingEventJSONMatchesProtojson: the export's hand-written encoder writes exactly
// what protojson writes (whitespace aside), for every shape of value it takes on.
func TestViewingEventJSONMatchesProtojson(t *testing.T) {
	base := time.Date(2024, 2, 29, 23, 59, 58, 0, time.UTC).UnixMicro()
	cases := []struct {
		name          string
		at, duration  int64
		title, device string
	}{
		{"whole second", base, 60, "title-1", "tv"},
		{"milliseconds", base + 120_000, 1, "a_b-C", "mobile"},
		{"microseconds", base + 123_456, 7 * 24 * 3600, "x", "web"},
		{"zero duration, no device", base, 0, "t", ""},
		{"before 1970", -1_500_000, 5, "old", "vcr"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := appendViewingEvent(nil, "m0000001", []byte("e1"), []byte(c.title), c.at, c.duration, []byte(c.device))
			if !ok {
				t.Fatal("plain values refused")
			}
			want, err := protojson.Marshal(&preferencesv1.ViewingEvent{Name: "members/m0000001/viewingEvents/e1", TitleId: c.title, ViewTime: ts(c.at), DurationSeconds: c.duration, DeviceType: c.device})
			if err != nil {
				t.Fatal(err)
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, want); err != nil {
				t.Fatal(err)
			}
			if string(got) != compact.String() {
				t.Fatalf("got  %s\nwant %s", got, compact.String())
			}
		})
	}
	if _, ok := appendViewingEvent(nil, "m0000001", []byte("e1"), []byte("t"), base, 1, []byte("tv \"4k\"")); ok {
		t.Fatal("a value that needs escaping was written raw")
	}
}
