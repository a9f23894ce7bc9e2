package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
)

func requestsCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:     "requests",
		Aliases: []string{"request", "req"},
		Short:   "The privacy request queue: list, show a timeline, extend, legal holds",
		Long: `Members' access and erasure requests, ordered by their legal due date. NAME is a
request's resource name, members/{member}/privacyRequests/{request}, as 'requests list'
prints it.`,
	}
	c.AddCommand(requestsListCmd(g), requestsShowCmd(g),
		requestsActionCmd(g, "extend", "Extend a request's due date once, as its jurisdiction allows; the member is told the reason",
			func(ctx context.Context, c fulfillmentv1.FulfillmentServiceClient, name, reason string) (*fulfillmentv1.PrivacyRequest, error) {
				return c.ExtendPrivacyRequest(ctx, &fulfillmentv1.ExtendPrivacyRequestRequest{Name: name, Reason: reason})
			}),
		requestsActionCmd(g, "hold", "Put a request on legal hold: it pauses until released",
			func(ctx context.Context, c fulfillmentv1.FulfillmentServiceClient, name, reason string) (*fulfillmentv1.PrivacyRequest, error) {
				return c.SetLegalHold(ctx, &fulfillmentv1.SetLegalHoldRequest{Name: name, Reason: reason})
			}),
		requestsActionCmd(g, "release", "Release a request's legal hold: it resumes",
			func(ctx context.Context, c fulfillmentv1.FulfillmentServiceClient, name, reason string) (*fulfillmentv1.PrivacyRequest, error) {
				return c.ReleaseLegalHold(ctx, &fulfillmentv1.ReleaseLegalHoldRequest{Name: name, Reason: reason})
			}))
	return c
}

