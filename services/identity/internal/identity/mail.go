package identity

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"lethe.dev/platform/errs"
	"lethe.dev/platform/ids"
)

// Mail delivery is per message: each is claimed by one sender (no duplicates across
// concurrent erasures or replicas), sent with a timeout, retried with backoff, and
// dead-lettered after MailAttempts failures, so one bouncing address or a hung relay
// holds up nobody else's mail.
const (
	// MailAttempts is how often a message is tried before it is dead-lettered.
	MailAttempts = 5
	// MailSendTimeout bounds one delivery (the whole SMTP conversation).
	MailSendTimeout  = 30 * time.Second
	mailFirstBackoff = 5 * time.Second
	mailMaxBackoff   = 30 * time.Minute
	// mailClaim outlives a delivery: a sender that crashed mid-send loses its claim and
	// the message is sent again (at least once; the Message-ID lets mailboxes dedupe).
	mailClaim   = 2 * MailSendTimeout
	mailWorkers = 4
)

type queued struct {
	id, member       string
	payload, wrapped []byte
	attempts         int
}

// pendingMail lists unsent, live, unclaimed messages matching cond ($1 is now, $2 the
// optional member), oldest first.
func (s *Service) pendingMail(ctx context.Context, cond string, member string, limit int) ([]queued, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT o.id, o.payload, o.attempts, m.id, m.wrapped_key FROM outbox o JOIN members m ON m.id = o.member_id
		WHERE o.sent_at IS NULL AND o.dead_at IS NULL AND o.claimed_until < $1 AND `+cond+` ORDER BY o.created_at LIMIT $3`, micros(s.now()), member, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []queued
	for rows.Next() {
		var q queued
		if err := rows.Scan(&q.id, &q.payload, &q.attempts, &q.member, &q.wrapped); err != nil {
			return nil, err
		}
		out = append(out, q)
	}
	return out, rows.Err()
}

// DeliverPending sends up to limit messages that are due, on a few workers so one slow
// relay conversation does not hold up the rest, and returns how many were sent.
func (s *Service) DeliverPending(ctx context.Context, limit int) (int, error) {
	items, err := s.pendingMail(ctx, `o.next_attempt_at <= $1 AND $2 = ''`, "", limit)
	if err != nil {
		return 0, err
	}
	var (
		mu    sync.Mutex
		sent  int
		first error
		wg    sync.WaitGroup
		next  = make(chan queued)
	)
	for range min(mailWorkers, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for q := range next {
				ok, err := s.deliver(ctx, q)
				mu.Lock()
				if ok {
					sent++
				}
				if err != nil && first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	for _, q := range items {
		next <- q
	}
	close(next)
	wg.Wait()
	return sent, first
}

// deliverFor sends a member's own unsent mail now, whatever its backoff: erasure calls
// it first, so the final confirmation reaches the member before their address is
// destroyed. It waits for nobody else's mail. While a message of the member is neither
// sent nor dead-lettered the erasure is told to retry (MAIL_PENDING); every call is an
// attempt, so the wait is bounded by MailAttempts.
func (s *Service) deliverFor(ctx context.Context, memberID string) error {
	items, err := s.pendingMail(ctx, `o.member_id = $2`, memberID, 100)
	if err != nil {
		return err
	}
	for _, q := range items {
		if _, err := s.deliver(ctx, q); err != nil && ctx.Err() != nil {
			return err
		}
	}
	var open int
	if err := s.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox WHERE member_id = $1 AND sent_at IS NULL AND dead_at IS NULL`, memberID).Scan(&open); err != nil {
		return err
	}
	if open > 0 {
		return errs.New(errs.Unavailable, "MAIL_PENDING", "the member's last messages could not be sent yet; retry the erasure")
	}
	return nil
}

// deliver claims one message and sends it. It reports whether this call sent it; a
// message claimed by another sender is left alone (false, nil).
func (s *Service) deliver(ctx context.Context, q queued) (bool, error) {
	claim := ids.New()
	now := s.now()
	res, err := s.DB.ExecContext(ctx, `UPDATE outbox SET claim_id = $1, claimed_until = $2 WHERE id = $3 AND sent_at IS NULL AND dead_at IS NULL AND claimed_until < $4`,
		claim, micros(now.Add(mailClaim)), q.id, micros(now))
	if err != nil {
		return false, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil // another sender holds it, or it is done
	}
	sendErr := s.send(ctx, q)
	if sendErr == nil {
		_, err := s.DB.ExecContext(context.WithoutCancel(ctx), `UPDATE outbox SET sent_at = $1, claimed_until = 0 WHERE id = $2 AND claim_id = $3`, micros(s.now()), q.id, claim)
		countDelivery(ctx, mailSent)
		return err == nil, err
	}
	attempts := q.attempts + 1
	var dead any
	next := s.now().Add(mailBackoff(attempts))
	outcome := mailRetry
	if attempts >= MailAttempts {
		dead, outcome = micros(s.now()), mailDeadLetter
		if s.Logger != nil {
			s.Logger.Warn("mail dead-lettered after its last attempt", "message", q.id, "attempts", attempts)
		}
	}
	if _, err := s.DB.ExecContext(context.WithoutCancel(ctx), `UPDATE outbox SET attempts = $1, next_attempt_at = $2, dead_at = $3, claimed_until = 0 WHERE id = $4 AND claim_id = $5`,
		attempts, micros(next), dead, q.id, claim); err != nil {
		return false, err
	}
	countDelivery(ctx, outcome)
	// The relay's error can quote the recipient address: keep it out of logs.
	return false, fmt.Errorf("identity: delivering message %s failed (attempt %d, %T)", q.id, attempts, sendErr)
}

func (s *Service) send(ctx context.Context, q queued) error {
	a, err := s.Keys.MemberKey(q.member, q.wrapped)
	if err != nil {
		return err
	}
	plain, err := a.Decrypt(q.payload, []byte("outbox:"+q.id))
	if err != nil {
		return err
	}
	var m Message
	if err := json.Unmarshal(plain, &m); err != nil {
		return err
	}
	m.ID = q.id
	sctx, cancel := context.WithTimeout(ctx, MailSendTimeout)
	defer cancel()
	return s.Sender.Send(sctx, m)
}

// mailBackoff is the pause after the n-th failed attempt: 5 s doubling to 30 minutes.
func mailBackoff(n int) time.Duration {
	d := mailFirstBackoff
	for i := 1; i < n && d < mailMaxBackoff; i++ {
		d *= 2
	}
	return min(d, mailMaxBackoff)
}
