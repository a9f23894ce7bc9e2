package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// printJSON writes a message as indented protojson (the gateway's JSON), for scripts.
func printJSON(w io.Writer, m proto.Message) error {
	raw, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(raw))
	return err
}

// table writes aligned columns; the first row is the header.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = strings.ReplaceAll(strings.ReplaceAll(c, "\t", " "), "\n", " ")
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// ts formats a timestamp in UTC to the minute, or "-" when unset.
func ts(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().UTC().Format("2006-01-02 15:04:05Z")
}

// short turns "REQUEST_STATE_IN_PROGRESS" into "in_progress" given the prefix.
func short(enum, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(enum, prefix))
}

// until says how long until t (negative: overdue), in days and hours.
func until(t *timestamppb.Timestamp, now time.Time) string {
	if t == nil {
		return "-"
	}
	d := t.AsTime().Sub(now)
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	days := int(d.Hours()) / 24
	hours := int(d.Hours()) % 24
	return fmt.Sprintf("%s%dd%02dh", sign, days, hours)
}
