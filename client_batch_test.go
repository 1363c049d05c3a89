package exraft_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exraft/exraft"
	"github.com/exraft/exraft/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeConcurrently has each of goroutines write "set <key><g> v<i>" for
// i up to each, in turn, with write, and returns each write's error.
// testkit.KV answers a write with the value it replaced, "ok" for none: so
// each answer says that the write was applied in its turn and answered to
// its own caller.
func writeConcurrently(t *testing.T, write func(ctx context.Context, cmd []byte) ([]byte, error), key string, goroutines, each int) []error {
	t.Helper()
	ctx := testkit.Ctx(t, testkit.WaitLong)
	errs := make([]error, goroutines*each)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := "ok"
			for i := range each {
				wctx, cancel := context.WithTimeout(ctx, testkit.WaitLong)
				val, err := write(wctx, []byte(fmt.Sprintf("set %s%d v%d", key, g, i)))
				cancel()
				if err == nil && string(val) != want {
					err = fmt.Errorf("write %d of %s%d answered %q, want %q", i, key, g, val, want)
				}
				want = fmt.Sprint("v", i)
				errs[g*each+i] = err
			}
		}()
	}
	wg.Wait()
	return errs
}

// writeTo is cl's Write to addr, as writeConcurrently takes it.
func writeTo(cl *exraft.Client, addr string) func(ctx context.Context, cmd []byte) ([]byte, error) {
	return func(ctx context.Context, cmd []byte) ([]byte, error) { return cl.Write(ctx, addr, cmd) }
}

// batchingClient returns a Client, closed when the test ends, that knows
// addr serves WriteBatch (awaitBatches).
func batchingClient(t *testing.T, addr string) *exraft.Client {
	t.Helper()
	cl := &exraft.Client{}
	t.Cleanup(func() { cl.Close() })
	awaitBatches(t, cl, addr)
	return cl
}

// awaitBatches makes a first write through cl to addr, which has it ask
// whether addr serves WriteBatch, and waits until it knows that it does.
func awaitBatches(t *testing.T, cl *exraft.Client, addr string) {
	t.Helper()
	cl.Write(testkit.Ctx(t, testkit.WaitLong), addr, []byte("set warm up")) // a follower's redirect will do
	testkit.Eventually(t, testkit.WaitLong, func() bool { return exraft.Batches(cl, addr) }, "the Client learns that %s has WriteBatch", addr)
}

// startBlocking starts a one-server cluster whose state machine holds up
// a command beginning with "block" until the test releases it (and does
// when it ends), with configure's changes to its Config, if any.
func startBlocking(t *testing.T, configure func(*exraft.Config)) (*testkit.Cluster, *exraft.Server, *exraft.BlockingKV) {
	t.Helper()
	var sm *exraft.BlockingKV
	c := testkit.StartCluster(t, 1, testkit.Options{
		NewSM: func(_ int, kv *testkit.KV) exraft.StateMachine {
			sm = exraft.NewBlockingKV(kv)
			return sm
		},
		Configure: func(_ int, cfg *exraft.Config) {
			if configure != nil {
				configure(cfg)
			}
		},
	})
	s := c.LeaderWithin(testkit.WaitLong)
	t.Cleanup(sm.Release)
	return c, s, sm
}

// TestClientConcurrentWritesShareCallsAndApplyOnce: many goroutines write
// through one Client; their writes go in shared calls, and each is applied
// exactly once and answered with its own result.
func TestClientConcurrentWritesShareCallsAndApplyOnce(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{})
	leader := c.LeaderWithin(testkit.WaitLong)
	cl := batchingClient(t, leader.Addr())
	const goroutines, each = 32, 40
	for _, err := range writeConcurrently(t, writeTo(cl, leader.Addr()), "g", goroutines, each) {
		require.NoError(t, err)
	}
	_, hist := c.AwaitConverged(t, "after the writes")
	requireEachAppliedOnce(t, hist, "g", goroutines, each)
	assert.Len(t, hist, goroutines*each+2, "every write applied once, the warm-up's and AwaitConverged's own")
	assert.Greater(t, exraft.BatchedWrites(cl, leader.Addr()), uint64(0), "some writes went in shared calls")
}

