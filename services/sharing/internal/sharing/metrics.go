package sharing

import (
	"context"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/platform/storage"
)

// ackLatency is the time from an onward erasure's first delivery to the processor's
// acknowledgement (the webhook's 200 or its signed callback), by partner. Partner ids
// are the operator's slugs for businesses, not personal data.
var ackLatency, _ = otel.Meter("lethe.dev/sharing").Float64Histogram("lethe.onward_erasure.ack_latency",
	metric.WithUnit("s"), metric.WithDescription("Time from an onward erasure's first delivery to the processor's acknowledgement, by partner."),
	metric.WithExplicitBucketBoundaries(0.1, 1, 10, 60, 600, 3600, 6*3600, 86400, 3*86400, 7*86400, 14*86400, 30*86400))

// recordAck records one first acknowledgement; first is when the erasure was first sent
// (microseconds; 0 when unknown).
func recordAck(ctx context.Context, partner string, first, acked int64) {
	if first <= 0 || acked < first {
		return
	}
	ackLatency.Record(ctx, time.Duration((acked-first)*int64(time.Microsecond)).Seconds(), metric.WithAttributes(attribute.String("partner", partner)))
}

func onwardStateLabel(s int32) string {
	return strings.TrimPrefix(sharingv1.OnwardErasureState(s).String(), "ONWARD_ERASURE_STATE_")
}

// RegisterMetrics registers the gauge read from db at each scrape: onward erasures by
// partner and state (SENT and FAILED ones still wait for their processor). Unregister
// the result when db closes.
func RegisterMetrics(db *storage.DB) (metric.Registration, error) {
	m := otel.Meter("lethe.dev/sharing")
	byState, err := m.Int64ObservableGauge("lethe.onward_erasures", metric.WithDescription("Onward erasures sent to processors, by partner and state."))
	if err != nil {
		return nil, err
	}
	return m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		rows, err := db.QueryContext(ctx, `SELECT partner_id, state, COUNT(*) FROM onward_erasures GROUP BY partner_id, state`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var pid string
			var state int32
			var n int64
			if err := rows.Scan(&pid, &state, &n); err != nil {
				return err
			}
			o.ObserveInt64(byState, n, metric.WithAttributes(attribute.String("partner", pid), attribute.String("state", onwardStateLabel(state))))
		}
		return rows.Err()
	}, byState)
}
