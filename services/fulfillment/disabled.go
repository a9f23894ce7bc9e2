package fulfillment

import (
	"context"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	identityv1 "lethe.dev/gen/lethe/identity/v1"
	"lethe.dev/services/fulfillment/internal/request"
)

// consumeDisabledAccounts turns identity's "disabled" events into a DisabledAccount
// workflow per member (the grace period before the account's erasure) and "enabled"
// events into its ReenabledSignal. Each event is acknowledged only once Temporal has it;
// a workflow already running for the member (a second disable) keeps its own timer.
func (s *Service) consumeDisabledAccounts(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, kind := range []string{"disabled", "enabled"} {
			res, err := s.Activities.Identity.ListMemberEvents(ctx, &identityv1.ListMemberEventsRequest{Kind: kind, PageSize: 100})
			if err != nil {
				continue // identity unavailable: try again next tick
			}
			for _, e := range res.GetEvents() {
				member := strings.TrimPrefix(e.GetMember(), "members/")
				eventID := strings.TrimPrefix(e.GetName(), "memberEvents/")
				if err := s.onAccountEvent(ctx, kind, member, eventID); err != nil {
					s.logger.Warn("disabled-account event not handled; will retry", "event", e.GetName())
					continue
				}
				_, _ = s.Activities.Identity.AcknowledgeMemberEvent(ctx, &identityv1.AcknowledgeMemberEventRequest{Name: e.GetName()})
			}
		}
	}
}

func (s *Service) onAccountEvent(ctx context.Context, kind, member, eventID string) error {
	id := request.DisabledAccountWorkflowID(member)
	if kind == "enabled" {
		err := s.temporal.SignalWorkflow(ctx, id, "", request.ReenabledSignal, nil)
		if _, gone := err.(*serviceerror.NotFound); gone {
			return nil // no grace period running: nothing to stop
		}
		return err
	}
	_, err := s.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: request.TaskQueue,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE, WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING},
		request.DisabledAccount, request.DisabledAccountInput{MemberID: member, EventID: eventID, Grace: s.disableGrace})
	return err
}

// fileDisabledErasure files the erasure of a disabled account through the same intake as
// every request: verified by the authenticated disable, no further cooling-off (the grace
// period was it).
func (s *Service) fileDisabledErasure(ctx context.Context, member, clientRequestID string) (string, error) {
	pr, err := s.API.CreatePrivacyRequest(ctx, &fulfillmentv1.CreatePrivacyRequestRequest{
		Parent: "members/" + member, RequestId: clientRequestID,
		PrivacyRequest: &fulfillmentv1.PrivacyRequest{Kind: fulfillmentv1.RequestKind_REQUEST_KIND_ERASURE, Origin: fulfillmentv1.RequestOrigin_REQUEST_ORIGIN_ACCOUNT_DISABLED},
	})
	if err != nil {
		return "", err
	}
	return pr.GetName(), nil
}