// TestClientBatchToFollowerRedirectsEveryWrite: writes sharing calls to a
// follower each get the redirect to the leader.
func TestClientBatchToFollowerRedirectsEveryWrite(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{})
	leader := c.LeaderWithin(testkit.WaitLong)
	follower := c.Others(leader)[0]
	// A follower names the leader once it has heard from it, which may be
	// after the leader knows itself.
	ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitLong)
	defer cancel()
	_, err := follower.WaitStatus(ctx, func(st exraft.Status) bool { return st.Leader.Name == leader.Name() })
	require.NoError(t, err)
	cl := batchingClient(t, follower.Addr())
	for _, err := range writeConcurrently(t, writeTo(cl, follower.Addr()), "g", 16, 20) {
		var redirect *exraft.RedirectError
		require.ErrorAs(t, err, &redirect)
		require.Equal(t, leader.Peer(), redirect.Leader)
	}
	assert.Greater(t, exraft.BatchedWrites(cl, follower.Addr()), uint64(0), "some writes went in shared calls")
}

// TestClientFallsBackWithoutWriteBatch: a server that predates WriteBatch
// ends the connection that calls it. The Client asks on a connection of its
// own before it shares calls, and makes a call per Write to such a server:
// no write fails for it.
func TestClientFallsBackWithoutWriteBatch(t *testing.T) {
	c := testkit.StartCluster(t, 1, testkit.Options{})
	s := c.LeaderWithin(testkit.WaitLong)
	exraft.RefuseWriteBatch(s)
	cl := &exraft.Client{}
	defer cl.Close()
	ctx := testkit.Ctx(t, testkit.WaitLong)
	_, err := cl.Write(ctx, s.Addr(), []byte("set warm up"))
	require.NoError(t, err)
	testkit.Eventually(t, testkit.WaitLong, func() bool { return exraft.Unbatched(cl, s.Addr()) }, "the Client learns that the server has no WriteBatch")
	for _, err := range writeConcurrently(t, writeTo(cl, s.Addr()), "g", 16, 20) {
		require.NoError(t, err)
	}
	require.Zero(t, exraft.BatchedWrites(cl, s.Addr()))
}

// TestClientAsksAgainWhenWriteBatchGoesAway: a server the Client knows to
// serve WriteBatch may come back as an older build that does not (a
// rollback in place). Its connection ends at the first shared call; the
// Client must ask again on the next connection and fall back to a call per
// Write, not fail every shared call from then on.
func TestClientAsksAgainWhenWriteBatchGoesAway(t *testing.T) {
	c := testkit.StartCluster(t, 1, testkit.Options{})
	s := c.LeaderWithin(testkit.WaitLong)
	cl := batchingClient(t, s.Addr())
	exraft.RefuseWriteBatch(s)
	// Writes of this round may fail, with their outcome unknown: the shared
	// call that meets the change loses its connection.
	writeConcurrently(t, writeTo(cl, s.Addr()), "a", 16, 5)
	testkit.Eventually(t, testkit.WaitLong, func() bool {
		_, _ = cl.Write(testkit.Ctx(t, testkit.WaitLong), s.Addr(), []byte("set probe 1"))
		return exraft.Unbatched(cl, s.Addr())
	}, "the Client asks %s again and learns that it has no WriteBatch", s.Addr())
	for _, err := range writeConcurrently(t, writeTo(cl, s.Addr()), "g", 16, 20) {
		require.NoError(t, err)
	}
}

// TestClientWritesAloneUntilWriteBatchIsKnown: before the Client knows that
// a server serves WriteBatch, concurrent writes each go in a call of their
// own; once it knows, they share calls.
func TestClientWritesAloneUntilWriteBatchIsKnown(t *testing.T) {
	c := testkit.StartCluster(t, 1, testkit.Options{})
	s := c.LeaderWithin(testkit.WaitLong)
	cl := batchingClient(t, s.Addr())
	for _, err := range writeConcurrently(t, writeTo(cl, s.Addr()), "g", 16, 20) {
		require.NoError(t, err)
	}
	require.NotZero(t, exraft.BatchedWrites(cl, s.Addr()))
}

