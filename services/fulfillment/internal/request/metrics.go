package request

import (
	"context"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	"lethe.dev/platform/storage"
)

// AtRiskWindow is how close to its due date an open request counts as at risk (the
// operators' at_risk filter uses the same window).
const AtRiskWindow = 3 * 24 * time.Hour

var completion, _ = otel.Meter("lethe.dev/fulfillment").Float64Histogram("lethe.privacy_request.completion",
	metric.WithUnit("s"), metric.WithDescription("Time from filing to completion of privacy requests, by kind."),
	metric.WithExplicitBucketBoundaries(1, 10, 60, 600, 3600, 6*3600, 86400, 3*86400, 7*86400, 14*86400, 30*86400, 45*86400, 90*86400))

func kindLabel(k int32) string {
	return strings.TrimPrefix(fulfillmentv1.RequestKind(k).String(), "REQUEST_KIND_")
}

func stateLabel(s int32) string {
	return strings.TrimPrefix(fulfillmentv1.RequestState(s).String(), "REQUEST_STATE_")
}

// RegisterMetrics registers the gauges read from db at each scrape: requests by kind and
// state, open requests at risk and overdue, and requests that breached their deadline.
// Labels are kinds and states only. Unregister the result when db closes.
func RegisterMetrics(db *storage.DB, now func() time.Time) (metric.Registration, error) {
	m := otel.Meter("lethe.dev/fulfillment")
	byState, err := m.Int64ObservableGauge("lethe.privacy_requests", metric.WithDescription("Privacy requests by kind and state."))
	if err != nil {
		return nil, err
	}
	atRisk, err := m.Int64ObservableGauge("lethe.privacy_requests.at_risk", metric.WithDescription("Open privacy requests due within three days, by kind."))
	if err != nil {
		return nil, err
	}
	overdue, err := m.Int64ObservableGauge("lethe.privacy_requests.overdue", metric.WithDescription("Open privacy requests past their due date, by kind."))
	if err != nil {
		return nil, err
	}
	breached, err := m.Int64ObservableGauge("lethe.privacy_requests.breached", metric.WithDescription("Privacy requests that missed their legal deadline, by kind."))
	if err != nil {
		return nil, err
	}
	return m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		t := now().UnixMicro()
		rows, err := db.QueryContext(ctx, `SELECT kind, state, COUNT(*),
			SUM(CASE WHEN is_open AND due_at >= $1 AND due_at < $2 THEN 1 ELSE 0 END),
			SUM(CASE WHEN is_open AND due_at < $1 THEN 1 ELSE 0 END),
			SUM(CASE WHEN breached THEN 1 ELSE 0 END)
			FROM requests GROUP BY kind, state`, t, t+AtRiskWindow.Microseconds())
		if err != nil {
			return err
		}
		defer rows.Close()
		risk, late, broke := map[string]int64{}, map[string]int64{}, map[string]int64{}
		for _, k := range fulfillmentv1.RequestKind_value {
			if k != 0 {
				risk[kindLabel(k)], late[kindLabel(k)], broke[kindLabel(k)] = 0, 0, 0
			}
		}
		for rows.Next() {
			var kind, state int32
			var n, r, l, b int64
			if err := rows.Scan(&kind, &state, &n, &r, &l, &b); err != nil {
				return err
			}
			o.ObserveInt64(byState, n, metric.WithAttributes(attribute.String("kind", kindLabel(kind)), attribute.String("state", stateLabel(state))))
			risk[kindLabel(kind)] += r
			late[kindLabel(kind)] += l
			broke[kindLabel(kind)] += b
		}
		for k := range risk {
			a := metric.WithAttributes(attribute.String("kind", k))
			o.ObserveInt64(atRisk, risk[k], a)
			o.ObserveInt64(overdue, late[k], a)
			o.ObserveInt64(breached, broke[k], a)
		}
		return rows.Err()
	}, byState, atRisk, overdue, breached)
}
