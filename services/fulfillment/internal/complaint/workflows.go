package complaint

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Complaint follows one complaint to its resolution: it escalates when the
// acknowledgement deadline passes unacknowledged, when 80% of the time to the
// resolution deadline is gone, and when that deadline passes unresolved; it tells the
// member when an operator acknowledges and when they resolve it.
func Complaint(ctx workflow.Context, in Input) (Result, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Minute,
			// An email that cannot be sent (the member was erased meanwhile) must not
			// hold the complaint open; bookkeeping retries for a day.
			MaximumAttempts: 200,
		},
	})
	var a *Activities
	state := "received"
	var escalations []string
	if err := workflow.SetQueryHandler(ctx, StateQuery, func() (string, error) { return state, nil }); err != nil {
		return Result{}, err
	}
	acked, resolved := false, false
	workflow.Go(ctx, func(ctx workflow.Context) {
		ack, res := workflow.GetSignalChannel(ctx, AcknowledgedSignal), workflow.GetSignalChannel(ctx, ResolvedSignal)
		for {
			sel := workflow.NewSelector(ctx)
			sel.AddReceive(ack, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); acked = true })
			sel.AddReceive(res, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); resolved, acked = true, true })
			sel.Select(ctx)
		}
	})
	// until waits for cond until the deadline; false when the deadline came first.
	until := func(deadline time.Time, cond func() bool) (bool, error) {
		d := deadline.Sub(workflow.Now(ctx))
		if cond() || d <= 0 {
			return cond(), nil
		}
		return workflow.AwaitWithTimeout(ctx, d, cond)
	}
	escalate := func(level string) {
		escalations = append(escalations, level)
		_ = workflow.ExecuteActivity(ctx, a.RecordComplaintEscalation, EscalationInput{ComplaintID: in.ComplaintID, Level: level}).Get(ctx, nil)
	}
	// notify runs in the coroutine whose ctx it is given.
	notify := func(ctx workflow.Context, event string) {
		// Best effort: the complaint's record is what counts; a lost email is logged.
		_ = workflow.ExecuteActivity(ctx, a.NotifyComplaintMember, NotifyInput{ComplaintID: in.ComplaintID, MemberID: in.MemberID, Event: event}).Get(ctx, nil)
	}

	start := workflow.Now(ctx)
	// The acknowledgement email goes out when an operator acknowledges, whatever the
	// deadlines are doing (unless the resolution came with it).
	ackHandled := false
	workflow.Go(ctx, func(ctx workflow.Context) {
		defer func() { ackHandled = true }()
		if workflow.Await(ctx, func() bool { return acked }) != nil || resolved {
			return
		}
		state = "acknowledged"
		notify(ctx, "acknowledged")
	})
	ok, err := until(in.AckDue, func() bool { return acked })
	if err != nil {
		return Result{}, err
	}
	if !ok {
		escalate(LevelAckOverdue)
	}
	atRisk := start.Add(time.Duration(float64(in.ResolveDue.Sub(start)) * 0.8))
	for _, step := range []struct {
		at    time.Time
		level string
	}{{atRisk, LevelResolveAtRisk}, {in.ResolveDue, LevelResolveOverdue}} {
		ok, err := until(step.at, func() bool { return resolved })
		if err != nil {
			return Result{}, err
		}
		if !ok {
			escalate(step.level)
		}
	}
	if err := workflow.Await(ctx, func() bool { return resolved && ackHandled }); err != nil {
		return Result{}, err
	}
	state = "resolved"
	notify(ctx, "resolved")
	return Result{State: state, Escalations: escalations}, nil
}