// TestClientBatchedWriteGivesUpAtItsCtx: a write whose ctx ends while it
// waits for a shared call returns ctx's error at once, while the call
// carrying the others stays in flight: whether it waits on ctx.Done() (no
// deadline) or leaves its ctx to the watcher (a deadline far off).
func TestClientBatchedWriteGivesUpAtItsCtx(t *testing.T) {
	_, s, sm := startBlocking(t, nil)
	cl := batchingClient(t, s.Addr())
	blocked := make(chan struct{})
	go func() {
		defer close(blocked)
		// Without a deadline: it holds the turn until the test releases it.
		cl.Write(context.Background(), s.Addr(), []byte("block a b"))
	}()
	testkit.Eventually(t, testkit.WaitLong, func() bool { return exraft.TurnTaken(cl, s.Addr()) }, "the blocking write holds the turn")
	ctxs := []struct {
		name    string
		make    func() (context.Context, context.CancelFunc)
		watched int // calls the watcher answers for while the write waits
	}{
		{"without a deadline", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, 0},
		{"with a deadline far off", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 2*testkit.WaitLong)
		}, 1},
	}
	for i, c := range ctxs {
		wctx, cancel := c.make()
		done := make(chan error, 1)
		go func() {
			_, err := cl.Write(wctx, s.Addr(), []byte("set queued v"))
			done <- err
		}()
		// The writes that gave up stay queued until the sender skips them.
		testkit.Eventually(t, testkit.WaitLong, func() bool { return exraft.QueuedWrites(cl, s.Addr()) == i+1 }, "the write queues (%s)", c.name)
		// The watched write waits on its outcome alone: only the watcher
		// can end its wait.
		testkit.Eventually(t, testkit.WaitLong, func() bool { return exraft.WatchedCalls() == c.watched }, "the watcher watches %d calls (%s)", c.watched, c.name)
		cancel()
		var err error
		select {
		case err = <-done:
		case <-time.After(testkit.WaitLong):
			require.FailNow(t, "the write did not return when its ctx ended", c.name)
		}
		require.True(t, errors.Is(err, context.Canceled), "%s: got %v", c.name, err)
	}
	sm.Release()
	<-blocked
}

// TestSessionConcurrentWritesShareCallsAndApplyOnce: a Session's writes from
// many goroutines go in shared calls, and each is applied exactly once and
// answered with its own result.
func TestSessionConcurrentWritesShareCallsAndApplyOnce(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{})
	leader := c.LeaderWithin(testkit.WaitLong)
	cl := batchingClient(t, leader.Addr())
	sess := cl.NewSession(leader.Addr())
	const goroutines, each = 32, 20
	errs := writeConcurrently(t, sess.Write, "s", goroutines, each)
	for _, err := range errs {
		require.NoError(t, err)
	}
	for g := range goroutines {
		awaitAppliedOnceEverywhere(t, c, fmt.Sprintf("set s%d v%d", g, each-1))
	}
	_, hist := c.AwaitConverged(t, "after the session's writes")
	requireEachAppliedOnce(t, hist, "s", goroutines, each)
	assert.Greater(t, exraft.BatchedWrites(cl, leader.Addr()), uint64(0), "some writes went in shared calls")
}

// requireEachAppliedOnce: hist, the commands applied, holds "set <p>g v<i>"
// exactly once for every goroutine g and each of its writes i.
func requireEachAppliedOnce(t *testing.T, hist []string, p string, goroutines, each int) {
	t.Helper()
	counts := map[string]int{}
	for _, cmd := range hist {
		counts[cmd]++
	}
	for g := range goroutines {
		for i := range each {
			cmd := fmt.Sprintf("set %s%d v%d", p, g, i)
			require.Equal(t, 1, counts[cmd], "%q applied %d times", cmd, counts[cmd])
		}
	}
}

