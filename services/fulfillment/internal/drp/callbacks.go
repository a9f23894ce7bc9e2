package drp

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/encoding/protojson"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
)

// LoggedSignal wakes a request's callbacks workflow: a status was logged.
const LoggedSignal = "drp-status-logged"

// DefaultPollInterval is how often a callbacks workflow looks at the log without a signal.
const DefaultPollInterval = time.Minute

// callbackRounds bounds one run's history; then it continues as new.
const callbackRounds = 200

// CallbacksWorkflowID is the id of a DRP request's callbacks workflow.
func CallbacksWorkflowID(requestID string) string { return "drp-callbacks/" + requestID }

// CallbacksInput starts (or continues) a request's callbacks. Only the opaque request id
// crosses into Temporal; the callback URL and the statuses are read by the activities.
type CallbacksInput struct {
	RequestID    string
	Delivered    int64 // last log entry handled
	PollInterval time.Duration
}

// StatusCallbacks posts every status a DRP request goes through to the agent's
// status_callback, in order, each with bounded retries (best effort: an entry the agent
// never accepts is skipped), and ends after the final status.
func StatusCallbacks(ctx workflow.Context, in CallbacksInput) error {
	if in.PollInterval <= 0 {
		in.PollInterval = DefaultPollInterval
	}
	logged := workflow.GetSignalChannel(ctx, LoggedSignal)
	read := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute},
	})
	post := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 15 * time.Second,
		// Bounded: about two minutes of retries per status, then the next one.
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second, MaximumAttempts: 6},
	})
	var a *CallbackActivities
	for range callbackRounds {
		var pending []Entry
		if err := workflow.ExecuteActivity(read, a.PendingStatuses, PendingInput{RequestID: in.RequestID, After: in.Delivered}).Get(ctx, &pending); err != nil {
			return err
		}
		for _, e := range pending {
			// Best effort: a callback that keeps failing is given up on, not retried forever.
			_ = workflow.ExecuteActivity(post, a.PostStatus, PostInput{RequestID: in.RequestID, Seq: e.Seq}).Get(ctx, nil)
			in.Delivered = e.Seq
			if IsFinal(e.Status) {
				return nil
			}
		}
		sel := workflow.NewSelector(ctx)
		timerCtx, cancel := workflow.WithCancel(ctx)
		sel.AddFuture(workflow.NewTimer(timerCtx, in.PollInterval), func(workflow.Future) {})
		sel.AddReceive(logged, func(c workflow.ReceiveChannel, _ bool) {
			c.Receive(ctx, nil)
			for c.ReceiveAsync(nil) { // one look serves every signal so far
			}
		})
		sel.Select(ctx)
		cancel()
	}
	return workflow.NewContinueAsNewError(ctx, StatusCallbacks, in)
}

// PendingInput asks for the log after an entry.
type PendingInput struct {
	RequestID string
	After     int64
}

// PostInput names one log entry to deliver.
type PostInput struct {
	RequestID string
	Seq       int64
}

// CallbackActivities read the status log and post to the agents.
type CallbackActivities struct {
	Store *Store
	// Status renders a request's current Status object.
	Status func(ctx context.Context, id string) (*fulfillmentv1.DataRightsStatus, error)
	HTTP   *http.Client
}

// PendingStatuses returns the statuses logged after in.After.
func (a *CallbackActivities) PendingStatuses(ctx context.Context, in PendingInput) ([]Entry, error) {
	return a.Store.Entries(ctx, in.RequestID, in.After)
}

// PostStatus posts one logged status (with the request's current details) to the
// agent's status_callback. A non-2xx answer is retried by the workflow's policy.
func (a *CallbackActivities) PostStatus(ctx context.Context, in PostInput) error {
	rec, err := a.Store.Record(ctx, in.RequestID)
	if err != nil {
		return err
	}
	if !ValidCallback(rec.Callback) {
		return nil
	}
	e, err := a.Store.Entry(ctx, in.RequestID, in.Seq)
	if err != nil {
		return err
	}
	st, err := a.Status(ctx, in.RequestID)
	if err != nil {
		return err
	}
	if st.Status != e.Status || st.Reason != e.Reason {
		// An older status: say what it was, without details of a later state.
		st = &fulfillmentv1.DataRightsStatus{RequestId: st.RequestId, Status: e.Status, Reason: e.Reason, AgentRequestId: st.AgentRequestId,
			ReceivedAt: st.ReceivedAt, ExpectedBy: st.ExpectedBy}
	}
	body, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(st)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rec.Callback, bytes.NewReader(body))
	if err != nil {
		return temporal.NewNonRetryableApplicationError("bad callback URL", "BAD_CALLBACK", nil)
	}
	req.Header.Set("Content-Type", "application/json")
	c := a.HTTP
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	res, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("status callback: %w", err) // the URL is the agent's, not personal data
	}
	res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("status callback answered %d", res.StatusCode)
	}
	return nil
}
