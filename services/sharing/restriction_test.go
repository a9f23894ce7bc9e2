package sharing_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"

	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
)

// TestRestrictionStopsEveryDisclosureUntilLifted: while a restriction of processing is
// in force nothing flows, not even to a processor; lifting it lets data flow again.
func TestRestrictionStopsEveryDisclosureUntilLifted(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		setup(t, h, "https://acme.example.com/erase")
		check := func(id, want string) {
			t.Helper()
			got, err := authorize(h, "partners/acme-pay", "payment_processing", id, "user.financial")
			if err != nil || got.GetReason() != want || got.GetAllowed() != (want == "ALLOWED") {
				t.Fatalf("%s: %v %v, want %s", id, got, err, want)
			}
		}
		check("before", "ALLOWED")
		for i := 0; i < 2; i++ { // idempotent
			if res, err := h.client.SetProcessingRestriction(ctx, &sharingv1.SetProcessingRestrictionRequest{Member: member, Restricted: true, Reference: "members/x/privacyRequests/r1"}); err != nil || !res.GetRestricted() {
				t.Fatalf("restrict: %v %v", res, err)
			}
		}
		check("restricted", "PROCESSING_RESTRICTED")
		if _, err := h.client.SetProcessingRestriction(ctx, &sharingv1.SetProcessingRestrictionRequest{Member: member}); err != nil {
			t.Fatal(err)
		}
		check("lifted", "ALLOWED")
		if _, err := h.client.SetProcessingRestriction(ctx, &sharingv1.SetProcessingRestrictionRequest{Member: "people/x", Restricted: true}); func() codes.Code { c, _ := reason(err); return c }() != codes.InvalidArgument {
			t.Fatalf("bad member: %v", err)
		}
	})
}