// TestSessionResultsOverflowingTheirBatchAreAskedAlone: results that each
// fit in a reply can add up to more than the batch's reply holds. A
// Session's write still gets its own result, once applied, by asking
// again alone, which the session table answers; a plain Write's says it
// was applied.
func TestSessionResultsOverflowingTheirBatchAreAskedAlone(t *testing.T) {
	c, s, sm := startBlocking(t, func(cfg *exraft.Config) { cfg.MaxFrameSize = 4096 })
	cl := batchingClient(t, s.Addr())
	ctx := testkit.Ctx(t, testkit.WaitLong)
	const writes = 4 // 4 results of 1,500 bytes: more than 4,096 bytes
	big := func(i int) string { return fmt.Sprintf("%d%s", i, strings.Repeat("x", 1500)) }
	for i := range 2 * writes {
		_, err := cl.Write(ctx, s.Addr(), []byte(fmt.Sprintf("set k%d %s", i, big(i))))
		require.NoError(t, err)
	}

	sess := cl.NewSession(s.Addr())
	_, err := sess.Write(ctx, []byte("set registered yes")) // registers: through the log, which "block" holds up
	require.NoError(t, err)

	blocked := make(chan struct{})
	go func() {
		defer close(blocked)
		cl.Write(context.Background(), s.Addr(), []byte("block a b")) // holds the turn
	}()
	testkit.Eventually(t, testkit.WaitLong, func() bool { return exraft.TurnTaken(cl, s.Addr()) }, "the blocking write holds the turn")
	type answer struct {
		val []byte
		err error
	}
	sessAnswers, plainAnswers := make([]chan answer, writes), make([]chan answer, writes)
	for i := range writes {
		sessAnswers[i], plainAnswers[i] = make(chan answer, 1), make(chan answer, 1)
		go func() {
			val, err := sess.Write(ctx, []byte(fmt.Sprintf("set k%d small", i)))
			sessAnswers[i] <- answer{val, err}
		}()
		go func() {
			val, err := cl.Write(ctx, s.Addr(), []byte(fmt.Sprintf("set k%d small", writes+i)))
			plainAnswers[i] <- answer{val, err}
		}()
	}
	testkit.Eventually(t, testkit.WaitLong, func() bool { return exraft.QueuedWrites(cl, s.Addr()) == 2*writes }, "the writes queue behind the blocked one")
	sm.Release()
	<-blocked

	for i, ch := range sessAnswers {
		a := <-ch
		require.NoError(t, a.err, "session write %d", i)
		assert.Equal(t, big(i), string(a.val), "session write %d gets its own result", i)
	}
	tooLarge := 0
	for i, ch := range plainAnswers {
		a := <-ch
		if errors.Is(a.err, exraft.ErrTooLarge) {
			assert.Contains(t, a.err.Error(), "the write was applied")
			tooLarge++
			continue
		}
		require.NoError(t, a.err, "plain write %d", i)
		assert.Equal(t, big(writes+i), string(a.val))
	}
	assert.Positive(t, tooLarge, "the batch's reply could not hold every result")
	_, hist := c.AwaitConverged(t, "after the writes")
	counts := map[string]int{}
	for _, cmd := range hist {
		counts[cmd]++
	}
	for i := range 2 * writes {
		assert.Equal(t, 1, counts[fmt.Sprintf("set k%d small", i)], "write %d applied once", i)
	}
}

// TestWritersAnsweredTogetherShareTheNextBatch: the writers one batch
// answers come back together, and the sender lets them queue before it
// takes the next batch. On one processor, a sender that went straight on
// would find only the writers that came during its call, and the writers
// would split into groups that take turns, each in batches of its own.
func TestWritersAnsweredTogetherShareTheNextBatch(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	s, _ := testkit.StartAlone(t, "a", func(cfg *exraft.Config) { cfg.MinMajority = 1 })
	_, err := s.AwaitLeader(testkit.Ctx(t, testkit.WaitLong))
	require.NoError(t, err)
	cl := batchingClient(t, s.Addr())
	const goroutines, each = 16, 50
	for _, err := range writeConcurrently(t, writeTo(cl, s.Addr()), "g", goroutines, each) {
		require.NoError(t, err)
	}
	batched, calls := exraft.BatchCounts(cl, s.Addr())
	require.NotZero(t, calls)
	t.Logf("%d writes in %d shared calls", batched, calls)
	assert.Greater(t, float64(batched)/float64(calls), goroutines*2/3.0, "writes per shared call, of %d writers: two groups taking turns make it half of them", goroutines)
}

// gatesKV is a state machine whose Apply of "set held:<gate> ..." waits
// until the test opens that gate (and every gate opens when the test
// ends), so that a test can hold up one batch's entries and not another's.
type gatesKV struct {
	exraft.StateMachine
	mu      sync.Mutex
	gates   map[string]chan struct{}
	allOpen bool // openAll was called: every gate, even a new one, is open
}

func (g *gatesKV) gate(name string) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gates == nil {
		g.gates = map[string]chan struct{}{}
	}
	ch := g.gates[name]
	if ch == nil {
		ch = make(chan struct{})
		if g.allOpen {
			close(ch)
		}
		g.gates[name] = ch
	}
	return ch
}

func (g *gatesKV) Apply(cmd []byte) []byte {
	if rest, ok := strings.CutPrefix(string(cmd), "set held:"); ok {
		name, _, _ := strings.Cut(rest, " ")
		<-g.gate(name)
	}
	return g.StateMachine.Apply(cmd)
}

