package request

import (
	"context"
	"time"

	"go.temporal.io/sdk/activity"
)

// heartbeatQuiet is how long a data-moving attempt runs before it records its first
// heartbeat. The SDK sends an attempt's first heartbeat at once, a round trip to the
// server the caller waits for; most exports finish within it, and an attempt that dies
// this early loses less than a second of work (its retry starts over). The activities'
// heartbeat timeout (20 s) leaves ample room.
var heartbeatQuiet = time.Second // a variable for tests

// heartbeats records an attempt's heartbeats from a goroutine of its own, so the work
// never waits for one: beat hands over the latest details (replacing any not yet
// recorded), and none is recorded before the quiet period is over.
type heartbeats struct {
	ch   chan any
	done chan struct{}
}

func startHeartbeats(ctx context.Context, quiet time.Duration) *heartbeats {
	h := &heartbeats{ch: make(chan any, 1), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		timer := time.NewTimer(quiet)
		defer timer.Stop()
		var pending any
		have, awake := false, false
		for {
			select {
			case d, ok := <-h.ch:
				if !ok {
					if awake && have { // the latest progress, as the attempt ends
						activity.RecordHeartbeat(ctx, pending)
					}
					return
				}
				pending, have = d, true
			case <-timer.C:
				awake = true
			case <-ctx.Done():
				return
			}
			if awake && have {
				activity.RecordHeartbeat(ctx, pending)
				pending, have = nil, false
			}
		}
	}()
	return h
}

// beat hands over the latest details; it never blocks.
func (h *heartbeats) beat(details any) {
	for {
		select {
		case h.ch <- details:
			return
		default:
			select {
			case <-h.ch: // drop the older details not yet recorded
			default:
			}
		}
	}
}

// stop ends the goroutine, recording the latest details first if the quiet period is
// over.
func (h *heartbeats) stop() {
	close(h.ch)
	<-h.done
}
