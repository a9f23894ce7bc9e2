package devstack_test

import (
	"strings"
	"testing"
	"time"

	"lethe.dev/devstack"
)

// TestSweepFindsALeftoverInEachPlace: after a clean erasure the verification sweep
// passes; a leftover planted in each place the member's data can live — identity,
// preferences, sharing, fulfillment's archive storage, its archive keys, a live download
// link — makes it fail naming that place, and removing it makes it pass again.
func TestSweepFindsALeftoverInEachPlace(t *testing.T) {
	dir := t.TempDir()
	s, err := devstack.Start(t.Context(), devstack.Options{DataDir: dir, UIPort: -1, Env: map[string]string{"FULFILLMENT_COOLING_OFF": "0s"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	c := client{t, "http://" + s.Addresses["gateway"]}
	m := c.must("POST", "/v1/members", "", map[string]any{"member": map[string]any{"fullName": "Frances Allen", "email": "fran.allen@example.com", "birthDate": "1972-08-04"},
		"password": "optimizing compilers", "requestId": "signup-fa"})
	name := m["name"].(string)
	id := strings.TrimPrefix(name, "members/")
	tok := c.must("POST", "/v1/auth:signIn", "", map[string]any{"email": "fran.allen@example.com", "password": "optimizing compilers"})["accessToken"].(string)
	ex := c.must("POST", "/v1/"+name+"/privacyRequests?requestId=export-1", tok, map[string]any{"kind": "REQUEST_KIND_ACCESS"})
	c.awaitState(ex["name"].(string), tok, "REQUEST_STATE_COMPLETED")
	exportID := ex["name"].(string)[strings.LastIndex(ex["name"].(string), "/")+1:]
	er := c.must("POST", "/v1/"+name+"/privacyRequests?requestId=erase-1", tok, map[string]any{"kind": "REQUEST_KIND_ERASURE"})
	// The erasure ends the member's sessions: an operator watches it finish.
	opTok := c.must("POST", "/v1/operators:signIn", "", map[string]any{"email": s.Operator.Email, "password": s.Operator.Password, "totpCode": s.Operator.TOTPCode(time.Now())})["accessToken"].(string)
	c.awaitState(er["name"].(string), opTok, "REQUEST_STATE_COMPLETED")
	erasureID := er["name"].(string)[strings.LastIndex(er["name"].(string), "/")+1:]
	ctx := t.Context()
	if err := s.Fulfillment.VerifyErased(ctx, erasureID, id); err != nil {
		t.Fatalf("sweep after a clean erasure: %v", err)
	}

	fu := s.Fulfillment.Activities.DB
	places := []struct {
		place         string
		plant, remove func() error
	}{
		{"identity.events", func() error {
			_, err := s.Identity.Domain.DB.ExecContext(ctx, `INSERT INTO events (id, member_id, kind, created_at) VALUES ('leftover1', $1, 'test_leftover', 0)`, id)
			return err
		}, func() error {
			_, err := s.Identity.Domain.DB.ExecContext(ctx, `DELETE FROM events WHERE id = 'leftover1'`)
			return err
		}},
		{"preferences.profile_visibility", func() error {
			_, err := s.Preferences.Server.DB.ExecContext(ctx, `INSERT INTO profile_visibility (member_id, display_name, viewing_history, ratings, social_connections) VALUES ($1, 1, 1, 1, 1)`, id)
			return err
		}, func() error {
			_, err := s.Preferences.Server.DB.ExecContext(ctx, `DELETE FROM profile_visibility WHERE member_id = $1`, id)
			return err
		}},
		{"sharing.objections", func() error {
			_, err := s.Sharing.Server.DB.ExecContext(ctx, `INSERT INTO objections (id, member_id, partner_id, purpose_id, created_at) VALUES ('leftover1', $1, '', '', 0)`, id)
			return err
		}, func() error {
			_, err := s.Sharing.Server.DB.ExecContext(ctx, `DELETE FROM objections WHERE id = 'leftover1'`)
			return err
		}},
		{"fulfillment.export_archives", func() error {
			return s.Fulfillment.Activities.Archives.Bucket.WriteAll(ctx, exportID+"/parts/identity/000000.account.jsonl", []byte("ciphertext"), nil)
		}, func() error {
			return s.Fulfillment.Activities.Archives.Bucket.Delete(ctx, exportID+"/parts/identity/000000.account.jsonl")
		}},
		{"fulfillment.archive_keys", func() error {
			_, err := s.Fulfillment.Activities.Archives.Keys.Streaming(ctx, "archive/"+exportID, true)
			return err
		}, func() error {
			_, err := s.Fulfillment.Activities.Archives.Keys.Destroy(ctx, "archive/"+exportID)
			return err
		}},
		{"fulfillment.download_links", func() error {
			_, err := fu.ExecContext(ctx, `UPDATE requests SET archive_path = $1 WHERE id = $2`, exportID+"/export.zip", exportID)
			return err
		}, func() error {
			_, err := fu.ExecContext(ctx, `UPDATE requests SET archive_path = '' WHERE id = $1`, exportID)
			return err
		}},
	}
	for _, p := range places {
		if err := p.plant(); err != nil {
			t.Fatalf("plant %s: %v", p.place, err)
		}
		err := s.Fulfillment.VerifyErased(ctx, erasureID, id)
		if err == nil || !strings.Contains(err.Error(), p.place) {
			t.Errorf("a leftover in %s: sweep said %v", p.place, err)
		}
		if err := p.remove(); err != nil {
			t.Fatal(err)
		}
		if err := s.Fulfillment.VerifyErased(ctx, erasureID, id); err != nil {
			t.Errorf("after removing the %s leftover: %v", p.place, err)
		}
	}
}