// open lets the commands held at gate name, and later ones, go on.
func (g *gatesKV) open(name string) {
	ch := g.gate(name)
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// openAll opens every gate, and every one made from then on.
func (g *gatesKV) openAll() {
	g.mu.Lock()
	g.allOpen = true
	names := make([]string, 0, len(g.gates))
	for name := range g.gates {
		names = append(names, name)
	}
	g.mu.Unlock()
	for _, name := range names {
		g.open(name)
	}
}

// writeResult is a Write's answer, for a test that waits on it.
type writeResult struct {
	val []byte
	err error
}

// writeAsync makes cl's Write of cmd to addr in a goroutine of its own, and
// returns where its answer comes.
func writeAsync(ctx context.Context, cl *exraft.Client, addr, cmd string) <-chan writeResult {
	ch := make(chan writeResult, 1)
	go func() {
		val, err := cl.Write(ctx, addr, []byte(cmd))
		ch <- writeResult{val, err}
	}()
	return ch
}

// awaitResult waits for a Write's answer, for WaitLong at most.
func awaitResult(t *testing.T, ch <-chan writeResult, what string) writeResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(testkit.WaitLong):
		require.FailNow(t, "no answer", "%s did not return within %v", what, testkit.WaitLong)
		return writeResult{}
	}
}

// TestBatchedWritesKeepTheirOwnDeadlines: writes that share a call each
// keep their own deadline. One whose deadline passes while the call is out
// returns DeadlineExceeded then, and the call goes on for the others: one
// with no deadline, or with a later one, gets its own result once applied.
// The sender gives up waiting for a call only once every write in it has
// given up (the latest deadline, none if a write has none); a sender that
// gave up at the earliest deadline, or ignored a write without one, would
// answer the others DeadlineExceeded while their callers still wait. (And a
// server that took a write's Timeout of 0 for an ended one would fail the
// write without a deadline at once.)
func TestBatchedWritesKeepTheirOwnDeadlines(t *testing.T) {
	var sm *gatesKV
	c := testkit.StartCluster(t, 1, testkit.Options{
		NewSM: func(_ int, kv *testkit.KV) exraft.StateMachine {
			sm = &gatesKV{StateMachine: kv}
			return sm
		},
	})
	s := c.LeaderWithin(testkit.WaitLong)
	addr := s.Addr()
	cl := batchingClient(t, addr)
	defer sm.openAll() // before the Client closes (a cleanup), which waits for the calls out

	cases := []struct {
		name     string
		firstCtx func() (context.Context, context.CancelFunc)
	}{
		{"without a deadline", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }},
		{"with a later deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 3*testkit.WaitLong)
		}},
	}
	for i, tc := range cases {
		turn, first := fmt.Sprintf("turn%d", i), fmt.Sprintf("first%d", i)
		// The case before has ended its turn: the held write takes the
		// next one rather than queueing.
		testkit.Eventually(t, testkit.WaitLong, func() bool { return !exraft.TurnTaken(cl, addr) }, "the turn is free (%s)", tc.name)
		// The turn's holder goes alone; what queues behind it goes in one
		// batch when it returns.
		held := writeAsync(context.Background(), cl, addr, "set held:"+turn+" v")
		testkit.Eventually(t, testkit.WaitLong, func() bool { return exraft.TurnTaken(cl, addr) }, "the held write takes the turn (%s)", tc.name)
		fctx, fcancel := tc.firstCtx()
		defer fcancel()
		firstDone := writeAsync(fctx, cl, addr, "set held:"+first+" v")
		testkit.Eventually(t, testkit.WaitLong, func() bool { return exraft.QueuedWrites(cl, addr) == 1 }, "the first write queues (%s)", tc.name)
		sctx, scancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer scancel()
		shortDone := writeAsync(sctx, cl, addr, fmt.Sprintf("set short%d v", i))
		testkit.Eventually(t, testkit.WaitLong, func() bool { return exraft.QueuedWrites(cl, addr) == 2 }, "the short write queues (%s)", tc.name)

		sm.open(turn)
		require.NoError(t, awaitResult(t, held, "the held write").err)
		// The batch of both is out, and the first's entry holds up the
		// short one's until its gate opens.
		r := awaitResult(t, shortDone, "the short write")
		require.ErrorIs(t, r.err, context.DeadlineExceeded, tc.name)
		sdl, _ := sctx.Deadline()
		require.False(t, time.Now().Before(sdl), "%s: the short write returned %v before its deadline: %v", tc.name, time.Until(sdl), r.err)
		select {
		case r := <-firstDone:
			require.FailNow(t, "the first write ended with the short one", "%s: %v (%q)", tc.name, r.err, r.val)
		case <-time.After(500 * time.Millisecond):
			// Still waiting, as it should: its call is still out.
		}
		sm.open(first)
		r = awaitResult(t, firstDone, "the first write")
		require.NoError(t, r.err, tc.name)
		assert.Equal(t, "ok", string(r.val), tc.name)
	}
	assert.NotZero(t, exraft.BatchedWrites(cl, addr), "the writes went in shared calls")
}

