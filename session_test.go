package exraft_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft"
	"github.com/exraft/exraft/internal/testkit"
)

// Sessions (session.go, session_route.go, session_serve.go,
// session_apply.go): a Session finds the leader, and its writes apply once
// however often they are retried.

// addrsOf returns the addresses of every server of c.
func addrsOf(c *testkit.Cluster) []string {
	var out []string
	for _, name := range c.Names() {
		out = append(out, c.Addr(name))
	}
	return out
}

// appliedTimes counts, on every live server, how often command was applied.
func appliedTimes(c *testkit.Cluster, command string) map[string]int {
	out := map[string]int{}
	for _, name := range c.Names() {
		if c.IsDown(name) {
			continue
		}
		for _, cmd := range c.KV(name).History() {
			if cmd == command {
				out[name]++
			}
		}
	}
	return out
}

// awaitAppliedOnceEverywhere waits until every live server has applied
// command, and fails if any applied it more than once.
func awaitAppliedOnceEverywhere(t *testing.T, c *testkit.Cluster, command string) {
	t.Helper()
	live := len(c.Live())
	testkit.Eventually(t, testkit.WaitLong, func() bool { return len(appliedTimes(c, command)) == live },
		"every server applies %q", command)
	for name, n := range appliedTimes(c, command) {
		require.Equal(t, 1, n, "%s applied %q %d times", name, command, n)
	}
}

func TestSessionWritesFromManyGoroutinesApplyOnce(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{})
	c.LeaderWithin(testkit.WaitLong)
	sess := (&exraft.Client{}).NewSession(addrsOf(c)...)
	ctx := testkit.Ctx(t, testkit.WaitLong)
	var wg sync.WaitGroup
	errs := make(chan error, 8*25)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				key := fmt.Sprintf("g%d-%d", g, i)
				val, err := sess.Write(ctx, []byte("set "+key+" v"))
				if err == nil && string(val) != "ok" {
					err = fmt.Errorf("set %s answered %q, want the KV's first-write answer", key, val)
				}
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for g := range 8 {
		awaitAppliedOnceEverywhere(t, c, fmt.Sprintf("set g%d-24 v", g))
	}
	_, hist := c.AwaitConverged(t, "after the session's writes")
	assert.Len(t, hist, 8*25+1, "every write applied once (and AwaitConverged's own), and nothing of the session's own reached Apply")
}

// TestSessionRetryAfterLostReplyAppliesOnce: the reply of a write is lost
// after the leader applied it; the Session retries, and the cluster answers
// the retry with the first result instead of applying the write again. A
// plain Client's retry applies it twice.
func TestSessionRetryAfterLostReplyAppliesOnce(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{})
	c.LeaderWithin(testkit.WaitLong)
	var loss testkit.ReplyLoss
	sess := (&exraft.Client{Dial: loss.Dial}).NewSession(addrsOf(c)...)
	ctx := testkit.Ctx(t, testkit.WaitLong)
	_, err := sess.Write(ctx, []byte("set a 1"))
	require.NoError(t, err)

	loss.DropNext(1)
	val, err := sess.Write(ctx, []byte("set a 2"))
	require.NoError(t, err)
	require.Zero(t, loss.Pending(), "the reply was lost, and the write retried")
	assert.Equal(t, "1", string(val), "the retry is answered with what the first apply returned")
	awaitAppliedOnceEverywhere(t, c, "set a 2")
}

func TestSessionFollowsTheLeaderAcrossAStop(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{})
	first := c.LeaderWithin(testkit.WaitLong)
	// Given only a follower's address, the Session finds the leader.
	var follower string
	for _, name := range c.Names() {
		if name != first.Name() {
			follower = c.Addr(name)
		}
	}
	sess := (&exraft.Client{}).NewSession(follower)
	ctx := testkit.Ctx(t, testkit.WaitLong)
	_, err := sess.Write(ctx, []byte("set k before"))
	require.NoError(t, err)
	require.NoError(t, c.Stop(first.Name()))
	val, err := sess.Write(ctx, []byte("set k after"))
	require.NoError(t, err, "the Session waits out the election and finds the new leader")
	assert.Equal(t, "before", string(val))
	got, err := sess.Read(ctx, []byte("get k"))
	require.NoError(t, err)
	assert.Equal(t, "after", string(got))
	awaitAppliedOnceEverywhere(t, c, "set k after")
}

