package identity

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// FileSender is the development mailbox: it appends each message as one JSON line to a
// file under the data directory (0600), which is where a developer reads their codes.
// Like a mailbox that drops duplicate Message-IDs, it keeps a message id it already
// holds only once (a resend after a crash between sending and recording it).
type FileSender struct {
	Path string
	mu   sync.Mutex
	seen map[string]bool
}

// Send implements Sender.
func (f *FileSender) Send(_ context.Context, m Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(f.Path), 0o700); err != nil {
		return err
	}
	if f.seen == nil {
		f.seen = map[string]bool{}
		if fh, err := os.Open(f.Path); err == nil {
			sc := bufio.NewScanner(fh)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				var old struct{ ID string }
				if json.Unmarshal(sc.Bytes(), &old) == nil && old.ID != "" {
					f.seen[old.ID] = true
				}
			}
			fh.Close()
		}
	}
	if m.ID != "" && f.seen[m.ID] {
		return nil
	}
	fh, err := os.OpenFile(f.Path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer fh.Close()
	line, _ := json.Marshal(struct {
		Message
		Time time.Time `json:"time"`
	}{m, time.Now().UTC()})
	if _, err = fh.Write(append(line, '\n')); err == nil && m.ID != "" {
		f.seen[m.ID] = true
	}
	return err
}

// SMTPSender delivers through an SMTP relay: the whole conversation is bounded by the
// context's deadline (or Timeout), STARTTLS is used when offered, and each message
// carries its outbox id as Message-ID, so a resend after a crash can be recognised.
type SMTPSender struct {
	Addr, From string
	Auth       smtp.Auth
	Timeout    time.Duration // 0: MailSendTimeout
}

// Send implements Sender.
func (s SMTPSender) Send(ctx context.Context, m Message) error {
	if strings.ContainsAny(m.To, "\r\n") || strings.ContainsAny(m.Subject, "\r\n") || strings.ContainsAny(s.From, "\r\n") {
		return fmt.Errorf("identity: refusing a header with a line break")
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = MailSendTimeout
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	dialer := net.Dialer{Deadline: deadline}
	conn, err := dialer.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(s.Addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return err
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}); err != nil {
			return err
		}
	}
	if s.Auth != nil {
		if err := c.Auth(s.Auth); err != nil {
			return err
		}
	}
	if err := c.Mail(s.From); err != nil {
		return err
	}
	if err := c.Rcpt(m.To); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	msg := "From: " + s.From + "\r\nTo: " + m.To + "\r\nSubject: " + m.Subject + "\r\n"
	if m.ID != "" {
		msg += "Message-ID: <" + m.ID + "@lethe>\r\n"
	}
	msg += "Content-Type: text/plain; charset=utf-8\r\n\r\n" + m.Body + "\r\n"
	if _, err := io.WriteString(w, msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}
