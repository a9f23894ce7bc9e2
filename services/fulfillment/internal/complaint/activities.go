package complaint

import (
	"context"
	"time"

	"go.temporal.io/sdk/activity"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "lethe.dev/gen/lethe/identity/v1"
)

// Activities record a complaint's escalations and tell the member about it.
type Activities struct {
	Store    *Store
	Identity identityv1.IdentityServiceClient
}

// RecordComplaintEscalation records one escalation level (once).
func (a *Activities) RecordComplaintEscalation(ctx context.Context, in EscalationInput) error {
	if err := a.Store.Escalate(ctx, in.ComplaintID, in.Level); err != nil {
		return err
	}
	activity.GetLogger(ctx).Warn("complaint escalation", "complaint", in.ComplaintID, "level", in.Level)
	return nil
}

// NotifyComplaintMember emails the member, through identity, that their complaint was
// acknowledged or resolved. Keyed by complaint and event, so a retry queues one
// message; the text names no personal data (the member reads the answer signed in). A
// member erased meanwhile gets nothing.
func (a *Activities) NotifyComplaintMember(ctx context.Context, in NotifyInput) error {
	c, err := a.Store.Get(ctx, in.MemberID, in.ComplaintID)
	if err != nil {
		return err
	}
	var detail string
	switch in.Event {
	case "acknowledged":
		detail = "We have taken up your complaint and are looking into it. We will answer by " + c.GetResolveDueTime().AsTime().UTC().Format("2 January 2006") + "."
	default:
		detail = "We have answered your complaint. If you are not satisfied with the answer, you can complain to your data protection authority."
	}
	_, err = a.Identity.NotifyMember(ctx, &identityv1.NotifyMemberRequest{Name: "members/" + in.MemberID, Template: identityv1.MessageTemplate_MESSAGE_TEMPLATE_COMPLAINT_UPDATE,
		Reference: "complaint " + in.ComplaintID, Detail: detail, RequestId: "complaint/" + in.ComplaintID + "/" + in.Event})
	if status.Code(err) == codes.NotFound {
		return nil
	}
	return err
}

// deadline is a helper for callers computing due times from a window.
func deadline(from time.Time, window, def time.Duration) time.Time {
	if window <= 0 {
		window = def
	}
	return from.Add(window)
}

// Deadlines returns the acknowledgement and resolution due times of a complaint filed
// at t (zero windows take the defaults).
func Deadlines(t time.Time, ackWindow, resolveWindow time.Duration) (ack, resolve time.Time) {
	return deadline(t, ackWindow, DefaultAckWindow), deadline(t, resolveWindow, DefaultResolveWindow)
}