// TestSessionExpiredWhileUncertain: the cluster forgets a session while one
// of its writes has an unknown outcome; the retry must not apply it again,
// and says so with ErrSessionExpired.
func TestSessionExpiredWhileUncertain(t *testing.T) {
	// Long enough for a write to follow its registration on a loaded
	// machine, far shorter than the second a Session waits before trying
	// a server whose reply it lost again.
	c := testkit.StartCluster(t, 3, testkit.Options{Configure: func(_ int, cfg *exraft.Config) {
		cfg.SessionTimeout = 200 * time.Millisecond
	}})
	c.LeaderWithin(testkit.WaitLong)
	var loss testkit.ReplyLoss
	sess := (&exraft.Client{Dial: loss.Dial}).NewSession(addrsOf(c)...)
	ctx := testkit.Ctx(t, testkit.WaitLong)
	_, err := sess.Write(ctx, []byte("set a 1"))
	require.NoError(t, err)
	loss.DropNext(1)
	// The retry comes after a pause far longer than the session's timeout.
	_, err = sess.Write(ctx, []byte("set a 2"))
	require.ErrorIs(t, err, exraft.ErrSessionExpired)
	awaitAppliedOnceEverywhere(t, c, "set a 2")

	// A write whose outcome was never in doubt registers again, unseen.
	_, err = sess.Write(ctx, []byte("set a 3"))
	require.NoError(t, err)
	awaitAppliedOnceEverywhere(t, c, "set a 3")
}

// TestSessionReregistersAfterExpiry: a session idle for longer than its
// timeout is forgotten; its next write registers a new one without the
// caller seeing anything.
func TestSessionReregistersAfterExpiry(t *testing.T) {
	const timeout = 200 * time.Millisecond
	c := testkit.StartCluster(t, 3, testkit.Options{Configure: func(_ int, cfg *exraft.Config) {
		cfg.SessionTimeout = timeout
	}})
	c.LeaderWithin(testkit.WaitLong)
	sess := (&exraft.Client{}).NewSession(addrsOf(c)...)
	ctx := testkit.Ctx(t, testkit.WaitLong)
	_, err := sess.Write(ctx, []byte("set a 1"))
	require.NoError(t, err)
	idle := time.Now()
	testkit.Eventually(t, testkit.WaitShort, func() bool { return time.Since(idle) > 2*timeout }, "the session idles past its timeout")
	val, err := sess.Write(ctx, []byte("set a 2"))
	require.NoError(t, err)
	assert.Equal(t, "1", string(val))
	awaitAppliedOnceEverywhere(t, c, "set a 2")
}

func TestSessionCloseEndsIt(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{})
	c.LeaderWithin(testkit.WaitLong)
	sess := (&exraft.Client{}).NewSession(addrsOf(c)...)
	ctx := testkit.Ctx(t, testkit.WaitLong)
	_, err := sess.Write(ctx, []byte("set a 1"))
	require.NoError(t, err)
	require.NoError(t, sess.Close(ctx))
	_, err = sess.Write(ctx, []byte("set a 2"))
	require.ErrorIs(t, err, exraft.ErrSessionClosed)
	_, err = sess.Read(ctx, []byte("get a"))
	require.ErrorIs(t, err, exraft.ErrSessionClosed)
	require.NoError(t, sess.Close(ctx), "closing twice is harmless")
	assert.Empty(t, appliedTimes(c, "set a 2"))
}

// TestSessionWithoutAnAnswerSaysWhatItWaitsOn: a Session whose servers are
// all gone waits until its ctx ends, then says what it last heard.
func TestSessionWithoutAnAnswerSaysWhatItWaitsOn(t *testing.T) {
	dead := testkit.DeadAddr(t)
	sess := (&exraft.Client{}).NewSession(dead)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := sess.Write(ctx, []byte("set a 1"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), dead)
	assert.Contains(t, err.Error(), "refused")

	_, err = (&exraft.Client{}).NewSession().Write(context.Background(), []byte("x"))
	require.Error(t, err)
	assert.False(t, errors.Is(err, context.DeadlineExceeded))
	assert.Contains(t, err.Error(), "NewSession(addrs...)")
}

