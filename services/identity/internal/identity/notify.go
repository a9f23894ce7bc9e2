package identity

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"lethe.dev/platform/errs"
)

// Templates identity can send (values of lethe.identity.v1.MessageTemplate).
const (
	TemplateRequestExtended  = 1
	TemplateExportReady      = 2
	TemplateErasureConfirmed = 3
	TemplateSharingNotice    = 4
	TemplateRequestDenied    = 5
	TemplateRequestReceived  = 6
	TemplateRequestCompleted = 7
	TemplatePolicyChange     = 50
	TemplateBusinessTransfer = 51
	TemplateComplaintUpdate  = 52
	TemplateMarketing        = 80
)

func render(template int, reference, detail string) (subject, body string, ok bool) {
	switch template {
	case TemplateRequestExtended:
		return "We need more time for your privacy request",
			"We have extended the deadline of your privacy request (" + reference + ").\n\n" + detail + "\n", true
	case TemplateExportReady:
		return "Your data export is ready",
			"The copy of your data you asked for (" + reference + ") is ready. Sign in to download it; the link expires in 7 days.\n", true
	case TemplateErasureConfirmed:
		return "Your account is being erased",
			"As you asked (" + reference + "), we are erasing your account: your personal information is deleted and your viewing statistics are anonymized. This is the last message we send you.\n", true
	case TemplateSharingNotice:
		return "Before we share your data with a partner",
			"We are telling you in advance (" + reference + ") that we plan to share some of your data with a partner, as our privacy policy allows.\n\n" + detail +
				"\n\nYou can also object, or withdraw an objection, at any time from your privacy settings. If you think we handle your data unlawfully, you can complain to us or to your data protection authority.\n", true
	case TemplateRequestDenied:
		return "We cannot act on your privacy request",
			"We have decided not to act on your privacy request (" + reference + ").\n\n" + detail + "\n", true
	case TemplateRequestReceived:
		return "We received your privacy request",
			"This confirms that we received your privacy request (" + reference + ").\n\n" + detail + "\n", true
	case TemplateRequestCompleted:
		return "Your privacy request is done",
			"We carried out your privacy request (" + reference + ").\n\n" + detail + "\n", true
	case TemplatePolicyChange:
		return "Our privacy policy is changing",
			"We have published a new version of our privacy policy (" + reference + ").\n\n" + detail +
				"\n\nYou can read every version of the policy, and see which one you accepted, in your privacy settings.\n", true
	case TemplateBusinessTransfer:
		return "Before your data passes to a new owner",
			"We are telling you in advance (" + reference + ") that your data will pass to another company as part of a business transfer, as our privacy policy allows.\n\n" + detail +
				"\n\nBefore that date you can object with the link above, or have your account erased: sign in and file an erasure request in your privacy settings. If you think we handle your data unlawfully, you can complain to us or to your data protection authority.\n", true
	case TemplateMarketing:
		return "News from us",
			"Here is our latest news (" + reference + ").\n\n" + detail + "\n\nYou can also change which mail you get in your privacy settings.\n", true
	case TemplateComplaintUpdate:
		return "About your complaint",
			"There is news about your complaint (" + reference + ").\n\n" + detail + "\n\nSign in to read it in your privacy settings.\n", true
	}
	return "", "", false
}

// Notify queues a templated email to a member. The request id makes it idempotent: a
// retried call returns the first message's id.
func (s *Service) Notify(ctx context.Context, memberID string, template int, reference, detail, requestID string) (string, error) {
	var v errs.Violations
	subject, body, ok := render(template, reference, detail)
	if !ok {
		v.Add("template", "unknown template")
	}
	if requestID == "" {
		v.Add("request_id", "is required")
	}
	if utf8.RuneCountInString(detail) > 1000 || len(reference) > 200 {
		v.Add("detail", "detail at most 1000 and reference at most 200 characters")
	}
	if err := v.Err(); err != nil {
		return "", err
	}
	// The message id is derived from the request id, so a retry inserts nothing new.
	h := sha256.Sum256([]byte("notify\x00" + requestID))
	msgID := "n" + hex.EncodeToString(h[:12])
	err := s.DB.InTx(ctx, func(tx *sql.Tx) error {
		var existing string
		if err := tx.QueryRowContext(ctx, `SELECT id FROM outbox WHERE id = $1`, msgID).Scan(&existing); err == nil {
			return nil
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		r, err := s.loadRow(ctx, tx, memberID)
		if err != nil {
			return err
		}
		m, a, err := s.decode(r)
		if err != nil {
			return err
		}
		raw, _ := json.Marshal(Message{Kind: fmt.Sprintf("template_%d", template), To: m.PII.Email, Subject: subject, Body: body})
		payload, err := a.Encrypt(raw, []byte("outbox:"+msgID))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO outbox (id, member_id, kind, payload, created_at) VALUES ($1, $2, $3, $4, $5)`, msgID, memberID, fmt.Sprintf("template_%d", template), payload, micros(s.now()))
		return err
	})
	return msgID, err
}

// MemberEventName is the resource name of an event.
func MemberEventName(id string) string { return "memberEvents/" + id }
