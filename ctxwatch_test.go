package exraft

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests of the watcher that answers, in their stead, the calls waiting on
// their result alone whose contexts end (ctxwatch.go).

// gateSMInternal holds every Apply of a command that starts with "block"
// until open; held closes once one is held.
type gateSMInternal struct {
	counterSM
	once, holds sync.Once
	gate, held  chan struct{}
}

func newGateSM() *gateSMInternal {
	return &gateSMInternal{gate: make(chan struct{}), held: make(chan struct{})}
}

func (g *gateSMInternal) Apply(cmd []byte) []byte {
	if bytes.HasPrefix(cmd, []byte("block")) {
		g.holds.Do(func() { close(g.held) })
		<-g.gate
	}
	return g.counterSM.Apply(cmd)
}

func (g *gateSMInternal) open() { g.once.Do(func() { close(g.gate) }) }

// watchedCalls is how many calls the watcher watches.
func watchedCalls() int { return watcher.watching() }

// blockedServer is a one-server cluster whose applier is held in the Apply
// of a first write until the test ends.
func blockedServer(t *testing.T) *Server {
	t.Helper()
	sm := newGateSM()
	s := startAloneWith(t, sm, Config{})
	t.Cleanup(sm.open) // before Stop, which waits for the applier
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.AwaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	go s.Write(context.Background(), []byte("block"))
	select {
	case <-sm.held:
	case <-ctx.Done():
		t.Fatal("the applier never took the blocking command")
	}
	return s
}

// TestWatchedCallsEndWithTheirCtx: a Write and a Read whose deadlines are
// far off, waiting behind an Apply that does not end, return their
// context's error once it is cancelled: the watcher answers them, as they
// do not wait on ctx.Done().
func TestWatchedCallsEndWithTheirCtx(t *testing.T) {
	s := blockedServer(t)
	calls := map[string]func(context.Context) error{
		"Write": func(ctx context.Context) error { _, err := s.Write(ctx, []byte("x")); return err },
		"Read":  func(ctx context.Context) error { _, err := s.Read(ctx, nil); return err },
	}
	for name, call := range calls {
		before := watchedCalls()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		errc := make(chan error, 1)
		go func() { errc <- call(ctx) }()
		require.Eventually(t, func() bool { return watchedCalls() > before }, 10*time.Second, time.Millisecond,
			"%s never waited with the watcher", name)
		cancel()
		select {
		case err := <-errc:
			require.ErrorIs(t, err, context.Canceled, name)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still waiting 10s after its ctx was cancelled", name)
		}
	}
}

// TestWatchedCallEndsAtItsDeadline: a call whose deadline passes returns
// DeadlineExceeded, not early, and about a watch period late at most.
func TestWatchedCallEndsAtItsDeadline(t *testing.T) {
	s := blockedServer(t)
	const timeout = minWatchedTimeout + 50*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	_, err := s.Write(ctx, []byte("x"))
	took := time.Since(start)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.GreaterOrEqual(t, took, timeout, "returned before its deadline")
	assert.Less(t, took, timeout+time.Second, "returned long after its deadline")
}

// TestWatcherAnswerAfterTheResult: when the watcher answers a call whose
// result has come meanwhile, remove says so, so that the caller takes the
// second answer out before its channel is used again; and the watcher's
// goroutine ends once nothing is left to watch.
func TestWatcherAnswerAfterTheResult(t *testing.T) {
	done := make(chan result, resultRoom)
	ctx, cancel := context.WithCancel(context.Background())
	w := &watched{ctx: ctx, wake: wakeWith(done)}
	watcher.add(w)
	done <- result{val: []byte("ok")} // the call's own result
	cancel()
	require.Eventually(t, func() bool { return len(done) == 2 }, 10*time.Second, time.Millisecond,
		"the watcher did not answer a call whose ctx ended")
	assert.True(t, watcher.remove(w), "remove after the watcher answered")
	assert.Equal(t, "ok", string((<-done).val), "the call's own result comes first")
	assert.Equal(t, errWatchedCtxEnded, (<-done).err)
	require.Eventually(t, func() bool { return !watcher.running.Load() }, 10*time.Second, time.Millisecond,
		"the watcher polls on with nothing to watch")
}