// TestSessionCutShortKeepsWhatItHeard: the attempt that the caller's
// deadline cuts short heard nothing, so the error still names what the one
// before it heard. Under CI load a dial of the retry hung past the deadline
// and its bare "context deadline exceeded" replaced the refusal; here the
// retry's dial always hangs.
func TestSessionCutShortKeepsWhatItHeard(t *testing.T) {
	dead := testkit.DeadAddr(t)
	var dials sync.Mutex
	n := 0
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		dials.Lock()
		n++
		first := n == 1
		dials.Unlock()
		if first {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	sess := (&exraft.Client{Dial: dial}).NewSession(dead)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := sess.Write(ctx, []byte("set a 1"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	dials.Lock()
	require.GreaterOrEqual(t, n, 2, "the Session retried within its deadline")
	dials.Unlock()
	assert.Contains(t, err.Error(), dead)
	assert.Contains(t, err.Error(), "refused")
	assert.Contains(t, err.Error(), "registration", "names the step the user knows, not the RPC")
}

// lateTimerCtx is a context whose deadline passes before it ends, as one
// does while its timer waits for a processor: Deadline says one time, Err
// stays nil until another.
type lateTimerCtx struct {
	context.Context // ends at the later time
	deadline        time.Time
}

func (c lateTimerCtx) Deadline() (time.Time, bool) { return c.deadline, true }

// TestSessionAttemptsPastTheDeadlineKeepWhatItHeard: attempts begun after
// the caller's deadline passed but before its context ended give up at once
// with a bare context.DeadlineExceeded, having asked no one. The error must
// still name what an earlier attempt heard. (CI caught this once under
// load: "the last attempt: context deadline exceeded", without the address.)
func TestSessionAttemptsPastTheDeadlineKeepWhatItHeard(t *testing.T) {
	dead := testkit.DeadAddr(t)
	sess := (&exraft.Client{}).NewSession(dead)
	ends, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	// 200ms for the first attempt to hear its refusal, then 500ms of
	// attempts past the deadline.
	ctx := lateTimerCtx{Context: ends, deadline: time.Now().Add(200 * time.Millisecond)}
	_, err := sess.Write(ctx, []byte("set a 1"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), dead)
	assert.Contains(t, err.Error(), "refused")
}

// TestSessionPastItsDeadlineBlamesNoServer: an attempt that found no time
// left asked no server, so the Session must not skip the leader afterwards
// as one that failed: its next call would go round the followers and pause
// on their redirects to it.
func TestSessionPastItsDeadlineBlamesNoServer(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{})
	leader := c.LeaderWithin(testkit.WaitLong)
	sess := (&exraft.Client{}).NewSession(addrsOf(c)...)
	_, err := sess.Write(testkit.Ctx(t, testkit.WaitLong), []byte("set a 1"))
	require.NoError(t, err)
	ends, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	late := lateTimerCtx{Context: ends, deadline: time.Now().Add(-time.Millisecond)}
	_, err = sess.Write(late, []byte("set a 2"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.False(t, exraft.SessionSkips(sess, leader.Addr()), "the Session skips the leader after attempts that had no time left")
}

// TestSessionTimeoutShorterThanAWriteSaysSo: with a SessionTimeout shorter
// than a registration and a write take, every session is forgotten before
// its first write; the Session says so after a few tries, instead of
// registering anew until its ctx ends.
func TestSessionTimeoutShorterThanAWriteSaysSo(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{Configure: func(_ int, cfg *exraft.Config) {
		cfg.SessionTimeout = time.Millisecond
	}})
	require.NotNil(t, c.LeaderWithin(testkit.WaitLong))
	// A client 5ms away: its first write reaches the leader more than 1ms
	// after its registration did.
	slow := func(ctx context.Context, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		return &slowConn{Conn: conn}, err
	}
	sess := (&exraft.Client{Dial: slow}).NewSession(addrsOf(c)...)
	_, err := sess.Write(testkit.Ctx(t, testkit.WaitLong), []byte("set a 1"))
	require.Error(t, err)
	assert.NotErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "SessionTimeout")
	assert.Empty(t, appliedTimes(c, "set a 1"))
}

// slowConn delays every write by 5ms: injected latency.
type slowConn struct{ net.Conn }

func (c *slowConn) Write(p []byte) (int, error) {
	time.Sleep(5 * time.Millisecond)
	return c.Conn.Write(p)
}
