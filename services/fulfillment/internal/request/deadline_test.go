package request_test

import (
	"testing"
	"time"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	"lethe.dev/services/fulfillment/internal/request"
)

func day(s string) time.Time {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestDeadlineRules(t *testing.T) {
	cases := []struct {
		j                  fulfillmentv1.Jurisdiction
		received, due, ext string // ext "" = no extension allowed
	}{
		{fulfillmentv1.Jurisdiction_JURISDICTION_POLICY, "2026-11-24", "2026-12-24", ""},
		{fulfillmentv1.Jurisdiction_JURISDICTION_UNSPECIFIED, "2026-01-31", "2026-03-02", ""},
		{fulfillmentv1.Jurisdiction_JURISDICTION_GDPR, "2026-01-31", "2026-02-28", "2026-04-30"},
		{fulfillmentv1.Jurisdiction_JURISDICTION_GDPR, "2026-11-24", "2026-12-24", "2027-02-24"},
		{fulfillmentv1.Jurisdiction_JURISDICTION_CCPA, "2026-11-24", "2027-01-08", "2027-02-22"},
	}
	for _, tc := range cases {
		r := request.RuleFor(tc.j)
		due := r.Due(day(tc.received))
		if !due.Equal(day(tc.due)) {
			t.Errorf("%v received %s: due %s, want %s", tc.j, tc.received, due.Format("2006-01-02"), tc.due)
		}
		if (r.Extend == nil) != (tc.ext == "") {
			t.Errorf("%v: extension allowed = %v", tc.j, r.Extend != nil)
			continue
		}
		if r.Extend != nil && !r.Extend(day(tc.received), due).Equal(day(tc.ext)) {
			t.Errorf("%v: extended to %s, want %s", tc.j, r.Extend(day(tc.received), due).Format("2006-01-02"), tc.ext)
		}
	}
	// CCPA: receipt confirmed within 10 business days (Tue 24 Nov 2026 → Tue 8 Dec).
	if got := request.RuleFor(fulfillmentv1.Jurisdiction_JURISDICTION_CCPA).AcknowledgeBy(day("2026-11-24")); !got.Equal(day("2026-12-08")) {
		t.Errorf("CCPA acknowledgement by %s", got.Format("2006-01-02"))
	}
}
