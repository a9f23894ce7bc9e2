package identity

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"lethe.dev/platform/storage"
)

// Mail delivery outcomes, the values of lethe_mail_deliveries_total's outcome label.
const (
	mailSent       = "sent"        // the relay (or the dev mailbox) accepted the message
	mailRetry      = "retry"       // the attempt failed; the message is tried again after a backoff
	mailDeadLetter = "dead_letter" // the last attempt failed; the message is dead-lettered
)

var mailDeliveries, _ = otel.Meter("lethe.dev/identity").Int64Counter("lethe.mail.deliveries",
	metric.WithDescription("Mail delivery attempts by outcome: sent, retry (failed, tried again later), dead_letter (failed for the last time)."))

func init() {
	// Every outcome is exported from the start, so a rate over it is defined at zero.
	for _, o := range []string{mailSent, mailRetry, mailDeadLetter} {
		mailDeliveries.Add(context.Background(), 0, metric.WithAttributes(attribute.String("outcome", o)))
	}
}

func countDelivery(ctx context.Context, outcome string) {
	mailDeliveries.Add(context.WithoutCancel(ctx), 1, metric.WithAttributes(attribute.String("outcome", outcome)))
}

// RegisterMetrics registers the gauges read from db at each scrape: the outbox's depth
// (messages waiting to be sent, and dead-lettered ones) and the age of its oldest
// waiting message, which grows when delivery is stuck. Unregister the result when db
// closes.
func RegisterMetrics(db *storage.DB, now func() time.Time) (metric.Registration, error) {
	m := otel.Meter("lethe.dev/identity")
	depth, err := m.Int64ObservableGauge("lethe.mail.outbox", metric.WithDescription("Outbox messages by state: pending (not sent yet) and dead (dead-lettered, never to be sent)."))
	if err != nil {
		return nil, err
	}
	oldest, err := m.Float64ObservableGauge("lethe.mail.outbox.oldest_pending_age", metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest message not sent yet (0 when none waits)."))
	if err != nil {
		return nil, err
	}
	return m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var pending, dead int64
		var first *int64
		if err := db.QueryRowContext(ctx, `SELECT
			COALESCE(SUM(CASE WHEN sent_at IS NULL AND dead_at IS NULL THEN 1 ELSE 0 END), 0),
			COALESCE(SUM(CASE WHEN dead_at IS NOT NULL THEN 1 ELSE 0 END), 0),
			MIN(CASE WHEN sent_at IS NULL AND dead_at IS NULL THEN created_at END)
			FROM outbox`).Scan(&pending, &dead, &first); err != nil {
			return err
		}
		o.ObserveInt64(depth, pending, metric.WithAttributes(attribute.String("state", "pending")))
		o.ObserveInt64(depth, dead, metric.WithAttributes(attribute.String("state", "dead")))
		age := 0.0
		if first != nil {
			age = max(0, now().Sub(time.UnixMicro(*first)).Seconds())
		}
		o.ObserveFloat64(oldest, age)
		return nil
	}, depth, oldest)
}
