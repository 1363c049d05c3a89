package exraft

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Waiting on a context with a deadline without its Done channel. A caller
// that waits on its result and on ctx.Done() pays for a channel that
// Done makes on first use (and cancel then closes) and for a two-way
// select rather than a receive: about a quarter of the processor time of
// a linearizable read, while the context almost never ends first. So a
// call whose deadline is far off waits on its result alone, and one
// watcher polls the contexts of all such calls (ctx.Err is an atomic
// load) every watchPeriod, answering a call whose context has ended in
// its stead. A context's end is then seen up to about watchPeriod late,
// which is why calls that are due within minWatchedTimeout wait on
// ctx.Done() as before.
const (
	watchPeriod       = time.Millisecond
	minWatchedTimeout = 100 * time.Millisecond
)

// watched is a call that the watcher may answer: the caller's result
// channel, which must have room for one result beyond the call's own.
type watched struct {
	ctx  context.Context
	done chan<- result
	i    int  // its place in ctxWatcher.calls
	hit  bool // the watcher answered it
}

// errWatchedCtxEnded is the watcher's answer to a call whose context has
// ended; the caller returns its context's error instead.
var errWatchedCtxEnded = errors.New("exraft: internal: the call's context ended")

// ctxWatcher polls the contexts of waiting calls while it has any.
type ctxWatcher struct {
	mu      sync.Mutex
	calls   []*watched
	running bool // a polling goroutine is on its way
}

// watcher serves every server of the process: the calls it polls are few
// enough, and it has no life of its own to end with a server. It calls Err
// under its lock, as the standard contexts make it an atomic load.
var watcher ctxWatcher

// add starts watching w.
func (cw *ctxWatcher) add(w *watched) {
	cw.mu.Lock()
	w.i, w.hit = len(cw.calls), false
	cw.calls = append(cw.calls, w)
	start := !cw.running
	cw.running = true
	cw.mu.Unlock()
	if start {
		go cw.poll()
	}
}

// remove stops watching w, and reports whether the watcher answered it
// first.
func (cw *ctxWatcher) remove(w *watched) (hit bool) {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	if !w.hit {
		cw.drop(w.i)
	}
	return w.hit
}

// drop removes the call at i, moving the last one in its place.
func (cw *ctxWatcher) drop(i int) {
	last := len(cw.calls) - 1
	cw.calls[i] = cw.calls[last]
	cw.calls[i].i = i
	cw.calls[last] = nil
	cw.calls = cw.calls[:last]
}

// poll answers the calls whose contexts have ended, every watchPeriod,
// until none is left to watch.
func (cw *ctxWatcher) poll() {
	for {
		time.Sleep(watchPeriod)
		cw.mu.Lock()
		for i := 0; i < len(cw.calls); {
			w := cw.calls[i]
			if w.ctx.Err() == nil {
				i++
				continue
			}
			w.hit = true
			cw.drop(i)
			// The call's own result is sent at most once, so there is
			// room for this one.
			w.done <- result{err: errWatchedCtxEnded}
		}
		idle := len(cw.calls) == 0
		if idle {
			cw.running = false
		}
		cw.mu.Unlock()
		if idle {
			return
		}
	}
}

// awaitWatched is await for a caller that read the clock at start, just
// before it handed its request on, and whose result channel done has room
// for two results (see resultRoom).
func awaitWatched(ctx context.Context, s *Server, done chan result, w *watched, start time.Time) (result, error) {
	if !watchable(ctx, start) || s.isStopped() {
		return await(ctx, s, done)
	}
	// The server had not stopped once the request was queued: its result
	// will come (see await).
	w.ctx, w.done = ctx, done
	watcher.add(w)
	r := <-done
	if r.err == errWatchedCtxEnded {
		w.ctx = nil
		return result{}, ctx.Err()
	}
	if watcher.remove(w) {
		<-done // the watcher's answer, sent after the result
	}
	w.ctx = nil
	return r, nil
}

// watchable reports whether a call made at start with ctx may leave its
// context to the watcher: one that has a deadline at least
// minWatchedTimeout away.
func watchable(ctx context.Context, start time.Time) bool {
	d, ok := ctx.Deadline()
	return ok && d.Sub(start) >= minWatchedTimeout
}

// resultRoom is the capacity of the result channel of a request whose
// caller may wait with awaitWatched: its result, and the watcher's.
const resultRoom = 2
