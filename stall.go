package exraft

import (
	"bytes"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"
)

// A server whose protocol loop or applier stops coming round says so, with
// the stuck goroutine's stack. Stuck, a server looks merely quiet: it
// answers Status from the last view it published, and logs nothing. The
// loop comes round at least once a tick (its ticker), so one that has not
// for stallAfter, and several ticks, is held: by a call that does not
// return, a lock, or a bug, which the stack names. The applier may be held
// by the state machine too (an Apply, Query or Restore that does not
// return, or takes long), which is worth saying as well.

// stallAfter is how long the protocol loop, or the applier on one batch,
// may go before the watchdog says so; it looks every stallCheck. Tests
// shorten both.
var (
	stallAfter = 2 * time.Second
	stallCheck = 500 * time.Millisecond
)

// stalls is what the watchdog reads.
type stalls struct {
	loops   atomic.Uint64 // the protocol loop's rounds
	driver  atomic.Uint64 // the protocol loop's goroutine, for its stack
	applier atomic.Uint64 // the applier's goroutine
	// batches moves as the applier takes a batch and as it finishes it:
	// odd while it works on one.
	batches atomic.Uint64
}

// batchBegan and batchEnded mark the applier's batches.
func (st *stalls) batchBegan() { st.batches.Add(1) }
func (st *stalls) batchEnded() { st.batches.Add(1) }

// stallClock is the watchdog's view of one counter: how long it has stood
// still, counted only while the watchdog itself ran on time.
type stallClock struct {
	seen   uint64
	since  time.Time
	warned bool
}

// look takes in the counter's value n at now, and reports how long it
// has stood still and whether it moved since the last look.
func (c *stallClock) look(n uint64, now time.Time) (still time.Duration, moved bool) {
	if n != c.seen {
		c.seen, c.since = n, now
		return 0, true
	}
	return now.Sub(c.since), false
}

// watchdog is the state of a server's watchStalls.
type watchdog struct {
	s           *Server
	limit       time.Duration
	loop, apply stallClock
	last        time.Time // the last look
}

func newWatchdog(s *Server, now time.Time) *watchdog {
	return &watchdog{s: s, limit: max(stallAfter, 4*s.tick), last: now,
		loop:  stallClock{seen: s.stalls.loops.Load(), since: now},
		apply: stallClock{seen: s.stalls.batches.Load(), since: now}}
}

// watchStalls is the watchdog goroutine: it looks every stallCheck until
// the server stops.
func (s *Server) watchStalls() {
	defer s.wg.Done()
	t := time.NewTicker(stallCheck)
	defer t.Stop()
	w := newWatchdog(s, time.Now())
	for {
		select {
		case <-s.stopc:
			return
		case <-t.C:
		}
		w.check(time.Now())
	}
}

// check looks at the protocol loop and the applier at now.
func (w *watchdog) check(now time.Time) {
	if now.Sub(w.last) > 4*stallCheck {
		// The watchdog was held too: the process was paused (SIGSTOP, a
		// machine asleep) or starved, and the others were not to blame.
		w.loop.since, w.apply.since = now, now
	}
	w.last = now
	w.lookAtLoop(now)
	w.lookAtApplier(now)
}

func (w *watchdog) lookAtLoop(now time.Time) {
	c, st := &w.loop, &w.s.stalls
	stuckFor := now.Sub(c.since)
	still, moved := c.look(st.loops.Load(), now)
	switch {
	case moved && c.warned:
		c.warned = false
		w.s.log.Info("the protocol loop came round again", "stuck_for", stuckFor.Round(time.Millisecond))
	case !moved && !c.warned && still >= w.limit:
		c.warned = true
		w.s.meters.loopStalls.Add(1)
		w.s.log.Error("the protocol loop has not come round for a while: this server steps no messages, starts no elections and answers no writes or reads until it does; the stack below says what holds it (report it, with this log)",
			"for", still.Round(time.Millisecond), "stack", goroutineStack(st.driver.Load()))
	}
}

func (w *watchdog) lookAtApplier(now time.Time) {
	c, st := &w.apply, &w.s.stalls
	n := st.batches.Load()
	still, moved := c.look(n, now)
	switch {
	case moved && c.warned:
		c.warned = false
		w.s.log.Info("the applier went on")
	case !moved && !c.warned && n%2 == 1 && still >= w.limit:
		c.warned = true
		w.s.meters.applierStalls.Add(1)
		w.s.log.Warn("the applier has been on one batch for a while: a call of the state machine (Apply, Query, Snapshot or Restore) has not returned, and writes and reads wait for it; the stack below shows where it is",
			"for", still.Round(time.Millisecond), "stack", goroutineStack(st.applier.Load()))
	}
}

// goroutineID is the calling goroutine's id, as its stack trace names it.
func goroutineID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		id, _ := strconv.ParseUint(string(b[:i]), 10, 64)
		return id
	}
	return 0
}

// allStacks returns the stack traces of every goroutine.
func allStacks() []byte {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return buf[:n]
		}
		buf = make([]byte, 2*len(buf))
	}
}

// goroutineStack returns the stack trace of the goroutine with id, or a
// note that it was not found.
func goroutineStack(id uint64) string {
	head := []byte("goroutine " + strconv.FormatUint(id, 10) + " [")
	for _, g := range bytes.Split(allStacks(), []byte("\n\n")) {
		if bytes.HasPrefix(g, head) {
			return string(g)
		}
	}
	return "(goroutine " + strconv.FormatUint(id, 10) + " not found)"
}