// TestWatchableCalls: calls due soon, or without a deadline, wait on
// ctx.Done() themselves.
func TestWatchableCalls(t *testing.T) {
	now := time.Now()
	soon, cancel := context.WithDeadline(context.Background(), now.Add(minWatchedTimeout-time.Millisecond))
	defer cancel()
	later, cancel := context.WithDeadline(context.Background(), now.Add(minWatchedTimeout))
	defer cancel()
	bare, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, c := range []struct {
		name string
		ctx  context.Context
		want bool
	}{
		{"no deadline, cannot end", context.Background(), false},
		{"no deadline, can end", bare, false},
		{"deadline due soon", soon, false},
		{"deadline far enough", later, true},
	} {
		assert.Equal(t, c.want, watchable(c.ctx, now), c.name)
	}
}

// TestWatcherUnderChurn: calls from many goroutines come and go across the
// shards while the poller starts and stops; every call whose ctx ends is
// answered, no call is answered twice, and the watcher ends idle.
func TestWatcherUnderChurn(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				done := make(chan result, resultRoom)
				ctx, cancel := context.WithCancel(context.Background())
				w := &watched{ctx: ctx, wake: wakeWith(done)}
				watcher.add(w)
				if (g+i)%3 == 0 {
					cancel() // ends first: only the watcher answers
					select {
					case r := <-done:
						assert.Equal(t, errWatchedCtxEnded, r.err)
					case <-time.After(10 * time.Second):
						assert.Fail(t, "a call whose ctx ended was not answered")
						return
					}
					assert.True(t, watcher.remove(w))
					continue
				}
				done <- result{} // the call's own result, which it takes
				<-done
				if watcher.remove(w) {
					<-done // the watcher's, if it came
				}
				cancel()
				assert.Empty(t, done, "answered twice")
			}
		}()
	}
	wg.Wait()
	assert.Zero(t, watchedCalls())
	require.Eventually(t, func() bool { return !watcher.running.Load() }, 10*time.Second, time.Millisecond,
		"the watcher polls on with nothing to watch")
}

// TestWatcherRemoveAfterOthersMoved: drop moves a shard's last call into
// the place of the one removed, and must tell it its new place, or removing
// it later drops another call, or none. Many calls, so that shards hold
// several, removed in the order they came, each moving a later one.
// (Kills the mutant that drops the update of the moved call's i in drop.)
func TestWatcherRemoveAfterOthersMoved(t *testing.T) {
	var cw ctxWatcher
	calls := make([]*watched, 4*watchShards) // at least two in some shard
	for i := range calls {
		calls[i] = &watched{ctx: context.Background(), wake: func() { t.Error("a call whose ctx cannot end was answered") }}
		cw.add(calls[i])
	}
	require.Equal(t, len(calls), cw.watching())
	for i, w := range calls {
		require.False(t, cw.remove(w))
		require.Equal(t, len(calls)-i-1, cw.watching(), "after removing %d calls", i+1)
		sh := &cw.shards[w.shard]
		sh.mu.Lock()
		for j, other := range sh.calls {
			require.NotSame(t, w, other, "removed, yet still in its shard")
			require.Equal(t, j, other.i, "a call that does not know its place")
		}
		sh.mu.Unlock()
	}
	require.Eventually(t, func() bool { return !cw.running.Load() }, 10*time.Second, time.Millisecond,
		"the poller polls on with nothing to watch")
}

// TestWatcherForgetsAnEarlierHit: a waiter the watcher answered before
// comes back with hit still set when it is reused without recycled (as a
// Client's batch waiters are, see awaitShared); add must clear it, or
// remove would report an answer that never comes and leave the call
// watched. (Kills the mutant that stops add from clearing hit.)
func TestWatcherForgetsAnEarlierHit(t *testing.T) {
	var cw ctxWatcher
	done := make(chan result, resultRoom)
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		require.Eventually(t, func() bool { return !cw.running.Load() }, 10*time.Second, time.Millisecond,
			"the poller polls on with nothing to watch")
	}()
	w := &watched{ctx: ctx, wake: wakeWith(done), hit: true}
	cw.add(w)
	assert.False(t, cw.remove(w), "the watcher has not answered this use")
	assert.Zero(t, cw.watching(), "still watched after remove")
	assert.Empty(t, done)
}

// TestWatcherEndsTheWaitAtUntil: a call whose ctx does not end is answered
// once its own bound until passes (a Session's bound on one attempt).
// (Kills the mutant that ignores until in ended.)
func TestWatcherEndsTheWaitAtUntil(t *testing.T) {
	done := make(chan result, resultRoom)
	w := &watched{ctx: context.Background(), until: time.Now(), wake: wakeWith(done)}
	watcher.add(w)
	select {
	case r := <-done:
		assert.Equal(t, errWatchedCtxEnded, r.err)
	case <-time.After(10 * time.Second):
		watcher.remove(w) // not to leave it to the tests that follow
		require.Fail(t, "a call past its until was not answered")
	}
	assert.True(t, watcher.remove(w))
}

