package exraft

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Deadlines shared in slots. A context.WithTimeout costs a timer, a
// cancelCtx and a place among its parent's children; a remote call pays
// for one on the server (rpcService.handle) and a Session's attempt for
// another on the client, about as much processor time as the Write they
// bound. Calls with deadlines in the same slot of slotWidth share a
// deadlineSlot instead: one channel and one timer, found with an atomic
// load in the common case, where the calls of a busy connection all have
// about the same timeout and so end in the same slot as the last one.
//
// A slot ends at the start of its span, so a deadline is kept early by
// less than slotWidth; the wheel only serves timeouts of minWheelTimeout
// or more, of which that is at most 2%, and callers use WithTimeout for
// shorter ones.
const (
	slotWidth       = 2 * time.Millisecond
	minWheelTimeout = 100 * time.Millisecond
)

// wheelEpoch numbers the slots: slot n ends at wheelEpoch + n*slotWidth. It
// has a monotonic reading, as the times compared with it.
var wheelEpoch = time.Now()

// deadlineWheel hands out deadlineSlots. A zero wheel is ready to use.
type deadlineWheel struct {
	last    atomic.Pointer[deadlineSlot] // the slot handed out last
	mu      sync.Mutex
	slots   map[int64]*deadlineSlot // those not ended yet
	stopped bool
}

// deadlineSlot is a context.Context without values that ends at its time,
// with context.DeadlineExceeded, or when its wheel stops, with
// context.Canceled.
type deadlineSlot struct {
	n     int64
	at    time.Time
	done  chan struct{}
	err   error // set before done closes
	timer *time.Timer
}

// slot returns a context that ends within slotWidth before timeout from now,
// or nil if timeout is below minWheelTimeout or the wheel has stopped.
func (w *deadlineWheel) slot(timeout time.Duration) *deadlineSlot {
	if timeout < minWheelTimeout {
		return nil
	}
	elapsed := time.Since(wheelEpoch) // the monotonic clock alone: cheaper than time.Now
	n := int64((elapsed + timeout) / slotWidth)
	if sl := w.last.Load(); sl != nil && sl.n == n {
		return sl
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return nil
	}
	sl := w.slots[n]
	if sl == nil {
		sl = &deadlineSlot{n: n, at: wheelEpoch.Add(time.Duration(n) * slotWidth), done: make(chan struct{})}
		if w.slots == nil {
			w.slots = map[int64]*deadlineSlot{}
		}
		w.slots[n] = sl
		sl.timer = time.AfterFunc(time.Duration(n)*slotWidth-elapsed, func() { w.end(sl, context.DeadlineExceeded) })
	}
	w.last.Store(sl)
	return sl
}

// end ends sl with err, unless it has ended already.
func (w *deadlineWheel) end(sl *deadlineSlot, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if sl.err == nil {
		sl.err = err
		close(sl.done)
		delete(w.slots, sl.n)
	}
}

// stop ends every slot with context.Canceled, and hands out none from then
// on: a server's wheel stops with the server.
func (w *deadlineWheel) stop() {
	w.mu.Lock()
	w.stopped = true
	w.last.Store(nil)
	slots := w.slots
	w.slots = nil
	w.mu.Unlock()
	for _, sl := range slots {
		sl.timer.Stop()
		w.end(sl, context.Canceled)
	}
}

func (sl *deadlineSlot) Deadline() (time.Time, bool) { return sl.at, true }
func (sl *deadlineSlot) Done() <-chan struct{}       { return sl.done }
func (sl *deadlineSlot) Value(any) any               { return nil }

func (sl *deadlineSlot) Err() error {
	select {
	case <-sl.done:
		return sl.err
	default:
		return nil
	}
}
