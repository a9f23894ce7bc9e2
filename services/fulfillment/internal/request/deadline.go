package request

import (
	"time"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
)

// Rule is a jurisdiction's deadline rule.
type Rule struct {
	// Due computes the answer deadline from the receipt time.
	Due func(received time.Time) time.Time
	// Extend computes the extended deadline; nil when no extension is allowed.
	Extend func(received, due time.Time) time.Time
	// ExtendBy is the latest time an extension may be made (with notice to the member).
	ExtendBy func(received, due time.Time) time.Time
	// AcknowledgeBy is when receipt must be confirmed (zero: no separate rule).
	AcknowledgeBy func(received time.Time) time.Time
}

// Rules are the deadline rules per jurisdiction: the policy's 30 days; GDPR Art. 12(3)
// one month, extendable by two further months if the member is told within the first
// month; CCPA 45 days, extendable once by 45 with notice within the first 45, receipt
// confirmed within 10 business days.
var Rules = map[fulfillmentv1.Jurisdiction]Rule{
	fulfillmentv1.Jurisdiction_JURISDICTION_POLICY: {
		Due: func(r time.Time) time.Time { return r.AddDate(0, 0, 30) },
	},
	fulfillmentv1.Jurisdiction_JURISDICTION_GDPR: {
		Due:      func(r time.Time) time.Time { return addMonths(r, 1) },
		Extend:   func(r, _ time.Time) time.Time { return addMonths(r, 3) },
		ExtendBy: func(r, _ time.Time) time.Time { return addMonths(r, 1) },
	},
	fulfillmentv1.Jurisdiction_JURISDICTION_CCPA: {
		Due:           func(r time.Time) time.Time { return r.AddDate(0, 0, 45) },
		Extend:        func(_, due time.Time) time.Time { return due.AddDate(0, 0, 45) },
		ExtendBy:      func(_, due time.Time) time.Time { return due },
		AcknowledgeBy: func(r time.Time) time.Time { return addBusinessDays(r, 10) },
	},
}

// RuleFor returns the rule of j; unspecified means the policy's rule.
func RuleFor(j fulfillmentv1.Jurisdiction) Rule {
	if r, ok := Rules[j]; ok {
		return r
	}
	return Rules[fulfillmentv1.Jurisdiction_JURISDICTION_POLICY]
}

// addMonths adds calendar months, clamping to the month's last day (31 Jan + 1 month =
// 28/29 Feb), as GDPR's "one month" is read.
func addMonths(t time.Time, n int) time.Time {
	y, m, d := t.Date()
	first := time.Date(y, m+time.Month(n), 1, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), t.Location())
	last := first.AddDate(0, 1, -1).Day()
	if d > last {
		d = last
	}
	return time.Date(first.Year(), first.Month(), d, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), t.Location())
}

func addBusinessDays(t time.Time, n int) time.Time {
	for n > 0 {
		t = t.AddDate(0, 0, 1)
		if wd := t.Weekday(); wd != time.Saturday && wd != time.Sunday {
			n--
		}
	}
	return t
}
