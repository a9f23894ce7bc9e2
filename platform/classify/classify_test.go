package classify_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	_ "lethe.dev/gen/lethe/fulfillment/v1"
	_ "lethe.dev/gen/lethe/identity/v1"
	_ "lethe.dev/gen/lethe/preferences/v1"
	privacyv1 "lethe.dev/gen/lethe/privacy/v1"
	_ "lethe.dev/gen/lethe/sharing/v1"
	_ "lethe.dev/gen/lethe/subject/v1"
	"lethe.dev/platform/classify"
)

func TestEveryServiceFieldIsClassified(t *testing.T) {
	if v := classify.Check(protoregistry.GlobalFiles); len(v) != 0 {
		t.Fatalf("%d unclassified fields, first: %v", len(v), v[0])
	}
	inv := classify.Inventory(protoregistry.GlobalFiles)
	byField := map[string]classify.Entry{}
	for _, e := range inv {
		byField[e.Field] = e
	}
	// Spot-check that the inventory carries what the data map needs.
	for field, want := range map[string]string{
		"lethe.identity.v1.Member.email":                "user.contact.email",
		"lethe.identity.v1.Member.payment_method_ref":   "user.financial",
		"lethe.preferences.v1.ViewingEvent.title_id":    "user.behavior.media_consumption",
		"lethe.identity.v1.PostalAddress.address_lines": "user.contact.address.street",
	} {
		if got := byField[field].Category; got != want {
			t.Errorf("%s category = %q, want %q", field, got, want)
		}
	}
	if e := byField["lethe.preferences.v1.ViewingEvent.title_id"]; e.Erasure != privacyv1.ErasureAction_ERASURE_ACTION_ANONYMIZE {
		t.Errorf("viewing history must be anonymized, not %v", e.Erasure)
	}
}

// fixture builds a registry holding one Lethe-like file with the given fields on a
// message named Fixture.
func fixture(t *testing.T, fields ...*descriptorpb.FieldDescriptorProto) *protoregistry.Files {
	t.Helper()
	fdp := &descriptorpb.FileDescriptorProto{
		Name:        proto.String("lethe/fixture/v1/fixture.proto"),
		Package:     proto.String("lethe.fixture.v1"),
		Syntax:      proto.String("proto3"),
		Dependency:  []string{"lethe/privacy/v1/privacy.proto"},
		MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("Fixture"), Field: fields}},
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	files := new(protoregistry.Files)
	if err := files.RegisterFile(fd); err != nil {
		t.Fatal(err)
	}
	return files
}

func field(name string, n int32, c *privacyv1.Classification) *descriptorpb.FieldDescriptorProto {
	f := &descriptorpb.FieldDescriptorProto{
		Name: proto.String(name), Number: proto.Int32(n), JsonName: proto.String(name),
		Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
		Type:  descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(),
	}
	if c != nil {
		f.Options = &descriptorpb.FieldOptions{}
		proto.SetExtension(f.Options, privacyv1.E_Field, c)
	}
	return f
}

func TestCheckFailsOnBadClassifications(t *testing.T) {
	del := privacyv1.ErasureAction_ERASURE_ACTION_DELETE
	cases := []struct {
		name    string
		c       *privacyv1.Classification
		problem string
	}{
		{"unclassified", nil, "no (lethe.privacy.v1.field)"},
		{"unknown category", &privacyv1.Classification{Category: "user.favourite_colour", Erasure: del}, "not a known fideslang category"},
		{"no erasure action", &privacyv1.Classification{Category: "user.contact.email"}, "unspecified"},
		{"retain without basis", &privacyv1.Classification{Category: "user.unique_id", Erasure: privacyv1.ErasureAction_ERASURE_ACTION_RETAIN}, "legal_basis"},
		{"member data marked none", &privacyv1.Classification{Category: "user.name", Erasure: privacyv1.ErasureAction_ERASURE_ACTION_NONE}, "other than NONE"},
		{"system data deleted", &privacyv1.Classification{Category: "system.operations", Erasure: del}, "must be ERASURE_ACTION_NONE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ok := field("ok", 1, &privacyv1.Classification{Category: "user.contact.email", Erasure: del})
			v := classify.Check(fixture(t, ok, field("bad", 2, tc.c)))
			if len(v) != 1 || v[0].Field != "lethe.fixture.v1.Fixture.bad" || !strings.Contains(v[0].Problem, tc.problem) {
				t.Fatalf("violations = %v, want one on Fixture.bad mentioning %q", v, tc.problem)
			}
		})
	}
}
