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
	// busySince is when the applier took its current batch, in
	// nanoseconds since stallEpoch, or 0 while it waits for one.
	busySince atomic.Int64
}

// stallEpoch gives the applier's times a monotonic reading.
var stallEpoch = time.Now()

// applierBusy records that the applier took a batch, or (at false) that
// it finished it.
func (st *stalls) applierBusy(busy bool) {
	if !busy {
		st.busySince.Store(0)
		return
	}
	st.busySince.Store(int64(max(time.Since(stallEpoch), 1)))
}

// watchStalls is the watchdog goroutine: it looks every stallCheck until
// the server stops.
func (s *Server) watchStalls() {
	defer s.wg.Done()
	limit := max(stallAfter, 4*s.tick)
	t := time.NewTicker(stallCheck)
	defer t.Stop()
	loops, loopSince := s.stalls.loops.Load(), time.Now()
	var loopStuck bool
	var warnedBatch int64 // the applier's batch, by busySince, said to be stuck
	for {
		select {
		case <-s.stopc:
			return
		case <-t.C:
		}
		now := time.Now()
		switch n := s.stalls.loops.Load(); {
		case n != loops:
			if loopStuck {
				s.log.Info("the protocol loop came round again", "stuck_for", now.Sub(loopSince).Round(time.Millisecond))
			}
			loops, loopSince, loopStuck = n, now, false
		case !loopStuck && now.Sub(loopSince) >= limit:
			loopStuck = true
			s.log.Error("the protocol loop has not come round for a while: this server steps no messages, starts no elections and answers no writes or reads until it does; the stack below says what holds it (report it, with this log)",
				"for", now.Sub(loopSince).Round(time.Millisecond), "stack", goroutineStack(s.stalls.driver.Load()))
		}
		since := s.stalls.busySince.Load()
		if warnedBatch != 0 && since != warnedBatch {
			s.log.Info("the applier went on")
			warnedBatch = 0
		}
		if busy := now.Sub(stallEpoch) - time.Duration(since); since != 0 && since != warnedBatch && busy >= limit {
			warnedBatch = since
			s.log.Warn("the applier has been on one batch for a while: a call of the state machine (Apply, Query, Snapshot or Restore) has not returned, and writes and reads wait for it; the stack below shows where it is",
				"for", busy.Round(time.Millisecond), "stack", goroutineStack(s.stalls.applier.Load()))
		}
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

// goroutineStack returns the stack trace of the goroutine with id, or a
// note that it was not found.
func goroutineStack(id uint64) string {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	head := []byte("goroutine " + strconv.FormatUint(id, 10) + " [")
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.HasPrefix(g, head) {
			return string(g)
		}
	}
	return "(goroutine " + strconv.FormatUint(id, 10) + " not found)"
}
