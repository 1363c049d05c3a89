package exraft

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
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

// watched is a call that the watcher may answer: it watches ctx, and until
// if it is not zero (a bound of the caller's own, such as a Session's on
// one attempt), and answers by calling wake, which sends the caller the
// watcher's answer on a channel with room for it beside the call's own
// result. Waiters are recycled, and keep their wake (recycled).
type watched struct {
	ctx   context.Context
	until time.Time
	wake  func()
	shard int  // the shard that holds it
	i     int  // its place in the shard's calls
	hit   bool // the watcher answered it
}

// wakeWith is the wake of a call to a Server whose result channel is done.
func wakeWith(done chan<- result) func() {
	return func() { done <- result{err: errWatchedCtxEnded} }
}

// recycled is w as its waiter is used again: its wake only.
func (w *watched) recycled() watched { return watched{wake: w.wake} }

// ended reports whether w's wait should end at now.
func (w *watched) ended(now time.Time) bool {
	return w.ctx.Err() != nil || !w.until.IsZero() && !now.Before(w.until)
}

// errWatchedCtxEnded is the watcher's answer to a call whose context has
// ended; the caller returns its context's error instead.
var errWatchedCtxEnded = errors.New("exraft: internal: the call's context ended")

// watchShards spreads the watched calls over locks of their own: every
// such call takes one twice, and callers on many processors would queue
// on a single one.
const watchShards = 16

// ctxWatcher polls the contexts of waiting calls while it has any.
type ctxWatcher struct {
	shards [watchShards]watchShard
	// running: a polling goroutine is on its way. It is set under
	// runMu, and read without it first. No count of the calls is kept
	// beside the shards: a counter that every call moved twice was a
	// cache line that both processors fought over.
	running atomic.Bool
	runMu   sync.Mutex
	// stopping, if set, runs in idle between the poller's finding nothing
	// to watch and its clearing running: a test adds a call there, as a
	// caller on another processor may.
	stopping func()
}

type watchShard struct {
	mu    sync.Mutex
	calls []*watched
	_     [40]byte // a cache line of its own
}

// watcher serves every server of the process: the calls it polls are few
// enough, and it has no life of its own to end with a server. It calls Err
// under a shard's lock, as the standard contexts make it an atomic load.
var watcher ctxWatcher

// add starts watching w.
func (cw *ctxWatcher) add(w *watched) {
	w.shard, w.hit = rand.IntN(watchShards), false
	sh := &cw.shards[w.shard]
	sh.mu.Lock()
	w.i = len(sh.calls)
	sh.calls = append(sh.calls, w)
	sh.mu.Unlock()
	// The call is in its shard before running is read, and the poller
	// stores running before it looks at the shards again (idle): one of
	// the two sees the other.
	if cw.running.Load() {
		return
	}
	cw.runMu.Lock()
	defer cw.runMu.Unlock()
	if !cw.running.Load() {
		cw.running.Store(true)
		go cw.poll()
	}
}

// remove stops watching w, and reports whether the watcher answered it
// first.
func (cw *ctxWatcher) remove(w *watched) (hit bool) {
	sh := &cw.shards[w.shard]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if !w.hit {
		cw.drop(sh, w.i)
	}
	return w.hit
}

// drop removes the call at i of sh, moving the last one in its place.
func (cw *ctxWatcher) drop(sh *watchShard, i int) {
	last := len(sh.calls) - 1
	sh.calls[i] = sh.calls[last]
	sh.calls[i].i = i
	sh.calls[last] = nil
	sh.calls = sh.calls[:last]
}

// poll answers the calls whose contexts have ended, every watchPeriod,
// until none is left to watch.
func (cw *ctxWatcher) poll() {
	for {
		time.Sleep(watchPeriod)
		now := time.Now()
		for i := range cw.shards {
			cw.pollShard(&cw.shards[i], now)
		}
		if cw.idle() {
			return
		}
	}
}

func (cw *ctxWatcher) pollShard(sh *watchShard, now time.Time) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for i := 0; i < len(sh.calls); {
		w := sh.calls[i]
		if !w.ended(now) {
			i++
			continue
		}
		w.hit = true
		cw.drop(sh, i)
		// The call's own result is sent at most once, so there is room
		// for this one.
		w.wake()
	}
}

// idle ends the poller's turn if nothing is left to watch.
func (cw *ctxWatcher) idle() bool {
	cw.runMu.Lock()
	defer cw.runMu.Unlock()
	if cw.watching() > 0 {
		return false
	}
	if cw.stopping != nil {
		cw.stopping()
	}
	cw.running.Store(false)
	if cw.watching() > 0 { // added meanwhile, and saw running still set
		cw.running.Store(true)
		return false
	}
	return true
}

// watching counts the calls watched, over all shards.
func (cw *ctxWatcher) watching() int {
	n := 0
	for i := range cw.shards {
		sh := &cw.shards[i]
		sh.mu.Lock()
		n += len(sh.calls)
		sh.mu.Unlock()
	}
	return n
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
	w.ctx = ctx
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
