package devstack_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"lethe.dev/devstack"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/platform/transport"
)

// TestOnwardAcknowledgementEndsTheWait: with an hourly poll, a processor that calls back
// must end the onward erasure through the onward-ack signal (sharing → fulfillment's
// workflow), not at the next poll: the erasure completes in seconds and the processor
// is sent the erasure exactly once. Before the signal was sent, the erasure waited for
// the hourly poll.
func TestOnwardAcknowledgementEndsTheWait(t *testing.T) {
	dir := t.TempDir()
	s, err := devstack.Start(t.Context(), devstack.Options{DataDir: dir, UIPort: -1, Env: map[string]string{
		"FULFILLMENT_COOLING_OFF": "0s", "FULFILLMENT_ONWARD_POLL_INTERVAL": "1h",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	c := client{t, "http://" + s.Addresses["gateway"]}
	conn, err := transport.FromEnv().Dial(s.Addresses["sharing"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sh := sharingv1.NewSharingServiceClient(conn)
	good := newProcessor(t, true)
	if _, err := sh.CreatePartner(t.Context(), &sharingv1.CreatePartnerRequest{PartnerId: "acme-pay", Partner: &sharingv1.Partner{
		DisplayName: "acme-pay", Kind: sharingv1.PartnerKind_PARTNER_KIND_PROCESSOR, Purposes: []string{"payment_processing"},
		DataCategories: []string{"user.financial"}, AgreementRef: "DPA-acme", ErasureWebhookUrl: good.srv.URL + "/erase",
		WebhookSecret: good.secret, AckDeadline: durationpb.New(72 * time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	m := c.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": "Dorothy Vaughan", "email": "dorothy@example.com", "birthDate": "1970-09-20"},
		"password": "fortran for everyone", "requestId": "signup-dv"})
	name := m["name"].(string)
	tok := c.must("POST", "/v1/auth:signIn", "", map[string]any{"email": "dorothy@example.com", "password": "fortran for everyone"})["accessToken"].(string)
	if res, err := sh.AuthorizeDisclosure(t.Context(), &sharingv1.AuthorizeDisclosureRequest{Member: name, Partner: "partners/acme-pay", Purpose: "payment_processing",
		DataCategories: []string{"user.financial"}, RequestId: "pay-dv"}); err != nil || !res.GetAllowed() {
		t.Fatalf("disclosure: %v %v", res, err)
	}
	er := c.must("POST", "/v1/"+name+"/privacyRequests?requestId=erase-dv", tok, map[string]any{"kind": "REQUEST_KIND_ERASURE"})
	reqID := er["name"].(string)[strings.LastIndex(er["name"].(string), "/")+1:]
	deadline := time.Now().Add(60 * time.Second)
	for {
		var state int
		if err := s.Fulfillment.Activities.DB.QueryRowContext(t.Context(), `SELECT state FROM requests WHERE id = $1`, reqID).Scan(&state); err != nil {
			t.Fatal(err)
		}
		if state == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the erasure still waits (state %d) 60 s after the processor called back; the poll is hourly", state)
		}
		time.Sleep(100 * time.Millisecond)
	}
	good.mu.Lock()
	defer good.mu.Unlock()
	if len(good.subjects) != 1 {
		t.Fatalf("the processor was sent the erasure %d times, want once", len(good.subjects))
	}
}
