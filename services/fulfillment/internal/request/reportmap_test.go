package request

import (
	"strings"
	"testing"
)

// TestReportPagesComeFromTheDataMap: each system's page lists the categories its API
// fields are classified with, and their retention follows the fields' erasure actions.
func TestReportPagesComeFromTheDataMap(t *testing.T) {
	find := func(system, category string) reportCategory {
		for _, c := range systemCategories(system) {
			if c.Category == category {
				return c
			}
		}
		t.Fatalf("%s: no %s in %v", system, category, systemCategories(system))
		return reportCategory{}
	}
	if c := find("identity", "user.contact.email"); c.What != "Your email address" || !strings.Contains(c.Retention, "deleted when your account is erased") {
		t.Errorf("identity email: %+v", c)
	}
	if c := find("preferences", "user.behavior.media_consumption"); !strings.Contains(c.Retention, "anonymized") {
		t.Errorf("preferences viewing: %+v", c)
	}
	if c := find("fulfillment", "user.unique_id"); !strings.Contains(c.Retention, "kept after erasure") || !strings.Contains(c.Retention, "record of") {
		t.Errorf("fulfillment ids: %+v", c)
	}
	for _, c := range systemCategories("sharing") {
		if !strings.HasPrefix(c.Category, "user") {
			t.Errorf("sharing page lists non-member data %s", c.Category)
		}
	}
}
