package identity_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	identityv1 "lethe.dev/gen/lethe/identity/v1"
	"lethe.dev/services/identity"
	domain "lethe.dev/services/identity/internal/identity"
)

// countingSender records every message it is given, slowly, so concurrent senders
// overlap.
type countingSender struct {
	mu   sync.Mutex
	sent map[string]int
}

func (c *countingSender) Send(_ context.Context, m domain.Message) error {
	time.Sleep(5 * time.Millisecond)
	c.mu.Lock()
	c.sent[m.ID]++
	c.mu.Unlock()
	return nil
}

// TestReplicasDeliverEachMessageOnce: two identity replicas on one database deliver the
// same outbox at the same time, each with four workers; every message is claimed by one
// of them and sent exactly once.
func TestReplicasDeliverEachMessageOnce(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		cfg := identity.Config{ListenAddr: "127.0.0.1:0", DatabaseURL: h.dbURL, DataDir: h.dir,
			KEKURI: "file:" + filepath.Join(h.dir, "kek.json"), KeyRotation: 24 * time.Hour}
		replica, err := identity.New(ctx, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer replica.Close()
		const messages = 40
		for i := range messages {
			m := ada()
			m.Email = fmt.Sprintf("member%02d@example.com", i)
			mem := create(t, h, m, fmt.Sprintf("signup-%d", i))
			if _, err := h.client.NotifyMember(ctx, &identityv1.NotifyMemberRequest{Name: mem.GetName(), Template: identityv1.MessageTemplate_MESSAGE_TEMPLATE_EXPORT_READY,
				Reference: "members/x/privacyRequests/r", RequestId: fmt.Sprintf("ready-%d", i)}); err != nil {
				t.Fatal(err)
			}
		}
		out := &countingSender{sent: map[string]int{}}
		h.svc.Domain.Sender, replica.Domain.Sender = out, out
		var wg sync.WaitGroup
		for _, d := range []*domain.Service{h.svc.Domain, replica.Domain, h.svc.Domain, replica.Domain} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 20 {
					if _, err := d.DeliverPending(ctx, 100); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if len(out.sent) != messages {
			t.Fatalf("%d distinct messages sent, want %d", len(out.sent), messages)
		}
		for id, n := range out.sent {
			if n != 1 {
				t.Errorf("message %s sent %d times", id, n)
			}
		}
	})
}