// TestQueuedWritesGivenUpAreNotSent: a Write whose caller gives up while it
// waits for a shared call, its ctx canceled or its deadline passed, is left
// to the sender, which skips it: the batch carries only the writes whose
// callers still wait, and the given-up ones are never applied. (A sender
// that sent them all would apply writes whose callers were told they
// failed.)
func TestQueuedWritesGivenUpAreNotSent(t *testing.T) {
	c, s, sm := startBlocking(t, nil)
	addr := s.Addr()
	cl := batchingClient(t, addr)
	defer sm.Release() // before the Client closes (a cleanup), which waits for the calls out
	blocked := holdTurn(t, cl, addr)

	cctx, cancel := context.WithCancel(context.Background())
	canceled := writeAsync(cctx, cl, addr, "set canceled v")
	testkit.Eventually(t, testkit.WaitLong, func() bool { return exraft.QueuedWrites(cl, addr) == 1 }, "the write to cancel queues")
	cancel()
	require.ErrorIs(t, awaitResult(t, canceled, "the canceled write").err, context.Canceled)

	dctx, dcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer dcancel()
	expired := writeAsync(dctx, cl, addr, "set expired v")
	require.ErrorIs(t, awaitResult(t, expired, "the write whose deadline passes").err, context.DeadlineExceeded)

	kept := writeAsync(testkit.Ctx(t, testkit.WaitLong), cl, addr, "set kept v")
	testkit.Eventually(t, testkit.WaitLong, func() bool { return exraft.QueuedWrites(cl, addr) == 3 }, "the kept write queues behind the two given up")
	sm.Release()
	require.NoError(t, awaitResult(t, blocked, "the blocking write").err)
	require.NoError(t, awaitResult(t, kept, "the kept write").err)

	_, hist := c.AwaitConverged(t, "after the writes")
	assert.Contains(t, hist, "set kept v")
	assert.NotContains(t, hist, "set canceled v", "a write canceled while queued was applied")
	assert.NotContains(t, hist, "set expired v", "a write whose deadline passed while queued was applied")
}

// TestSharedCallsFitTheSmallestFrame: however many writes queue, a batch's
// request stays below the smallest frame a server may be configured with
// (4096 bytes), so that no server refuses a batch for its size: writes of
// 500 bytes each, a dozen of them, go in several calls, and all succeed. A
// batch allowed twice the bytes would be a frame the server refuses, and
// fail every write in it.
func TestSharedCallsFitTheSmallestFrame(t *testing.T) {
	_, s, sm := startBlocking(t, func(cfg *exraft.Config) { cfg.MaxFrameSize = 4096 })
	addr := s.Addr()
	cl := batchingClient(t, addr)
	defer sm.Release() // before the Client closes (a cleanup), which waits for the calls out
	blocked := holdTurn(t, cl, addr)
	const writes = 12
	ctx := testkit.Ctx(t, testkit.WaitLong)
	answers := make([]<-chan writeResult, writes)
	for i := range answers {
		cmd := fmt.Sprintf("set big%02d %s", i, strings.Repeat("x", 490)) // 500 bytes: short enough to share calls
		answers[i] = writeAsync(ctx, cl, addr, cmd)
	}
	testkit.Eventually(t, testkit.WaitLong, func() bool { return exraft.QueuedWrites(cl, addr) == writes }, "the writes queue behind the blocked one")
	sm.Release()
	require.NoError(t, awaitResult(t, blocked, "the blocking write").err)
	for i, ch := range answers {
		r := awaitResult(t, ch, fmt.Sprint("write ", i))
		require.NoError(t, r.err, "write %d", i)
		assert.Equal(t, "ok", string(r.val), "write %d", i)
	}
	batched, calls := exraft.BatchCounts(cl, addr)
	assert.Equal(t, uint64(writes), batched, "every write went in a shared call")
	assert.Greater(t, calls, uint64(1), "%d writes of 500 bytes need more than one call", writes)
}

