package identity_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lethe.dev/services/identity/internal/identity"
)

// TestSMTPSenderTimesOutOnAHungRelay: a relay that accepts the connection and never
// answers must not hold a delivery (and the messages behind it) forever.
func TestSMTPSenderTimesOutOnAHungRelay(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold the connection open, say nothing
		}
	}()
	s := identity.SMTPSender{Addr: lis.Addr().String(), From: "privacy@lethe.test", Timeout: 300 * time.Millisecond}
	start := time.Now()
	err = s.Send(context.Background(), identity.Message{To: "a@example.com", Subject: "s", Body: "b"})
	if err == nil {
		t.Fatal("a relay that never answers accepted the message")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Send returned after %s; the timeout is 300 ms", d)
	}
}

// TestFileSenderKeepsAMessageIDOnce: the dev mailbox, like a mailbox dropping duplicate
// Message-IDs, holds a resent message once — also across a restart (a new FileSender).
func TestFileSenderKeepsAMessageIDOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mailbox.jsonl")
	m := identity.Message{ID: "n0123456789", To: "a@example.com", Subject: "Your account is being erased", Body: "b"}
	for range 2 {
		f := &identity.FileSender{Path: path}
		for range 2 {
			if err := f.Send(context.Background(), m); err != nil {
				t.Fatal(err)
			}
		}
	}
	raw, _ := os.ReadFile(path)
	if n := strings.Count(string(raw), "n0123456789"); n != 1 {
		t.Fatalf("the mailbox holds the message %d times", n)
	}
}
