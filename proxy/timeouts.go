package proxy

import (
	"context"
	"sync/atomic"
	"time"
)

// Phases of one try, each bounded by one of the route's timeouts. A try moves
// forward only: connect → send → header → read.
const (
	// phaseConnect runs from the start of the try until the transport has a
	// connection (Timeouts.Connect).
	phaseConnect int32 = iota
	// phaseSend runs until the request is written; the timer restarts on
	// every read of the request body by the transport (Timeouts.Send).
	phaseSend
	// phaseHeader runs from the request written to the response headers
	// (Timeouts.ResponseHeader).
	phaseHeader
	// phaseRead bounds the time between two reads of the response body
	// (Timeouts.Read).
	phaseRead
	numPhases
)

// tryTimer is the one timer of one try. When it fires, it cancels the try's
// context with the typed cause of the current phase, so the failure is
// classified as connect_timeout or upstream_timeout and never confused with a
// client that went away.
type tryTimer struct {
	r       *route
	cancel  context.CancelCauseFunc
	t       *time.Timer
	phase   atomic.Int32
	stopped atomic.Bool
}

// start arms the timer in the connect phase.
func (tt *tryTimer) start(r *route, cancel context.CancelCauseFunc) {
	tt.r = r
	tt.cancel = cancel
	d := r.durs[phaseConnect]
	if d <= 0 {
		d = time.Duration(1<<63 - 1)
	}
	tt.t = time.AfterFunc(d, tt.fire)
}

func (tt *tryTimer) fire() {
	if tt.stopped.Load() {
		return
	}
	tt.cancel(tt.r.causes[tt.phase.Load()])
}

// enter moves the try to phase ph (never backwards) and restarts the timer
// with that phase's timeout.
func (tt *tryTimer) enter(ph int32) {
	for {
		cur := tt.phase.Load()
		if ph <= cur {
			return
		}
		if tt.phase.CompareAndSwap(cur, ph) {
			break
		}
	}
	tt.reset(ph)
}

// touch restarts the current phase's timer: progress was made.
func (tt *tryTimer) touch() { tt.reset(tt.phase.Load()) }

func (tt *tryTimer) reset(ph int32) {
	if tt.stopped.Load() {
		return
	}
	if d := tt.r.durs[ph]; d > 0 {
		tt.t.Reset(d)
	} else {
		tt.t.Stop()
	}
}

// stop disarms the timer for good.
func (tt *tryTimer) stop() {
	tt.stopped.Store(true)
	tt.t.Stop()
}