// holdTurn starts a write that the state machine of startBlocking holds up,
// without a deadline, and returns once it holds cl's turn to addr: the
// writes that follow queue for a shared call until the test releases it.
func holdTurn(t *testing.T, cl *exraft.Client, addr string) <-chan writeResult {
	t.Helper()
	blocked := writeAsync(context.Background(), cl, addr, "block a b")
	testkit.Eventually(t, testkit.WaitLong, func() bool { return exraft.TurnTaken(cl, addr) }, "the blocking write holds the turn")
	return blocked
}

// refusingKV is a BlockingKV whose Validate refuses every command that
// starts with "refuse".
type refusingKV struct{ *exraft.BlockingKV }

func (r refusingKV) Validate(cmd []byte) error {
	if strings.HasPrefix(string(cmd), "refuse") {
		return errors.New("refused by the test")
	}
	return nil
}

// TestBatchedWriteRefusedKeepsItsOwnError: a write that its server refuses
// (here its state machine's Validate) while the writes beside it in the
// batch are applied gets its own refusal, and enters the log not at all:
// the state machine never sees it, nor an empty command in its place. Its
// error stands even where the results before it filled the batch's reply:
// only a result of a write that was applied is replaced with the
// ErrTooLarge that says it was applied.
func TestBatchedWriteRefusedKeepsItsOwnError(t *testing.T) {
	var sm *exraft.BlockingKV
	c := testkit.StartCluster(t, 1, testkit.Options{
		NewSM: func(_ int, kv *testkit.KV) exraft.StateMachine {
			sm = exraft.NewBlockingKV(kv)
			return refusingKV{sm}
		},
		Configure: func(_ int, cfg *exraft.Config) { cfg.MaxFrameSize = 4096 },
	})
	s := c.LeaderWithin(testkit.WaitLong)
	t.Cleanup(sm.Release)
	addr := s.Addr()
	cl := batchingClient(t, addr)
	ctx := testkit.Ctx(t, testkit.WaitLong)
	const big = 3 // 3 results of 1,500 bytes: more than a reply of 4,096 bytes holds
	for i := range big {
		_, err := cl.Write(ctx, addr, []byte(fmt.Sprintf("set k%d %s", i, strings.Repeat("x", 1500))))
		require.NoError(t, err)
	}
	blocked := holdTurn(t, cl, addr)
	answers := make([]<-chan writeResult, big)
	for i := range answers {
		answers[i] = writeAsync(ctx, cl, addr, fmt.Sprintf("set k%d small", i))
		testkit.Eventually(t, testkit.WaitLong, func() bool { return exraft.QueuedWrites(cl, addr) == i+1 }, "write %d queues", i)
	}
	refused := writeAsync(ctx, cl, addr, "refuse this")
	testkit.Eventually(t, testkit.WaitLong, func() bool { return exraft.QueuedWrites(cl, addr) == big+1 }, "the write to refuse queues last")
	sm.Release()
	require.NoError(t, awaitResult(t, blocked, "the blocking write").err)

	r := awaitResult(t, refused, "the refused write")
	require.ErrorIs(t, r.err, exraft.ErrRejected, "the refused write gets its own refusal")
	assert.Contains(t, r.err.Error(), "refused by the test")
	assert.NotErrorIs(t, r.err, exraft.ErrTooLarge, "an error is not a result to replace")
	tooLarge := 0
	for i, ch := range answers {
		r := awaitResult(t, ch, fmt.Sprint("write ", i))
		if errors.Is(r.err, exraft.ErrTooLarge) {
			tooLarge++
			continue
		}
		require.NoError(t, r.err, "write %d", i)
	}
	assert.Positive(t, tooLarge, "the batch's reply could not hold every result")
	assert.NotZero(t, exraft.BatchedWrites(cl, addr), "the writes went in a shared call")

	_, hist := c.AwaitConverged(t, "after the writes")
	for i, cmd := range hist {
		assert.NotEqual(t, "refuse this", cmd, "the refused write was applied")
		assert.NotEmpty(t, cmd, "the state machine was given an empty command, the %dth of %d applied", i+1, len(hist))
	}
}
