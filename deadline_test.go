package exraft

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDeadlineWheelSharesSlots(t *testing.T) {
	var w deadlineWheel
	seen := map[*deadlineSlot]bool{}
	const calls = 1000
	for range calls {
		sl := w.slot(time.Second)
		require.NotNil(t, sl)
		seen[sl] = true
	}
	// 1000 calls take well under a slot's width each: they share a few.
	assert.Less(t, len(seen), calls/10, "slots for %d calls", calls)
	w.mu.Lock()
	assert.Len(t, w.slots, len(seen), "slots waiting to end")
	w.mu.Unlock()
}

func TestDeadlineWheelEndsAtDeadline(t *testing.T) {
	var w deadlineWheel
	const timeout = 150 * time.Millisecond
	start := time.Now()
	sl := w.slot(timeout)
	require.NotNil(t, sl)
	require.NoError(t, sl.Err())
	dl, ok := sl.Deadline()
	require.True(t, ok)
	assert.False(t, dl.Before(start.Add(timeout-slotWidth)), "deadline %v after the start", dl.Sub(start))
	assert.False(t, dl.After(time.Now().Add(timeout)), "deadline %v after the start", dl.Sub(start))

	<-sl.Done()
	assert.False(t, time.Now().Before(dl), "ended %v before its deadline", dl.Sub(time.Now()))
	require.ErrorIs(t, sl.Err(), context.DeadlineExceeded)
	w.mu.Lock()
	assert.Empty(t, w.slots, "an ended slot is forgotten")
	w.mu.Unlock()

	// A context derived from a slot ends with it.
	child, cancel := context.WithCancel(w.slot(timeout))
	defer cancel()
	<-child.Done()
	require.ErrorIs(t, child.Err(), context.DeadlineExceeded)
}

func TestDeadlineWheelShortTimeouts(t *testing.T) {
	var w deadlineWheel
	assert.Nil(t, w.slot(minWheelTimeout-time.Nanosecond), "a timeout the slot's width would cut by more than 2%%")
	assert.Nil(t, w.slot(0))
	assert.NotNil(t, w.slot(minWheelTimeout))
}

func TestDeadlineWheelStop(t *testing.T) {
	var w deadlineWheel
	a, b := w.slot(time.Hour), w.slot(2*time.Hour)
	require.NotNil(t, a)
	require.NotNil(t, b)
	w.stop()
	for _, sl := range []*deadlineSlot{a, b} {
		select {
		case <-sl.Done():
		default:
			t.Fatal("a slot outlived its wheel")
		}
		require.ErrorIs(t, sl.Err(), context.Canceled)
	}
	assert.Nil(t, w.slot(time.Hour), "a stopped wheel hands out no slots")
}

// A remote call's deadline is a slot of its server's wheel, which ends, with
// the call, when the server stops.
func TestRemoteCallDeadlineEndsWithServer(t *testing.T) {
	s, err := StartServer(plainSM{}, Config{Name: "a", Addr: "127.0.0.1:0"})
	require.NoError(t, err)
	sl := s.deadlines.slot(time.Hour)
	require.NotNil(t, sl)
	require.NoError(t, s.Stop())
	<-sl.Done()
	require.ErrorIs(t, sl.Err(), context.Canceled)
}

// muteConn is a client's connection whose requests are lost once mute is
// set: no reply comes.
type muteConn struct {
	net.Conn
	mute *atomic.Bool
}

