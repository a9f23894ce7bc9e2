package authz

import (
	"context"
	"time"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	"lethe.dev/platform/transport"
)

// RemoteRecorder appends operator actions to the audit log fulfillment owns, over its
// internal RecordAuditEvent RPC (with the service credential and no caller metadata).
type RemoteRecorder struct {
	Client fulfillmentv1.FulfillmentServiceClient
}

// Record implements Recorder; the request id makes a retried append land once.
func (r RemoteRecorder) Record(ctx context.Context, e Event) error {
	// The action already happened: record it even if the caller gave up, but not forever.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err := r.Client.RecordAuditEvent(ctx, &fulfillmentv1.RecordAuditEventRequest{
		AuditEvent: &fulfillmentv1.AuditEvent{Actor: e.Actor, Action: e.Action, Target: e.Target, Reason: e.Reason},
		RequestId:  e.RequestID,
	})
	return err
}

// DialRecorder connects a RemoteRecorder to fulfillment at addr with the process's
// transport security. An empty addr records nothing (nil Recorder).
func DialRecorder(addr string) (Recorder, func() error, error) {
	if addr == "" {
		return nil, func() error { return nil }, nil
	}
	conn, err := transport.FromEnv().Dial(addr)
	if err != nil {
		return nil, nil, err
	}
	return RemoteRecorder{Client: fulfillmentv1.NewFulfillmentServiceClient(conn)}, conn.Close, nil
}

// AuditLink is a service's connection to the audit log. Embedded in a service, it gives
// the service the AuditRecorder method platform/app looks for.
type AuditLink struct {
	rec   Recorder
	close func() error
}

// DialAudit links to fulfillment's audit log at addr ("" links to none).
func DialAudit(addr string) (AuditLink, error) {
	rec, closer, err := DialRecorder(addr)
	return AuditLink{rec: rec, close: closer}, err
}

// AuditRecorder is where operator actions go (nil: nowhere).
func (a AuditLink) AuditRecorder() Recorder { return a.rec }

// CloseAudit closes the link.
func (a AuditLink) CloseAudit() error {
	if a.close == nil {
		return nil
	}
	return a.close()
}
