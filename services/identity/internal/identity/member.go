// Package identity is the identity domain: members and their encrypted personal data,
// sign-in with device sessions, one-time verification codes, child reports and erasure.
package identity

import (
	"net/mail"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"lethe.dev/platform/errs"
)

// State is an account's state; values match lethe.identity.v1.MemberState.
type State int

// Account states.
const (
	StateActive        State = 1
	StateDisabled      State = 2
	StateChildReported State = 3
	StateErased        State = 4
)

// Address is a postal address.
type Address struct {
	RegionCode   string   `json:"region_code,omitempty"`
	PostalCode   string   `json:"postal_code,omitempty"`
	Locality     string   `json:"locality,omitempty"`
	AddressLines []string `json:"address_lines,omitempty"`
}

// PII is every personal field of a member. It is stored only as one ciphertext under
// the member's data key.
type PII struct {
	FullName   string   `json:"full_name"`
	Email      string   `json:"email"`
	Phone      string   `json:"phone,omitempty"`
	Address    *Address `json:"address,omitempty"`
	BirthDate  string   `json:"birth_date"`
	PaymentRef string   `json:"payment_ref,omitempty"`
}

// Member is an account.
type Member struct {
	ID      string
	State   State
	PII     PII
	Version int64
	Created time.Time
	Updated time.Time
}

// Fields the update mask may name.
var updatableFields = map[string]bool{
	"full_name": true, "email": true, "phone_number": true, "postal_address": true,
	"birth_date": true, "payment_method_ref": true,
}

const (
	maxName     = 200
	maxLine     = 200
	maxLines    = 4
	maxRef      = 200
	minPassword = 10
	maxPassword = 1024
	minimumAge  = 18
	maxEmailLen = 254
)

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

// NormalizeEmail is the form emails are compared and indexed in: Unicode NFKC, trimmed,
// lower-cased.
func NormalizeEmail(s string) string {
	return strings.ToLower(strings.TrimSpace(norm.NFKC.String(s)))
}

// validEmail checks a normalized email.
func validEmail(s string) bool {
	if s == "" || len(s) > maxEmailLen || !utf8.ValidString(s) {
		return false
	}
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && a.Name == "" && strings.Contains(s[strings.LastIndex(s, "@")+1:], ".")
}

// Validate checks personal data; prefix is the proto path of the member message (e.g.
// "member"). Violations never echo values. now decides the age check.
func (p *PII) Validate(prefix string, now time.Time, fields map[string]bool) errs.Violations {
	var v errs.Violations
	check := func(f string) bool { return fields == nil || fields[f] }
	if check("full_name") {
		if n := utf8.RuneCountInString(strings.TrimSpace(p.FullName)); n == 0 || n > maxName {
			v.Add(prefix+".full_name", "is required and at most 200 characters")
		}
	}
	if check("email") && !validEmail(p.Email) {
		v.Add(prefix+".email", "must be a valid email address")
	}
	if check("phone_number") && p.Phone != "" && !e164.MatchString(p.Phone) {
		v.Add(prefix+".phone_number", "must be in E.164 form, e.g. +14155550100")
	}
	if check("birth_date") {
		d, err := time.Parse("2006-01-02", p.BirthDate)
		switch {
		case err != nil:
			v.Add(prefix+".birth_date", "must be a date in YYYY-MM-DD form")
		case d.After(now):
			v.Add(prefix+".birth_date", "must not be in the future")
		case d.AddDate(minimumAge, 0, 0).After(now):
			v.Add(prefix+".birth_date", "members must be 18 or older")
		}
	}
	if check("payment_method_ref") && utf8.RuneCountInString(p.PaymentRef) > maxRef {
		v.Add(prefix+".payment_method_ref", "must be at most 200 characters")
	}
	if check("postal_address") && p.Address != nil {
		a := p.Address
		if len(a.AddressLines) > maxLines {
			v.Add(prefix+".postal_address.address_lines", "at most 4 lines")
		}
		for _, l := range a.AddressLines {
			if utf8.RuneCountInString(l) > maxLine {
				v.Add(prefix+".postal_address.address_lines", "each line at most 200 characters")
				break
			}
		}
		if len(a.RegionCode) != 0 && (len(a.RegionCode) != 2 || strings.ToUpper(a.RegionCode) != a.RegionCode) {
			v.Add(prefix+".postal_address.region_code", "must be a two-letter CLDR region code, e.g. US")
		}
		if utf8.RuneCountInString(a.PostalCode) > 20 || utf8.RuneCountInString(a.Locality) > maxLine {
			v.Add(prefix+".postal_address", "postal_code at most 20 and locality at most 200 characters")
		}
	}
	return v
}