func (c *muteConn) Write(p []byte) (int, error) {
	if c.mute.Load() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// A Session's attempt is bounded by a slot of clientDeadlines: a call whose
// reply does not come ends when the slot does, long before its ctx.
func TestCallWithinEndsWithItsSlot(t *testing.T) {
	s, err := StartServer(plainSM{}, Config{Name: "a", Addr: "127.0.0.1:0"})
	require.NoError(t, err)
	defer s.Stop()
	var mute atomic.Bool
	c := &Client{Dial: func(ctx context.Context, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return &muteConn{Conn: conn, mute: &mute}, nil
	}}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = c.Write(ctx, s.Addr(), []byte("x")) // dials, and waits for the leader
	require.NoError(t, err)

	mute.Store(true)
	const bound = 150 * time.Millisecond
	start := time.Now()
	within := clientDeadlines.slot(bound)
	require.NotNil(t, within)
	_, sent, err := c.callWithin(ctx, within, s.Addr(), methodWrite, &callRequest{Data: []byte("y")})
	elapsed := time.Since(start)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.True(t, sent, "the request was sent")
	assert.GreaterOrEqual(t, elapsed, bound-slotWidth)
	assert.Less(t, elapsed, 10*bound, "the call outlived its slot")
	require.NoError(t, ctx.Err())
}

// TestQueuedWriteEndsAtItsAttemptBound: a Session's write that queues for a
// shared call keeps its attempt's bound (within), as callWithin does: it
// gives up when the bound ends, though its ctx has no deadline, so that the
// Session can try again or ask another server. Both ways a queued write
// waits are held to it: a bound under minWatchedTimeout waits in a select
// that must take the bound's end, a longer one leaves its wait to the ctx
// watcher, which must be told the bound.
func TestQueuedWriteEndsAtItsAttemptBound(t *testing.T) {
	sm := NewBlockingKV(&counterSM{})
	s := startAloneWith(t, sm, Config{})
	t.Cleanup(sm.Release)
	addr := s.Addr()
	c := &Client{}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := c.Write(ctx, addr, []byte("warm up")) // dials, asks whether addr has WriteBatch, and waits for the leader
	require.NoError(t, err)
	require.True(t, PollUntil(20*time.Second, func() bool { return c.batches(addr) }), "the Client learns that the server has WriteBatch")
	blocked := make(chan struct{})
	go func() {
		defer close(blocked)
		c.Write(context.Background(), addr, []byte("block")) // holds the turn until released
	}()
	require.True(t, PollUntil(20*time.Second, func() bool { return TurnTaken(c, addr) }), "the blocking write holds the turn")

	for _, bound := range []time.Duration{minWheelTimeout, 4 * minWheelTimeout} {
		within := clientDeadlines.slot(bound)
		require.NotNil(t, within)
		type outcome struct {
			sent, ok bool
			err      error
		}
		done := make(chan outcome, 1)
		start := time.Now()
		go func() {
			w := sharedWrite{cmd: []byte("queued"), session: 1, seq: 1, lowest: 1, within: within}
			_, sent, err, ok, _ := c.writeShared(context.Background(), addr, w)
			done <- outcome{sent, ok, err}
		}()
		select {
		case o := <-done:
			require.True(t, o.ok, "bound %v: the write queued, and was answered there", bound)
			require.ErrorIs(t, o.err, context.DeadlineExceeded, "bound %v", bound)
			assert.True(t, o.sent, "bound %v: a queued write may yet be sent", bound)
			assert.GreaterOrEqual(t, time.Since(start), bound-slotWidth, "bound %v: ended before its bound", bound)
		case <-time.After(20 * time.Second):
			require.FailNow(t, "the attempt's bound was not kept", "a queued write with a bound of %v still waits after 20s", bound)
		}
	}
	sm.Release()
	<-blocked
}

// TestQueuedWriteTakesTheEarlierDeadline: a queued write's deadline, which
// its wait, the Timeout its server gets and the sender's skipping go by, is
// the earlier of its ctx's and its attempt's bound: the bound when the ctx
// has none or a later one, the ctx's when that comes first.
func TestQueuedWriteTakesTheEarlierDeadline(t *testing.T) {
	within := clientDeadlines.slot(time.Second)
	require.NotNil(t, within)
	far, cancelFar := context.WithTimeout(context.Background(), time.Hour)
	defer cancelFar()
	near, cancelNear := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancelNear()
	nearAt, _ := near.Deadline()
	for _, c := range []struct {
		name string
		ctx  context.Context
		want time.Time
	}{
		{"ctx without a deadline", context.Background(), within.at},
		{"ctx with a later deadline", far, within.at},
		{"ctx with an earlier deadline", near, nearAt},
	} {
		q := queuedWaiter(c.ctx, sharedWrite{cmd: []byte("x"), session: 1, seq: 1, within: within})
		assert.Equal(t, c.want, q.deadline, c.name)
	}
}

// TestDeadlineWheelSlotEndsOnTime: a slot ends at its deadline, within a
// slot's width of the timeout asked for, whatever slot was handed out
// before it and however long the wheel has been running: the fast path
// hands out the last slot only for the same deadline, and a slot's timer
// runs for its distance from now, not from the wheel's epoch. A
// wheel that ended a slot late would let a remote call's deadline, or a
// Session's attempt, run on that much past its caller's.
func TestDeadlineWheelSlotEndsOnTime(t *testing.T) {
	// Slots are numbered from wheelEpoch, the package's start: let it be
	// far enough back that a timer run from it would be late by seconds.
	const age = 5 * time.Second
	require.True(t, PollUntil(2*age, func() bool { return time.Since(wheelEpoch) >= age }))
	var w deadlineWheel
	long := w.slot(time.Hour) // handed out last before the short one
	require.NotNil(t, long)
	const timeout = time.Second
	start := time.Now()
	sl := w.slot(timeout)
	require.NotNil(t, sl)
	require.NotSame(t, long, sl, "a slot of an hour handed out for a timeout of %v", timeout)
	dl, _ := sl.Deadline()
	assert.WithinDuration(t, start.Add(timeout), dl, slotWidth+50*time.Millisecond)
	// Two seconds of slack for a loaded machine: less than the wheel's age.
	select {
	case <-sl.Done():
	case <-time.After(timeout + 2*time.Second):
		require.FailNow(t, "late", "a slot of %v had not ended after %v", timeout, time.Since(start))
	}
	assert.False(t, time.Now().Before(dl), "ended %v before its deadline", dl.Sub(time.Now()))
	require.ErrorIs(t, sl.Err(), context.DeadlineExceeded)
	require.NoError(t, long.Err(), "the slot of an hour ended with the short one")
}
