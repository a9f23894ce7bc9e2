package identity

import (
	"context"
	"encoding/json"
	"fmt"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// FileSender is the development mailbox: it appends each message as one JSON line to a
// file under the data directory (0600), which is where a developer reads their codes.
type FileSender struct {
	Path string
	mu   sync.Mutex
}

// Send implements Sender.
func (f *FileSender) Send(_ context.Context, m Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(f.Path), 0o700); err != nil {
		return err
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
	_, err = fh.Write(append(line, '\n'))
	return err
}

// SMTPSender delivers through an SMTP relay.
type SMTPSender struct {
	Addr, From string
	Auth       smtp.Auth
}

// Send implements Sender.
func (s SMTPSender) Send(_ context.Context, m Message) error {
	if strings.ContainsAny(m.To, "\r\n") || strings.ContainsAny(m.Subject, "\r\n") {
		return fmt.Errorf("identity: refusing a header with a line break")
	}
	msg := "From: " + s.From + "\r\nTo: " + m.To + "\r\nSubject: " + m.Subject + "\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + m.Body + "\r\n"
	return smtp.SendMail(s.Addr, s.Auth, s.From, []string{m.To}, []byte(msg))
}