// TestAwaitWatchedTakesTheWatchersLateAnswer: when the watcher answers a
// call whose result came first, awaitWatched returns the result and takes
// the watcher's answer out of the channel, which is used again by the next
// call of the recycled request: an answer left there would end that call
// at once, with no result and no error. The wake here sends the call's
// result and then the watcher's, so the watcher has answered by the time
// the caller has its result. (Kills the mutant that does not receive the
// watcher's answer after remove reports it.)
func TestAwaitWatchedTakesTheWatchersLateAnswer(t *testing.T) {
	s := &Server{stopc: make(chan struct{})}
	done := make(chan result, resultRoom)
	w := &watched{wake: func() {
		done <- result{val: []byte("ok")}
		done <- result{err: errWatchedCtxEnded}
	}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	cancel() // so that the watcher answers at once; its deadline is far off
	r, err := awaitWatched(ctx, s, done, w, time.Now())
	require.NoError(t, err)
	assert.Equal(t, "ok", string(r.val))
	assert.Empty(t, done, "the watcher's answer left for the next call")
	assert.Nil(t, w.ctx)
}

// TestAwaitWatchedOfAStoppedServer: a request that reached a server that
// had stopped may get no result; awaitWatched must not leave it to the
// watcher, which would end it only at its deadline, but return ErrStopped.
// (Kills the mutant that drops the isStopped test in awaitWatched.)
func TestAwaitWatchedOfAStoppedServer(t *testing.T) {
	stopc := make(chan struct{})
	close(stopc)
	s := &Server{stopc: stopc}
	done := make(chan result, resultRoom)
	ctx, cancel := context.WithTimeout(context.Background(), minWatchedTimeout+time.Second)
	defer cancel()
	_, err := awaitWatched(ctx, s, done, &watched{wake: wakeWith(done)}, time.Now())
	assert.ErrorIs(t, err, ErrStopped)
}

// TestWatcherSeesACallAddedAsItStops: a call added while the poller,
// having found nothing to watch, is on its way out sees running still set
// and starts no poller of its own; the poller must look again once it has
// cleared running, and stay. Without that second look the call would go
// unwatched, and its context's end unanswered, until some later call came.
func TestWatcherSeesACallAddedAsItStops(t *testing.T) {
	var cw ctxWatcher
	done := make(chan result, resultRoom)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	late := &watched{ctx: ctx, wake: wakeWith(done)}
	var once sync.Once
	cw.stopping = func() { once.Do(func() { cw.add(late) }) }
	first := &watched{ctx: context.Background(), wake: func() {}}
	cw.add(first)
	require.False(t, cw.remove(first))
	require.Eventually(t, func() bool { return cw.watching() == 1 }, 10*time.Second, time.Millisecond,
		"the poller never went idle, where the late call is added")
	cancel()
	select {
	case r := <-done:
		assert.Equal(t, errWatchedCtxEnded, r.err)
	case <-time.After(10 * time.Second):
		require.Fail(t, "the call added as the poller stopped was left unwatched: its context ended unanswered")
	}
	assert.True(t, cw.remove(late))
	require.Eventually(t, func() bool { return !cw.running.Load() }, 10*time.Second, time.Millisecond,
		"the poller polls on with nothing to watch")
}

// pollers counts the goroutines in cw's poll loop: a goroutine's trace
// shows the receiver's address, so the process-wide watcher's poller,
// which other tests' calls may keep going, is not counted.
func pollers(cw *ctxWatcher) int {
	return bytes.Count(allStacks(), []byte(fmt.Sprintf(".(*ctxWatcher).poll(%p", cw)))
}

// TestWatcherPollerGoroutineEnds: once nothing is left to watch, the
// poller's goroutine ends, not just its running flag: a poller that went on
// looping would be joined by a new one at the next add, and goroutines
// would pile up. (Kills the mutant in which poll goes on after idle.)
func TestWatcherPollerGoroutineEnds(t *testing.T) {
	var cw ctxWatcher
	for range 3 {
		w := &watched{ctx: context.Background(), wake: func() {}}
		cw.add(w)
		require.False(t, cw.remove(w))
		require.Eventually(t, func() bool { return !cw.running.Load() }, 10*time.Second, time.Millisecond,
			"the poller polls on with nothing to watch")
	}
	require.Eventually(t, func() bool { return pollers(&cw) == 0 }, 10*time.Second, time.Millisecond,
		"a poller's goroutine goes on with nothing to watch")
}
