package request

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	identityv1 "lethe.dev/gen/lethe/identity/v1"
	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
)

// DenialText is how each denial reason is explained to the member.
var DenialText = map[fulfillmentv1.DenialReason]string{
	fulfillmentv1.DenialReason_DENIAL_REASON_UNVERIFIABLE:         "we could not verify that the request came from you",
	fulfillmentv1.DenialReason_DENIAL_REASON_MANIFESTLY_UNFOUNDED: "the request is manifestly unfounded",
	fulfillmentv1.DenialReason_DENIAL_REASON_EXCESSIVE:            "the request is excessive, for example because it repeats a recent one",
	fulfillmentv1.DenialReason_DENIAL_REASON_LEGAL_OBLIGATION:     "a legal obligation requires us to keep or use the data concerned",
}

// HowToComplain is told to every member whose request is denied.
const HowToComplain = "If you disagree, reply to this message or write to our privacy team (privacy@lethe.example), " +
	"who will review the decision; you can also file a complaint from your privacy settings. " +
	"You have the right to lodge a complaint with your data protection authority (in the EU, the supervisory authority " +
	"of your country) or, in California, with the California Privacy Protection Agency, and to seek a judicial remedy."

func (r RequestRef) name() string { return r.member() + "/privacyRequests/" + r.RequestID }

// NotifyDenied tells the member their request was refused: the coded reason in plain
// words, the operator's explanation, and how to complain.
func (a *Activities) NotifyDenied(ctx context.Context, in RequestRef) error {
	var reason int32
	var explanation string
	if err := a.DB.QueryRowContext(ctx, `SELECT denial_reason, denial_explanation FROM requests WHERE id = $1`, in.RequestID).Scan(&reason, &explanation); err != nil {
		return err
	}
	code := fulfillmentv1.DenialReason(reason)
	detail := fmt.Sprintf("Reason: %s (%s).\n%s\n\n%s", DenialText[code], strings.TrimPrefix(code.String(), "DENIAL_REASON_"), explanation, HowToComplain)
	if _, err := a.Identity.NotifyMember(ctx, &identityv1.NotifyMemberRequest{Name: in.member(), Template: identityv1.MessageTemplate_MESSAGE_TEMPLATE_REQUEST_DENIED,
		Reference: in.name(), Detail: detail, RequestId: "denied-" + in.RequestID}); err != nil {
		return permanent(err)
	}
	return Notify(ctx, a.DB, in.RequestID, "denial", code.String(), a.Now())
}

// Acknowledge confirms receipt of the request to the member, with its due date, and
// records when.
func (a *Activities) Acknowledge(ctx context.Context, in RequestRef) error {
	var due int64
	var kind int32
	if err := a.DB.QueryRowContext(ctx, `SELECT due_at, kind FROM requests WHERE id = $1`, in.RequestID).Scan(&due, &kind); err != nil {
		return err
	}
	what := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(fulfillmentv1.RequestKind(kind).String(), "REQUEST_KIND_")), "_", " ")
	detail := fmt.Sprintf("Request: %s.\nWe will answer by %s. If we need to verify that the request is yours, we will send you a code.", what,
		time.UnixMicro(due).UTC().Format("2 January 2006"))
	if _, err := a.Identity.NotifyMember(ctx, &identityv1.NotifyMemberRequest{Name: in.member(), Template: identityv1.MessageTemplate_MESSAGE_TEMPLATE_REQUEST_RECEIVED,
		Reference: in.name(), Detail: detail, RequestId: "received-" + in.RequestID}); err != nil {
		return permanent(err)
	}
	if _, err := a.DB.ExecContext(ctx, `UPDATE requests SET acknowledged_at = COALESCE(acknowledged_at, $1) WHERE id = $2`, a.Now().UnixMicro(), in.RequestID); err != nil {
		return err
	}
	return Notify(ctx, a.DB, in.RequestID, "acknowledgement", "", a.Now())
}

// NotifyCompleted tells the member a request without a download was carried out.
func (a *Activities) NotifyCompleted(ctx context.Context, in RequestRef) error {
	var kind int32
	if err := a.DB.QueryRowContext(ctx, `SELECT kind FROM requests WHERE id = $1`, in.RequestID).Scan(&kind); err != nil {
		return err
	}
	detail := map[fulfillmentv1.RequestKind]string{
		fulfillmentv1.RequestKind_REQUEST_KIND_RECTIFICATION: "We corrected your data as you asked.",
		fulfillmentv1.RequestKind_REQUEST_KIND_RESTRICTION: "Your data is now restricted: we keep it, but do not use it for marketing, sharing with partners or personalization " +
			"until you lift the restriction from your privacy requests.",
		fulfillmentv1.RequestKind_REQUEST_KIND_OBJECTION:    "We recorded your objection: your data is no longer used for what you objected to.",
		fulfillmentv1.RequestKind_REQUEST_KIND_SALE_OPT_OUT: "You are opted out of the sale and sharing of your personal information.",
	}[fulfillmentv1.RequestKind(kind)]
	if _, err := a.Identity.NotifyMember(ctx, &identityv1.NotifyMemberRequest{Name: in.member(), Template: identityv1.MessageTemplate_MESSAGE_TEMPLATE_REQUEST_COMPLETED,
		Reference: in.name(), Detail: detail, RequestId: "completed-" + in.RequestID}); err != nil {
		return permanent(err)
	}
	return Notify(ctx, a.DB, in.RequestID, "completed", "", a.Now())
}

