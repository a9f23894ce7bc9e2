// Package classify reads the lethe.privacy.v1 field classifications from proto
// descriptors: it checks that every field of every Lethe API message is classified, and
// lists the data inventory (which field holds which fideslang category, and what an
// erasure does to it).
package classify

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	privacyv1 "lethe.dev/gen/lethe/privacy/v1"
)

// Categories are the fideslang data categories Lethe uses (a subset of the taxonomy;
// a category also admits its fideslang sub-categories, e.g. "user.contact.address.city").
var Categories = []string{
	"system.authentication",
	"system.operations",
	"user",
	"user.account",
	"user.authorization.credentials",
	"user.behavior.media_consumption",
	"user.childrens",
	"user.contact.address",
	"user.contact.email",
	"user.contact.phone_number",
	"user.demographic.date_of_birth",
	"user.device",
	"user.financial",
	"user.name",
	"user.privacy_preferences",
	"user.social",
	"user.unique_id",
}

// KnownCategory reports whether c is one of Categories or a sub-category of one.
func KnownCategory(c string) bool {
	for _, k := range Categories {
		if c == k || (strings.HasPrefix(c, k+".") && k != "user") {
			return true
		}
	}
	return false
}

// Entry is one classified field.
type Entry struct {
	Field      string // full name, e.g. lethe.identity.v1.Member.email
	Category   string
	Erasure    privacyv1.ErasureAction
	LegalBasis string
	MemberData bool // category is user.*
}

// Violation is a field whose classification is missing or inconsistent.
type Violation struct {
	Field   string
	Problem string
}

func (v Violation) String() string { return v.Field + ": " + v.Problem }

// Of returns a field's classification, or nil.
func Of(fd protoreflect.FieldDescriptor) *privacyv1.Classification {
	opts := fd.Options()
	if opts == nil || !proto.HasExtension(opts, privacyv1.E_Field) {
		return nil
	}
	c, _ := proto.GetExtension(opts, privacyv1.E_Field).(*privacyv1.Classification)
	return c
}

// IsMemberData reports whether a field is classified as member data (user.*).
func IsMemberData(fd protoreflect.FieldDescriptor) bool {
	c := Of(fd)
	return c != nil && (c.GetCategory() == "user" || strings.HasPrefix(c.GetCategory(), "user."))
}

// inScope reports whether a file's messages are part of a Lethe service API.
func inScope(fd protoreflect.FileDescriptor) bool {
	pkg := string(fd.Package())
	return strings.HasPrefix(pkg, "lethe.") && !strings.HasPrefix(pkg, "lethe.privacy.")
}

// needsOwnClassification is false for fields whose type is a Lethe message: those are
// classified by their own fields, which the check visits too.
func needsOwnClassification(fd protoreflect.FieldDescriptor) bool {
	if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
		return true
	}
	return !strings.HasPrefix(string(fd.Message().FullName()), "lethe.")
}

// Check returns every violation in the Lethe files of files, sorted by field name.
func Check(files *protoregistry.Files) []Violation {
	var out []Violation
	Walk(files, func(fd protoreflect.FieldDescriptor) {
		name := string(fd.FullName())
		c := Of(fd)
		if c == nil {
			if needsOwnClassification(fd) {
				out = append(out, Violation{name, "no (lethe.privacy.v1.field) classification"})
			}
			return
		}
		cat := c.GetCategory()
		switch {
		case !KnownCategory(cat):
			out = append(out, Violation{name, fmt.Sprintf("category %q is not a known fideslang category", cat)})
		case c.GetErasure() == privacyv1.ErasureAction_ERASURE_ACTION_UNSPECIFIED:
			out = append(out, Violation{name, "erasure action is unspecified"})
		case c.GetErasure() == privacyv1.ErasureAction_ERASURE_ACTION_RETAIN && c.GetLegalBasis() == "":
			out = append(out, Violation{name, "retained field needs a legal_basis"})
		case strings.HasPrefix(cat, "system.") && c.GetErasure() != privacyv1.ErasureAction_ERASURE_ACTION_NONE:
			out = append(out, Violation{name, "system.* fields hold no member data: erasure must be ERASURE_ACTION_NONE"})
		case !strings.HasPrefix(cat, "system.") && c.GetErasure() == privacyv1.ErasureAction_ERASURE_ACTION_NONE:
			out = append(out, Violation{name, "member data needs an erasure action other than NONE"})
		}
	})
	slices.SortFunc(out, func(a, b Violation) int { return strings.Compare(a.Field, b.Field) })
	return out
}

// Inventory lists every classified field in the Lethe files of files.
func Inventory(files *protoregistry.Files) []Entry {
	var out []Entry
	Walk(files, func(fd protoreflect.FieldDescriptor) {
		if c := Of(fd); c != nil {
			out = append(out, Entry{
				Field: string(fd.FullName()), Category: c.GetCategory(), Erasure: c.GetErasure(),
				LegalBasis: c.GetLegalBasis(), MemberData: IsMemberData(fd),
			})
		}
	})
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Field, b.Field) })
	return out
}

// Walk calls fn for every field of every message (nested ones included) in the Lethe
// service files of files.
func Walk(files *protoregistry.Files, fn func(protoreflect.FieldDescriptor)) {
	files.RangeFiles(func(f protoreflect.FileDescriptor) bool {
		if inScope(f) {
			walkMessages(f.Messages(), fn)
		}
		return true
	})
}

func walkMessages(msgs protoreflect.MessageDescriptors, fn func(protoreflect.FieldDescriptor)) {
	for i := range msgs.Len() {
		md := msgs.Get(i)
		if md.IsMapEntry() {
			continue
		}
		fields := md.Fields()
		for j := range fields.Len() {
			fn(fields.Get(j))
		}
		walkMessages(md.Messages(), fn)
	}
}
