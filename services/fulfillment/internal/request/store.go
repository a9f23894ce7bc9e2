package request

import (
	"context"
	"fmt"
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
	return setState(ctx, db, requestID, state, nil, now)
}

// setState is SetState that also stores the progress steps when progress is set, in the
// same statement.
func setState(ctx context.Context, db *storage.DB, requestID, state string, progress *string, now time.Time) error {
	code := stateCodes[state]
	final := IsFinal(code)
	set, args := `state = $1, is_open = $2`, []any{int32(code), !final, requestID}
	if progress != nil {
		set, args = set+`, progress = $4`, append(args, *progress)
	}
	if !final {
		_, err := db.ExecContext(ctx, `UPDATE requests SET `+set+` WHERE id = $3`, args...)
		return err
	}
	// Completion time is recorded once: this call stamped it when it reads back its own.
	stamp := now.UnixMicro()
	args = append(args, stamp)
	var kind int32
	var created, completed int64
	err := db.QueryRowContext(ctx, `UPDATE requests SET `+set+`, completed_at = COALESCE(completed_at, $`+fmt.Sprint(len(args))+`) WHERE id = $3 RETURNING kind, created_at, completed_at`, args...).Scan(&kind, &created, &completed)
	if err != nil {
		return err
	}
	if completed == stamp && code == fulfillmentv1.RequestState_REQUEST_STATE_COMPLETED {
		completion.Record(ctx, now.Sub(time.UnixMicro(created)).Seconds(), metric.WithAttributes(attribute.String("kind", kindLabel(kind))))
	}
	return nil
}

// Notify queues a message to the member about a request, once per kind.
func Notify(ctx context.Context, db *storage.DB, requestID, kind, detail string, now time.Time) error {
	_, err := db.ExecContext(ctx, `INSERT INTO notifications (id, request_id, kind, detail, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (request_id, kind) DO NOTHING`,
		ids.New(), requestID, kind, detail, now.UnixMicro())
	return err
}
