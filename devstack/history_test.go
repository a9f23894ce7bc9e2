package devstack_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	tclient "go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"

	"lethe.dev/devstack"
	"lethe.dev/devstack/internal/figures"
	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
)

// Histories of a plain verified erasure and a small export recorded before lean
// bookkeeping (an activity per progress step and per state change), in the fulfillment
// replay test's testdata; TestWorkflowHistoriesShrank compares today's against them.
const (
	erasureBeforeLean = "erasure-plain-before-lean-bookkeeping.json"
	exportBeforeLean  = "export-plain-before-lean-bookkeeping.json"
)

func recordedEvents(t *testing.T, file string) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "services", "fulfillment", "internal", "request", "testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	var h historypb.History
	if err := protojson.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return len(h.GetEvents())
}

// TestWorkflowHistoriesShrank runs a verified erasure (no cooling-off, no processors)
// and an export on the dev stack and counts the events in their Temporal histories:
// with bookkeeping as local activities and progress in the workflow, both are smaller
// than the histories recorded before (and the erasure at most two thirds of it).
// LETHE_RECORD_HISTORIES=1 records them for the replay test (plain-erasure.json,
// plain-export.json).
func TestWorkflowHistoriesShrank(t *testing.T) {
	s, err := devstack.Start(context.Background(), devstack.Options{DataDir: t.TempDir(), UIPort: -1, Env: map[string]string{"FULFILLMENT_COOLING_OFF": "0s"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	c, err := tclient.Dial(tclient.Options{HostPort: s.TemporalAddress, Namespace: "lethe"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	count := func(workflowID string) int {
		n := 0
		iter := c.GetWorkflowHistory(t.Context(), workflowID, "", false, 0)
		for iter.HasNext() {
			if _, err := iter.Next(); err != nil {
				t.Fatal(err)
			}
			n++
		}
		return n
	}
	run := func(kind fulfillmentv1.RequestKind, email string) (member, id string) {
		member = newMember(t, s, email)
		if kind == fulfillmentv1.RequestKind_REQUEST_KIND_ACCESS {
			seedHistory(t, s, member, 100)
		}
		r, err := s.Fulfillment.API.CreatePrivacyRequest(fresh(), &fulfillmentv1.CreatePrivacyRequestRequest{Parent: "members/" + member, RequestId: "history-" + email,
			PrivacyRequest: &fulfillmentv1.PrivacyRequest{Kind: kind}})
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			got, err := s.Fulfillment.API.GetPrivacyRequest(context.Background(), &fulfillmentv1.GetPrivacyRequestRequest{Name: r.GetName()})
			if err == nil && got.GetState() == fulfillmentv1.RequestState_REQUEST_STATE_COMPLETED {
				if len(got.GetProgress()) < 4 {
					t.Fatalf("completed with too little progress stored: %v", got.GetProgress())
				}
				return member, filepath.Base(r.GetName())
			}
			if time.Now().After(deadline) {
				t.Fatalf("%v: %v %v", kind, got.GetState(), err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	er, _ := run(fulfillmentv1.RequestKind_REQUEST_KIND_ERASURE, "history-erasure@example.com")
	ex, _ := run(fulfillmentv1.RequestKind_REQUEST_KIND_ACCESS, "history-export@example.com")
	erasureID, exportID := "privacy-request/erasure/"+er, "privacy-request/access/"+ex
	erasure, export := count(erasureID), count(exportID)
	// Revision 1 runs record no version marker, start with the status they run in and
	// upsert the status search attribute only when it changes: an erasure that goes
	// straight to work upserts once, when it completes.
	for id, wantUpserts := range map[string]int{erasureID: 1, exportID: 1} {
		var markers, upserts int
		var first *historypb.HistoryEvent
		iter := c.GetWorkflowHistory(t.Context(), id, "", false, 0)
		for iter.HasNext() {
			ev, err := iter.Next()
			if err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = ev
			}
			switch ev.GetEventType() {
			case enumspb.EVENT_TYPE_MARKER_RECORDED:
				if ev.GetMarkerRecordedEventAttributes().GetMarkerName() == "Version" {
					markers++
				}
			case enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
				upserts++
			}
		}
		if markers != 0 || upserts != wantUpserts {
			t.Errorf("%s: %d version markers and %d search-attribute upserts, want 0 and %d", id, markers, upserts, wantUpserts)
		}
		var status string
		p := first.GetWorkflowExecutionStartedEventAttributes().GetSearchAttributes().GetIndexedFields()["LetheRequestStatus"]
		if err := converter.GetDefaultDataConverter().FromPayload(p, &status); err != nil || status != "in_progress" {
			t.Errorf("%s started with status %q (%v), want in_progress", id, status, err)
		}
	}
	recordHistories(t, s, map[string]string{"plain-erasure.json": erasureID, "plain-export.json": exportID})
	before, exportBefore := recordedEvents(t, erasureBeforeLean), recordedEvents(t, exportBeforeLean)
	figures.Report(t, "events per history: erasure %d (before lean bookkeeping %d, %.0f%%), export %d (before %d, %.0f%%)",
		erasure, before, 100*float64(erasure)/float64(before), export, exportBefore, 100*float64(export)/float64(exportBefore))
	if erasure*3 > before*2 {
		t.Errorf("an erasure's history has %d events, more than two thirds of the %d recorded before lean bookkeeping", erasure, before)
	}
	if export >= exportBefore {
		t.Errorf("an export's history has %d events, not fewer than the %d recorded before lean bookkeeping", export, exportBefore)
	}
}