func requestsListCmd(g *globals) *cobra.Command {
	var atRisk, overdue, open, all bool
	var state, kind, member, pageToken string
	var pageSize int32
	c := &cobra.Command{
		Use:   "list [--at-risk|--overdue|--open|--state STATE] [--kind KIND] [--page-size N] [--all]",
		Short: "List requests by due date",
		Long: `Lists every member's requests (or one member's with --member), ordered by due date.
--at-risk keeps open requests due within 3 days, --overdue open requests past their due
date, --open every open one, --state one state (e.g. in_progress, on_hold, completed).
--kind (access, erasure, child_erasure) filters the pages the server returns. Without
--all one page is printed, and the token of the next one (--page-token).`,
		Example: `  lethectl requests list --at-risk
  lethectl requests list --state on_hold --all -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			filter := ""
			set := 0
			for _, f := range []struct {
				on   bool
				name string
			}{{atRisk, "at_risk"}, {overdue, "overdue"}, {open, "open"}, {state != "", strings.ToLower(strings.TrimPrefix(strings.ToUpper(state), "REQUEST_STATE_"))}} {
				if f.on {
					filter, set = f.name, set+1
				}
			}
			if set > 1 {
				return usageError("--at-risk, --overdue, --open and --state exclude each other")
			}
			var wantKind fulfillmentv1.RequestKind
			if kind != "" {
				k, ok := fulfillmentv1.RequestKind_value["REQUEST_KIND_"+strings.ToUpper(strings.TrimPrefix(strings.ToUpper(kind), "REQUEST_KIND_"))]
				if !ok {
					return usageError("--kind must be access, erasure or child_erasure")
				}
				wantKind = fulfillmentv1.RequestKind(k)
			}
			parent := "members/-"
			if member != "" {
				parent = "members/" + strings.TrimPrefix(trimName(member), "members/")
			}
			c, ctx, cancel, err := g.fulfillment(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			out := &fulfillmentv1.ListPrivacyRequestsResponse{}
			token := pageToken
			for {
				res, err := c.ListPrivacyRequests(ctx, &fulfillmentv1.ListPrivacyRequestsRequest{Parent: parent, PageSize: pageSize, PageToken: token, Filter: filter})
				if err != nil {
					return err
				}
				for _, r := range res.GetPrivacyRequests() {
					if wantKind == 0 || r.GetKind() == wantKind {
						out.PrivacyRequests = append(out.PrivacyRequests, r)
					}
				}
				token = res.GetNextPageToken()
				if !all || token == "" {
					out.NextPageToken = token
					break
				}
			}
			w := cmd.OutOrStdout()
			if g.output == "json" {
				return printJSON(w, out)
			}
			now := time.Now()
			t := newTable(w, "NAME", "KIND", "STATE", "DUE", "LEFT", "EXTENDED", "HOLD")
			for _, r := range out.GetPrivacyRequests() {
				t.row(r.GetName(), short(r.GetKind().String(), "REQUEST_KIND_"), short(r.GetState().String(), "REQUEST_STATE_"),
					ts(r.GetDueTime()), left(r, now), yesNo(r.GetExtended()), r.GetHoldReason())
			}
			if err := t.flush(); err != nil {
				return err
			}
			if out.GetNextPageToken() != "" {
				fmt.Fprintf(w, "\nmore: --page-token %s (or --all)\n", out.GetNextPageToken())
			}
			return nil
		},
	}
	f := c.Flags()
	f.BoolVar(&atRisk, "at-risk", false, "open requests due within 3 days")
	f.BoolVar(&overdue, "overdue", false, "open requests past their due date")
	f.BoolVar(&open, "open", false, "every open request")
	f.StringVar(&state, "state", "", "one state: awaiting_verification, cooling_off, on_hold, in_progress, completed, cancelled, expired, denied, failed")
	f.StringVar(&kind, "kind", "", "one kind: access, erasure, child_erasure")
	f.StringVar(&member, "member", "", "one member's requests (members/{member})")
	f.Int32Var(&pageSize, "page-size", 50, "requests per page (at most 500)")
	f.StringVar(&pageToken, "page-token", "", "continue a previous listing")
	f.BoolVar(&all, "all", false, "follow every page")
	return c
}

// left is the time to the due date of an open request; "-" once it is closed.
func left(r *fulfillmentv1.PrivacyRequest, now time.Time) string {
	switch r.GetState() {
	case fulfillmentv1.RequestState_REQUEST_STATE_COMPLETED, fulfillmentv1.RequestState_REQUEST_STATE_CANCELLED,
		fulfillmentv1.RequestState_REQUEST_STATE_EXPIRED, fulfillmentv1.RequestState_REQUEST_STATE_DENIED, fulfillmentv1.RequestState_REQUEST_STATE_FAILED:
		return "-"
	}
	return until(r.GetDueTime(), now)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// event is one line of a request's timeline.
type event struct {
	Time   time.Time `json:"time"`
	What   string    `json:"what"`
	Detail string    `json:"detail,omitempty"`
	Actor  string    `json:"actor,omitempty"`
	Reason string    `json:"reason,omitempty"`
}

func requestsShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show a request with its timeline: steps, escalations, holds, extension, due date",
		Long: `Shows a request: kind, jurisdiction, origin, state, the legal due date with the rule
that set it and the time left, the extension and hold with their reasons, onward erasures
per processor, the Temporal workflow id, and its timeline (fulfillment's
GetPrivacyRequestTimeline) — receipt, each workflow step with its time and count,
escalations, notifications, extension, holds and releases with operator and reason, and
closing. Against a deployment without that RPC the timeline is assembled from the request
and the audit log.`,
		Example: "  lethectl requests show members/3kq…/privacyRequests/9fz…",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := trimName(args[0])
			c, ctx, cancel, err := g.fulfillment(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			r, err := c.GetPrivacyRequest(ctx, &fulfillmentv1.GetPrivacyRequestRequest{Name: name})
			if err != nil {
				return err
			}
			audit := &fulfillmentv1.ListAuditEventsResponse{}
			for token := ""; ; {
				res, err := c.ListAuditEvents(ctx, &fulfillmentv1.ListAuditEventsRequest{Target: name, PageSize: 500, PageToken: token})
				if err != nil {
					return fmt.Errorf("audit log: %w", err)
				}
				audit.AuditEvents = append(audit.AuditEvents, res.GetAuditEvents()...)
				if token = res.GetNextPageToken(); token == "" {
					break
				}
			}
			// Fulfillment's own timeline (escalations, onward erasures, the due-date rule)
			// when the deployment has it; else the one assembled from the request and
			// the audit log.
			rich, err := c.GetPrivacyRequestTimeline(ctx, &fulfillmentv1.GetPrivacyRequestTimelineRequest{Name: name})
			if code := status.Code(err); err != nil && code != codes.Unimplemented && code != codes.NotFound {
				return err
			}
			tl := timeline(r, audit.GetAuditEvents())
			if rich != nil {
				tl = richTimeline(rich)
			}
			w := cmd.OutOrStdout()
			if g.output == "json" {
				pr, _ := protojson.Marshal(r)
				au, _ := protojson.Marshal(audit)
				var detail json.RawMessage
				if rich != nil {
					detail, _ = protojson.Marshal(rich)
				}
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					PrivacyRequest json.RawMessage `json:"privacyRequest"`
					AuditLog       json.RawMessage `json:"auditLog"`
					Timeline       []event         `json:"timeline"`
					Detail         json.RawMessage `json:"requestTimeline,omitempty"`
				}{pr, au, tl, detail})
			}
			return printRequest(w, r, rich, tl)
		},
	}
}

// timeline merges the request's own times, its workflow steps and the operator actions
// on it, oldest first.
func timeline(r *fulfillmentv1.PrivacyRequest, audit []*fulfillmentv1.AuditEvent) []event {
	var out []event
	if r.GetCreateTime() != nil {
		out = append(out, event{Time: r.GetCreateTime().AsTime(), What: "received", Detail: "origin " + short(r.GetOrigin().String(), "REQUEST_ORIGIN_")})
	}
	for _, s := range r.GetProgress() {
		d := s.GetState()
		if s.GetCount() > 0 {
			d += fmt.Sprintf(", %d records", s.GetCount())
		}
		out = append(out, event{Time: s.GetUpdateTime().AsTime(), What: "step " + s.GetStep(), Detail: d})
	}
	for _, a := range audit {
		action := a.GetAction()
		if i := strings.LastIndex(action, "/"); i >= 0 {
			action = action[i+1:]
		}
		out = append(out, event{Time: a.GetTime().AsTime(), What: "operator " + action, Actor: a.GetActor(), Reason: a.GetReason()})
	}
	if r.GetCompleteTime() != nil {
		out = append(out, event{Time: r.GetCompleteTime().AsTime(), What: short(r.GetState().String(), "REQUEST_STATE_")})
	}
	slices.SortStableFunc(out, func(a, b event) int { return a.Time.Compare(b.Time) })
	return out
}

// richTimeline reads fulfillment's GetPrivacyRequestTimeline entries.
func richTimeline(rt *fulfillmentv1.PrivacyRequestTimeline) []event {
	var out []event
	for _, e := range rt.GetEntries() {
		d := e.GetState()
		if e.GetCount() > 0 {
			d += fmt.Sprintf(", %d records", e.GetCount())
		}
		out = append(out, event{Time: e.GetTime().AsTime(), What: strings.TrimSpace(e.GetKind() + " " + e.GetTitle()), Detail: strings.TrimPrefix(d, ", "), Actor: e.GetActor(), Reason: e.GetReason()})
	}
	slices.SortStableFunc(out, func(a, b event) int { return a.Time.Compare(b.Time) })
	return out
}

func printRequest(w io.Writer, r *fulfillmentv1.PrivacyRequest, rich *fulfillmentv1.PrivacyRequestTimeline, tl []event) error {
	t := newTable(w, "request", r.GetName())
	t.row("kind", short(r.GetKind().String(), "REQUEST_KIND_"))
	t.row("jurisdiction", short(r.GetJurisdiction().String(), "JURISDICTION_"))
	t.row("origin", short(r.GetOrigin().String(), "REQUEST_ORIGIN_"))
	t.row("state", short(r.GetState().String(), "REQUEST_STATE_"))
	t.row("received", ts(r.GetCreateTime()))
	if r.GetCoolingOffEndTime() != nil {
		t.row("cooling-off ends", ts(r.GetCoolingOffEndTime()))
	}
	due := ts(r.GetDueTime())
	if l := left(r, time.Now()); l != "-" {
		due += "  (" + l + " left)"
	}
	t.row("legal due date", due)
	if rich.GetDueRule() != "" {
		t.row("due-date rule", rich.GetDueRule())
	}
	if rich.GetOriginalDueTime() != nil && r.GetExtended() {
		t.row("due before extension", ts(rich.GetOriginalDueTime()))
	}
	if rich.GetAcknowledgeByTime() != nil {
		t.row("acknowledge by", ts(rich.GetAcknowledgeByTime()))
	}
	if rich.GetWorkflowId() != "" {
		t.row("workflow", rich.GetWorkflowId()+" (Temporal namespace lethe)")
	}
	if r.GetExtended() {
		t.row("extended", "yes: "+r.GetExtensionReason())
	} else {
		t.row("extended", "no")
	}
	if r.GetHoldReason() != "" {
		t.row("legal hold", r.GetHoldReason())
	}
	if r.GetCompleteTime() != nil {
		t.row("completed", ts(r.GetCompleteTime()))
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(rich.GetOnwardErasures()) > 0 {
		fmt.Fprintln(w, "\nOnward erasures:")
		ot := newTable(w, "PROCESSOR", "STATE", "ATTEMPTS", "UPDATED")
		for _, o := range rich.GetOnwardErasures() {
			ot.row(o.GetProcessor(), o.GetState(), fmt.Sprint(o.GetAttempts()), ts(o.GetUpdateTime()))
		}
		if err := ot.flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "\nTimeline:")
	tt := newTable(w, "TIME", "EVENT", "DETAIL", "BY", "REASON")
	for _, e := range tl {
		tt.row(e.Time.UTC().Format("2006-01-02 15:04:05Z"), e.What, e.Detail, e.Actor, e.Reason)
	}
	return tt.flush()
}

// action is one operator action on a request.
type action func(ctx context.Context, c fulfillmentv1.FulfillmentServiceClient, name, reason string) (*fulfillmentv1.PrivacyRequest, error)

func requestsActionCmd(g *globals, verb, summary string, do action) *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   verb + " NAME --reason TEXT",
		Short: summary,
		Long: summary + `.

The reason (a case reference; no personal data) goes to the audit log with your operator
name; for an extension it is also told to the member. Needs an operator session (the
gateway), not --direct.`,
		Example: "  lethectl requests " + verb + " members/…/privacyRequests/… --reason 'case 2026-17'",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.requireOperator("requests " + verb); err != nil {
				return err
			}
			if strings.TrimSpace(reason) == "" {
				return usageError("--reason is required")
			}
			c, ctx, cancel, err := g.fulfillment(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			r, err := do(ctx, c, trimName(args[0]), reason)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), r)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s, due %s\n", r.GetName(), short(r.GetState().String(), "REQUEST_STATE_"), ts(r.GetDueTime()))
			return nil
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why (a case reference, no personal data); recorded in the audit log")
	return c
}
