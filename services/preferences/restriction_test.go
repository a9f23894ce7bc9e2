package preferences_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	subjectv1 "lethe.dev/gen/lethe/subject/v1"
)

// TestMarketingSendsFollowSubscriptionsAndRestriction: AuthorizeMarketing refuses a
// send the member did not subscribe to and every send while their processing is
// restricted (ad personalization reads off meanwhile, the member's choice kept for
// after the lift); bad input is INVALID_ARGUMENT; an erasure deletes the restriction.
func TestMarketingSendsFollowSubscriptionsAndRestriction(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		send := func() string {
			t.Helper()
			res, err := h.client.AuthorizeMarketing(ctx, &preferencesv1.AuthorizeMarketingRequest{Member: alice, Channel: preferencesv1.Channel_CHANNEL_EMAIL, Topic: preferencesv1.Topic_TOPIC_PROMOTIONS})
			if err != nil {
				t.Fatal(err)
			}
			if res.GetAllowed() != (res.GetReason() == "ALLOWED") {
				t.Fatalf("allowed %v with reason %s", res.GetAllowed(), res.GetReason())
			}
			return res.GetReason()
		}
		if got := send(); got != "NOT_SUBSCRIBED" {
			t.Fatalf("before subscribing: %s", got)
		}
		if _, err := h.client.UpdateCommunicationPreferences(ctx, &preferencesv1.UpdateCommunicationPreferencesRequest{Name: alice + "/communicationPreferences",
			Changes: []*preferencesv1.SubscriptionChange{{Channel: preferencesv1.Channel_CHANNEL_EMAIL, Topic: preferencesv1.Topic_TOPIC_PROMOTIONS, Subscribed: true}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.client.UpdateAdPreferences(ctx, &preferencesv1.UpdateAdPreferencesRequest{AdPreferences: &preferencesv1.AdPreferences{Name: alice + "/adPreferences", PersonalizedAds: true},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"personalized_ads"}}}); err != nil {
			t.Fatal(err)
		}
		if got := send(); got != "ALLOWED" {
			t.Fatalf("subscribed: %s", got)
		}
		for i := 0; i < 2; i++ { // idempotent
			a, err := h.client.SetProcessingRestriction(ctx, &preferencesv1.SetProcessingRestrictionRequest{Name: alice + "/adPreferences", Restricted: true, Reference: "members/x/privacyRequests/r1"})
			if err != nil || !a.GetProcessingRestricted() || a.GetPersonalizedAds() {
				t.Fatalf("restricted: %v %v", a, err)
			}
		}
		if got := send(); got != "PROCESSING_RESTRICTED" {
			t.Fatalf("while restricted: %s", got)
		}
		a, err := h.client.SetProcessingRestriction(ctx, &preferencesv1.SetProcessingRestrictionRequest{Name: alice + "/adPreferences"})
		if err != nil || a.GetProcessingRestricted() || !a.GetPersonalizedAds() {
			t.Fatalf("lifted: %v %v", a, err)
		}
		if got := send(); got != "ALLOWED" {
			t.Fatalf("after the lift: %s", got)
		}
		for _, bad := range []*preferencesv1.AuthorizeMarketingRequest{
			{Member: "people/x", Channel: preferencesv1.Channel_CHANNEL_EMAIL, Topic: preferencesv1.Topic_TOPIC_PROMOTIONS},
			{Member: alice, Topic: preferencesv1.Topic_TOPIC_PROMOTIONS},
			{Member: alice, Channel: preferencesv1.Channel_CHANNEL_EMAIL, Topic: preferencesv1.Topic_TOPIC_TRANSACTIONAL},
		} {
			if _, err := h.client.AuthorizeMarketing(ctx, bad); codeOf(err) != codes.InvalidArgument {
				t.Errorf("%v: %v", bad, err)
			}
		}
		if _, err := h.client.SetProcessingRestriction(ctx, &preferencesv1.SetProcessingRestrictionRequest{Name: alice + "/adPreferences", Restricted: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.subject.EraseSubjectData(ctx, &subjectv1.EraseSubjectDataRequest{Subject: alice, RequestId: "erase-restricted", TombstoneId: "tomb00000001"}); err != nil {
			t.Fatal(err)
		}
		rep, err := h.subject.ReportSubjectData(ctx, &subjectv1.ReportSubjectDataRequest{Subject: alice})
		if err != nil {
			t.Fatal(err)
		}
		for _, held := range rep.GetHeld() {
			if held.GetDataset() == "processing_restrictions" {
				t.Fatalf("restriction kept after erasure: %v", held)
			}
		}
	})
}

func codeOf(err error) codes.Code { c, _ := reason(err); return c }
