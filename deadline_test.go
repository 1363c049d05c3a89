package exraft

import (
	"context"
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