// ApplyRestriction puts the restriction of processing in force where the member's data
// is used: preferences (no marketing sends, no personalization) and sharing (no
// disclosure). Both calls are idempotent.
func (a *Activities) ApplyRestriction(ctx context.Context, in RequestRef) (int64, error) {
	return 2, SetRestriction(ctx, a.Preferences, a.Sharing, in.MemberID, in.RequestID, true)
}

// SetRestriction restricts (or lifts the restriction of) a member's processing in
// preferences and sharing.
func SetRestriction(ctx context.Context, prefs preferencesv1.PreferencesServiceClient, sh sharingv1.SharingServiceClient, memberID, requestID string, restricted bool) error {
	ref := "members/" + memberID + "/privacyRequests/" + requestID
	if _, err := prefs.SetProcessingRestriction(ctx, &preferencesv1.SetProcessingRestrictionRequest{Name: "members/" + memberID + "/adPreferences",
		Restricted: restricted, Reference: ref}); err != nil {
		return permanent(err)
	}
	_, err := sh.SetProcessingRestriction(ctx, &sharingv1.SetProcessingRestrictionRequest{Member: "members/" + memberID, Restricted: restricted, Reference: ref})
	return permanent(err)
}

// ApplyObjection records the objection where it is enforced: a sharing objection for a
// purpose or partner (AuthorizeDisclosure refuses OBJECTED), and for direct marketing
// every marketing subscription ends (AuthorizeMarketing refuses NOT_SUBSCRIBED).
func (a *Activities) ApplyObjection(ctx context.Context, in RequestRef) (int64, error) {
	var purpose, partner string
	var marketing bool
	if err := a.DB.QueryRowContext(ctx, `SELECT objection_purpose, objection_partner, objection_marketing FROM requests WHERE id = $1`, in.RequestID).
		Scan(&purpose, &partner, &marketing); err != nil {
		return 0, err
	}
	var n int64
	if purpose != "" || partner != "" {
		if _, err := a.Sharing.CreateObjection(ctx, &sharingv1.CreateObjectionRequest{Parent: in.member(), Objection: &sharingv1.Objection{Partner: partner, Purpose: purpose},
			RequestId: "objection-" + in.RequestID}); err != nil {
			return 0, permanent(err)
		}
		n++
	}
	if marketing {
		if _, err := a.Preferences.StopAllMarketing(ctx, &preferencesv1.StopAllMarketingRequest{Name: in.member() + "/communicationPreferences",
			Source: preferencesv1.ConsentSource_CONSENT_SOURCE_PRIVACY_REQUEST, RequestId: "objection-" + in.RequestID}); err != nil {
			return 0, permanent(err)
		}
		n++
	}
	return n, nil
}

// ApplySaleOptOut opts the member out of the sale and sharing of their data (and so of
// ad personalization), as a Data Rights Protocol opt-out does; AuthorizeDisclosure then
// refuses advertisers and marketing partners (SALE_SHARING_OPTED_OUT).
func (a *Activities) ApplySaleOptOut(ctx context.Context, in RequestRef) (int64, error) {
	_, err := a.Preferences.UpdateAdPreferences(ctx, &preferencesv1.UpdateAdPreferencesRequest{
		AdPreferences: &preferencesv1.AdPreferences{Name: in.member() + "/adPreferences", SaleSharingOptOut: true},
		UpdateMask:    &fieldmaskpb.FieldMask{Paths: []string{"sale_sharing_opt_out", "personalized_ads"}},
		Source:        preferencesv1.ConsentSource_CONSENT_SOURCE_PRIVACY_REQUEST, PolicyVersion: "request:" + in.RequestID})
	return 1, permanent(err)
}

// RectificationPaths maps a rectifiable field to identity's update mask path.
var RectificationPaths = map[fulfillmentv1.RectifiableField]string{
	fulfillmentv1.RectifiableField_RECTIFIABLE_FIELD_FULL_NAME:    "full_name",
	fulfillmentv1.RectifiableField_RECTIFIABLE_FIELD_BIRTH_DATE:   "birth_date",
	fulfillmentv1.RectifiableField_RECTIFIABLE_FIELD_PHONE_NUMBER: "phone_number",
}

// ApplyRectification writes the approved correction to identity, then forgets the
// asserted value and statement (they were only kept for the review). Idempotent: a
// retry after the value was forgotten finds nothing left to apply.
func (a *Activities) ApplyRectification(ctx context.Context, in RequestRef) (int64, error) {
	var field int32
	var value string
	var approved bool
	err := a.DB.QueryRowContext(ctx, `SELECT field, value, approved FROM rectifications WHERE request_id = $1`, in.RequestID).Scan(&field, &value, &approved)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, temporal.NewNonRetryableApplicationError("no rectification recorded", ErrPermanent, nil)
	}
	if err != nil {
		return 0, err
	}
	if !approved {
		return 0, temporal.NewNonRetryableApplicationError("the rectification is not approved", ErrPermanent, nil)
	}
	if value == "" { // applied by an earlier attempt
		return 1, nil
	}
	path := RectificationPaths[fulfillmentv1.RectifiableField(field)]
	m := &identityv1.Member{Name: in.member()}
	switch path {
	case "full_name":
		m.FullName = value
	case "birth_date":
		m.BirthDate = value
	case "phone_number":
		m.PhoneNumber = value
	default:
		return 0, temporal.NewNonRetryableApplicationError("unknown rectifiable field", ErrPermanent, nil)
	}
	if _, err := a.Identity.UpdateMember(ctx, &identityv1.UpdateMemberRequest{Member: m, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{path}}}); err != nil {
		return 0, permanent(err)
	}
	_, err = a.DB.ExecContext(ctx, `UPDATE rectifications SET value = '', statement = '' WHERE request_id = $1`, in.RequestID)
	return 1, err
}
