package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
)

// TestGatewayConnMapsCallsToTheirHTTPRules: each generated-client call becomes the
// request its google.api.http option declares (path variables, body, query), carries
// the operator token, and a gateway error comes back as the same gRPC status.
func TestGatewayConnMapsCallsToTheirHTTPRules(t *testing.T) {
	type seen struct{ method, path, query, body, auth string }
	var got seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = seen{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, string(b), r.Header.Get("Authorization")}
		if strings.HasSuffix(r.URL.Path, ":extend") {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"code":9,"message":"already extended","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"ALREADY_EXTENDED","domain":"lethe.dev"}]}`)
			return
		}
		_, _ = io.WriteString(w, `{"name":"x","futureField":1}`) // unknown fields from a newer server are ignored
	}))
	defer srv.Close()
	conn := &gatewayConn{base: srv.URL, token: "tok"}
	f := fulfillmentv1.NewFulfillmentServiceClient(conn)
	s := sharingv1.NewSharingServiceClient(conn)
	const name = "members/m1/privacyRequests/r1"

	for _, tc := range []struct {
		call func() error
		want seen
	}{
		{func() error {
			_, err := f.ListPrivacyRequests(t.Context(), &fulfillmentv1.ListPrivacyRequestsRequest{Parent: "members/-", PageSize: 5, Filter: "at_risk"})
			return err
		}, seen{"GET", "/v1/members/-/privacyRequests", "filter=at_risk&pageSize=5", "", "Bearer tok"}},
		{func() error {
			_, err := f.ListAuditEvents(t.Context(), &fulfillmentv1.ListAuditEventsRequest{Target: name, PageSize: 500})
			return err
		}, seen{"GET", "/v1/auditLog", "pageSize=500&target=members%2Fm1%2FprivacyRequests%2Fr1", "", "Bearer tok"}},
		{func() error {
			_, err := f.SetLegalHold(t.Context(), &fulfillmentv1.SetLegalHoldRequest{Name: name, Reason: "LH-9"})
			return err
		}, seen{"POST", "/v1/" + name + ":setLegalHold", "", `{"reason":"LH-9"}`, "Bearer tok"}},
		{func() error {
			_, err := f.GetRequestStatistics(t.Context(), &fulfillmentv1.GetRequestStatisticsRequest{Year: 2026})
			return err
		}, seen{"GET", "/v1/requestStatistics/2026", "", "", "Bearer tok"}},
		{func() error {
			_, err := s.CreatePartner(t.Context(), &sharingv1.CreatePartnerRequest{PartnerId: "acme", Partner: &sharingv1.Partner{DisplayName: "Acme", Kind: sharingv1.PartnerKind_PARTNER_KIND_PROCESSOR}})
			return err
		}, seen{"POST", "/v1/partners", "partnerId=acme", `{"displayName":"Acme","kind":"PARTNER_KIND_PROCESSOR"}`, "Bearer tok"}},
		{func() error {
			_, err := s.UpdatePartner(t.Context(), &sharingv1.UpdatePartnerRequest{Partner: &sharingv1.Partner{Name: "partners/acme", AckDeadline: durationpb.New(72 * time.Hour)},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"ack_deadline", "purposes"}}})
			return err
		}, seen{"PATCH", "/v1/partners/acme", "updateMask=ack_deadline%2Cpurposes", `{"name":"partners/acme","ackDeadline":"259200s"}`, "Bearer tok"}},
	} {
		if err := tc.call(); err != nil {
			t.Fatalf("%+v: %v", tc.want, err)
		}
		if tc.want.body != "" {
			var a, b any
			_ = json.Unmarshal([]byte(got.body), &a)
			_ = json.Unmarshal([]byte(tc.want.body), &b)
			ja, _ := json.Marshal(a)
			jb, _ := json.Marshal(b)
			got.body, tc.want.body = string(ja), string(jb)
		}
		if got != tc.want {
			t.Errorf("sent %+v\nwant %+v", got, tc.want)
		}
	}

	_, err := f.ExtendPrivacyRequest(t.Context(), &fulfillmentv1.ExtendPrivacyRequestRequest{Name: name, Reason: "a long enough reason"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(describe(err, false).Error(), "(ALREADY_EXTENDED)") {
		t.Fatalf("gateway error: %v", err)
	}
	if _, err := f.GetPrivacyRequest(t.Context(), &fulfillmentv1.GetPrivacyRequestRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("an empty path variable was sent: %v", err)
	}
	if _, err := f.RecordAuditEvent(t.Context(), &fulfillmentv1.RecordAuditEventRequest{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("an internal RPC went to the gateway: %v", err)
	}
}
