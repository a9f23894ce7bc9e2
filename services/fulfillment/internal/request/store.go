package request

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	"lethe.dev/platform/ids"
	"lethe.dev/platform/storage"
)

// States as stored (values of lethe.fulfillment.v1.RequestState), by workflow name.
var stateCodes = map[string]fulfillmentv1.RequestState{
	"received":              fulfillmentv1.RequestState_REQUEST_STATE_IN_PROGRESS,
	"awaiting_verification": fulfillmentv1.RequestState_REQUEST_STATE_AWAITING_VERIFICATION,
	"cooling_off":           fulfillmentv1.RequestState_REQUEST_STATE_COOLING_OFF,
	"on_hold":               fulfillmentv1.RequestState_REQUEST_STATE_ON_HOLD,
	"in_progress":           fulfillmentv1.RequestState_REQUEST_STATE_IN_PROGRESS,
	"completed":             fulfillmentv1.RequestState_REQUEST_STATE_COMPLETED,
	"cancelled":             fulfillmentv1.RequestState_REQUEST_STATE_CANCELLED,
	"expired":               fulfillmentv1.RequestState_REQUEST_STATE_EXPIRED,
	"denied":                fulfillmentv1.RequestState_REQUEST_STATE_DENIED,
	"failed":                fulfillmentv1.RequestState_REQUEST_STATE_FAILED,
}

// IsFinal reports whether a state ends a request.
func IsFinal(s fulfillmentv1.RequestState) bool {
	switch s {
	case fulfillmentv1.RequestState_REQUEST_STATE_COMPLETED, fulfillmentv1.RequestState_REQUEST_STATE_CANCELLED,
		fulfillmentv1.RequestState_REQUEST_STATE_EXPIRED, fulfillmentv1.RequestState_REQUEST_STATE_DENIED, fulfillmentv1.RequestState_REQUEST_STATE_FAILED:
		return true
	}
	return false
}

// SetState records a request's state; final states close it and stamp completion.
func SetState(ctx context.Context, db *storage.DB, requestID, state string, now time.Time) error {
	code := stateCodes[state]
	final := IsFinal(code)
	var completed any
	var kind int32
	var created int64
	var wasCompleted *int64
	if final {
		completed = now.UnixMicro()
		// Completion time is recorded once: when this call is the one that stamps it.
		if err := db.QueryRowContext(ctx, `SELECT kind, created_at, completed_at FROM requests WHERE id = $1`, requestID).Scan(&kind, &created, &wasCompleted); err != nil {
			return err
		}
	}
	_, err := db.ExecContext(ctx, `UPDATE requests SET state = $1, is_open = $2, completed_at = COALESCE(completed_at, $3) WHERE id = $4`, int32(code), !final, completed, requestID)
	if err == nil && final && wasCompleted == nil && code == fulfillmentv1.RequestState_REQUEST_STATE_COMPLETED {
		completion.Record(ctx, now.Sub(time.UnixMicro(created)).Seconds(), metric.WithAttributes(attribute.String("kind", kindLabel(kind))))
	}
	return err
}

// Notify queues a message to the member about a request, once per kind.
func Notify(ctx context.Context, db *storage.DB, requestID, kind, detail string, now time.Time) error {
	_, err := db.ExecContext(ctx, `INSERT INTO notifications (id, request_id, kind, detail, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (request_id, kind) DO NOTHING`,
		ids.New(), requestID, kind, detail, now.UnixMicro())
	return err
}
