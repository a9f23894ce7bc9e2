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

// archiveSize is the size of each export archive built; its _sum is the bytes exported.
var archiveSize, _ = otel.Meter("lethe.dev/fulfillment").Int64Histogram("lethe.export.archive.size",
	metric.WithUnit("By"), metric.WithDescription("Size of the export archives built (ZIP, before encryption at rest)."),
	metric.WithExplicitBucketBoundaries(1<<10, 16<<10, 128<<10, 1<<20, 8<<20, 64<<20, 256<<20, 1<<30, 4<<30, 16<<30))

// downloaded counts the archive bytes served to members and operators.
var downloaded, _ = otel.Meter("lethe.dev/fulfillment").Int64Counter("lethe.export.downloaded",
	metric.WithUnit("By"), metric.WithDescription("Export archive bytes served by download links."))

// CountDownloaded adds n bytes served by a download link.
func CountDownloaded(ctx context.Context, n int64) {
	downloaded.Add(context.WithoutCancel(ctx), n)
}

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
	onwardBreaches, err := m.Int64ObservableGauge("lethe.onward_erasure.breaches", metric.WithDescription("Onward erasures a processor did not acknowledge by its deadline, by partner."))
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
		if err := rows.Err(); err != nil {
			return err
		}
		return observeOnwardBreaches(ctx, db, o, onwardBreaches)
	}, byState, atRisk, overdue, breached, onwardBreaches)
}

// onwardBreachLevel prefixes the escalation level of a processor's missed deadline
// ("onward-breach:partners/ID").
const onwardBreachLevel = "onward-breach:"

func observeOnwardBreaches(ctx context.Context, db *storage.DB, o metric.Observer, g metric.Int64ObservableGauge) error {
	rows, err := db.QueryContext(ctx, `SELECT level, COUNT(*) FROM escalations WHERE level LIKE 'onward-breach:%' GROUP BY level`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var level string
		var n int64
		if err := rows.Scan(&level, &n); err != nil {
			return err
		}
		partner := strings.TrimPrefix(strings.TrimPrefix(level, onwardBreachLevel), "partners/")
		o.ObserveInt64(g, n, metric.WithAttributes(attribute.String("partner", partner)))
	}
	return rows.Err()
}
