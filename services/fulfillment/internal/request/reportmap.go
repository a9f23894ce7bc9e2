package request

import (
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/reflect/protoregistry"

	privacyv1 "lethe.dev/gen/lethe/privacy/v1"
	"lethe.dev/platform/classify"
)

// The access report's pages are generated from the privacy classification of every API
// field (lethe.privacy.v1.field: fideslang category, erasure action, legal basis — the
// same data map `make datamap` checks): per system, the categories of member data its API
// carries, and for each what it is, why it is held, where it came from and how long it is
// kept. Only the vocabulary below is written by hand: what each fideslang category means
// in plain language, never what a system does.

// categoryText is a fideslang category in plain language: what it is, why we hold it,
// where it comes from. A sub-category without an entry uses its parent's.
var categoryText = map[string]struct{ What, Why, Source string }{
	"user":                            {"Data about you", "To provide the service to you.", "You, and your use of the service."},
	"user.unique_id":                  {"Your account's identifier", "To link your data to your account.", "Assigned by us when you signed up."},
	"user.name":                       {"Your name", "To run your account and address you.", "You."},
	"user.contact":                    {"Your contact details", "To run your account and send you the messages you chose.", "You."},
	"user.contact.email":              {"Your email address", "To sign you in, and to send you account messages and the mail you chose.", "You."},
	"user.contact.phone_number":       {"Your phone number", "To contact you about your account.", "You."},
	"user.contact.address":            {"Your postal address", "To bill you and send you post you asked for.", "You."},
	"user.demographic":                {"Facts about you, such as your date of birth", "To check you are old enough to use the service.", "You."},
	"user.financial":                  {"A reference to your payment method", "To take payment for the service.", "You, through our payment processor."},
	"user.account":                    {"Your account's state and history", "To run your account.", "Our records of your account."},
	"user.authorization":              {"Your sign-in credentials (stored hashed)", "To sign you in securely.", "You."},
	"user.device":                     {"Your devices and sessions", "To keep you signed in and let you remove a device.", "Your devices, when you sign in or watch."},
	"user.behavior":                   {"What you do on the service", "To personalize recommendations and keep your history for you.", "Your use of the service."},
	"user.behavior.media_consumption": {"What you watched and how you rated it", "To keep your history, recommend titles and compute anonymous statistics.", "Your use of the service."},
	"user.privacy_preferences":        {"Your privacy and communication choices", "To respect your choices, and to prove we did.", "You, your browser's Global Privacy Control signal, and links in our emails."},
	"user.social":                     {"Your connected social accounts and what they were given", "To post to a network only what you chose to share.", "You, when you connected a network."},
	"user.content":                    {"What you wrote to us", "To handle your request or complaint.", "You."},
	"user.location":                   {"Where you are", "To apply the law of your place of residence.", "You, or your connection."},
}

// systemTitles name the systems for a reader.
var systemTitles = map[string]string{
	"identity": "Your account", "preferences": "Your choices and your viewing",
	"sharing": "Who received your data", "fulfillment": "Your privacy requests",
}

// ReportSystems are the systems the report has a page for.
var ReportSystems = []string{"identity", "preferences", "sharing", "fulfillment"}

type reportCategory struct {
	Category, What, Why, Source, Retention string
}

func categoryWords(c string) (what, why, source string) {
	for k := c; k != ""; {
		if t, ok := categoryText[k]; ok {
			return t.What, t.Why, t.Source
		}
		i := strings.LastIndex(k, ".")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return c, "To provide the service to you.", "You, and your use of the service."
}

// retentionWords says how long a category is kept, from the erasure actions and legal
// bases its fields carry in the data map.
func retentionWords(actions map[privacyv1.ErasureAction]bool, bases []string) string {
	var parts []string
	if actions[privacyv1.ErasureAction_ERASURE_ACTION_DELETE] {
		parts = append(parts, "deleted when your account is erased")
	}
	if actions[privacyv1.ErasureAction_ERASURE_ACTION_ANONYMIZE] {
		parts = append(parts, "anonymized when your account is erased (kept only in statistics, with no link to you)")
	}
	if actions[privacyv1.ErasureAction_ERASURE_ACTION_RETAIN] {
		parts = append(parts, "kept after erasure, without your name or contact details, as a legal record ("+strings.Join(bases, "; ")+")")
	}
	if len(parts) == 0 {
		return "While your account exists."
	}
	return "While your account exists; " + strings.Join(parts, "; ") + "."
}

// systemCategories is one system's member-data categories from the data map. The map
// comes from the protos compiled in, so it is worked out once per system and process
// (walking every registered proto took ~5 ms of each export's archive step).
func systemCategories(system string) []reportCategory {
	if c, ok := categoriesBySystem.Load(system); ok {
		return c.([]reportCategory)
	}
	c, _ := categoriesBySystem.LoadOrStore(system, buildSystemCategories(system))
	return c.([]reportCategory)
}

// categoriesBySystem holds systemCategories' answers (read only once stored).
var categoriesBySystem sync.Map

func buildSystemCategories(system string) []reportCategory {
	prefix := "lethe." + system + ".v1."
	type agg struct {
		actions map[privacyv1.ErasureAction]bool
		bases   []string
	}
	by := map[string]*agg{}
	for _, e := range classify.Inventory(protoregistry.GlobalFiles) {
		if !e.MemberData || !strings.HasPrefix(e.Field, prefix) {
			continue
		}
		a := by[e.Category]
		if a == nil {
			a = &agg{actions: map[privacyv1.ErasureAction]bool{}}
			by[e.Category] = a
		}
		a.actions[e.Erasure] = true
		if e.LegalBasis != "" && !slices.Contains(a.bases, e.LegalBasis) {
			a.bases = append(a.bases, e.LegalBasis)
		}
	}
	out := make([]reportCategory, 0, len(by))
	for c, a := range by {
		slices.Sort(a.bases)
		what, why, source := categoryWords(c)
		out = append(out, reportCategory{Category: c, What: what, Why: why, Source: source, Retention: retentionWords(a.actions, a.bases)})
	}
	slices.SortFunc(out, func(x, y reportCategory) int { return strings.Compare(x.Category, y.Category) })
	return out
}
