package exraft

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Tests of the watchdog that reports a protocol loop or an applier that no
// longer comes round (stall.go).

// quickStalls makes the watchdog report after 300 ms, for the servers the
// test starts after it; the Cleanup it registers runs after theirs.
func quickStalls(t *testing.T) {
	after, check := stallAfter, stallCheck
	stallAfter, stallCheck = 300*time.Millisecond, 20*time.Millisecond
	t.Cleanup(func() { stallAfter, stallCheck = after, check })
}

// TestStuckProtocolLoopIsReported: a protocol loop held in one call is
// reported with its stack, which names the call, and its coming round
// again is reported too.
func TestStuckProtocolLoopIsReported(t *testing.T) {
	quickStalls(t)
	var logs TestLog
	s := startAlone(t, Config{Logger: logs.Logger()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.AwaitLeader(ctx)
	require.NoError(t, err)
	release := make(chan struct{})
	held := make(chan error, 1)
	go func() { held <- s.onDriver(ctx, func() { holdTheLoop(release) }) }()
	require.Eventually(t, func() bool { return logs.Has("has not come round", "holdTheLoop", "(*Server).run") },
		10*time.Second, 5*time.Millisecond, "a held protocol loop was not reported with its stack; log:\n%s", logs.String())
	require.Equal(t, uint64(1), s.Metrics().LoopStalls, "the stall logged is not counted")
	close(release)
	require.NoError(t, <-held)
	require.Eventually(t, func() bool { return logs.Has("the protocol loop came round again") },
		10*time.Second, 5*time.Millisecond, "the loop's coming round again was not reported; log:\n%s", logs.String())
	_, err = s.Write(ctx, []byte("after"))
	require.NoError(t, err)
}

// holdTheLoop is a named frame for the stack to show.
func holdTheLoop(release <-chan struct{}) { <-release }

// TestStuckApplierIsReported: an Apply that does not return is reported
// with the applier's stack, which names it, and the applier's going on is
// reported too.
func TestStuckApplierIsReported(t *testing.T) {
	quickStalls(t)
	var logs TestLog
	sm := newGateSM()
	s := startAloneWith(t, sm, Config{Logger: logs.Logger()})
	t.Cleanup(sm.open) // before Stop, which waits for the applier
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.AwaitLeader(ctx)
	require.NoError(t, err)
	wrote := make(chan error, 1)
	go func() { _, err := s.Write(ctx, []byte("block")); wrote <- err }()
	require.Eventually(t, func() bool { return logs.Has("the applier has been on one batch", "gateSMInternal).Apply") },
		10*time.Second, 5*time.Millisecond, "a held Apply was not reported with its stack; log:\n%s", logs.String())
	require.False(t, logs.Has("has not come round"), "the protocol loop was reported stuck, though only the applier was held")
	m := s.Metrics()
	require.Equal(t, [2]uint64{0, 1}, [2]uint64{m.LoopStalls, m.ApplierStalls}, "loop and applier stalls counted")
	sm.open()
	require.NoError(t, <-wrote)
	require.Eventually(t, func() bool { return logs.Has("the applier went on") },
		10*time.Second, 5*time.Millisecond, "the applier's going on was not reported; log:\n%s", logs.String())
}

// TestPausedWatchdogBlamesNoOne: after a pause of the whole process (the
// watchdog's own look comes late, as after SIGSTOP), a protocol loop or an
// applier that has not moved meanwhile is not reported: they were paused
// too. Held on past the limit once the watchdog runs on time again, they
// are.
func TestPausedWatchdogBlamesNoOne(t *testing.T) {
	var logs TestLog
	s := &Server{log: logs.Logger(), tick: time.Millisecond}
	s.stalls.batchBegan() // the applier is on a batch
	t0 := time.Now()
	w := newWatchdog(s, t0)
	for at := t0; at.Before(t0.Add(stallAfter / 2)); at = at.Add(stallCheck) {
		s.stalls.loops.Add(1)
		w.check(at)
	}
	// Paused for ten times the limit: the loop has not come round since,
	// nor has the applier moved on.
	resumed := t0.Add(10 * stallAfter)
	w.check(resumed)
	require.False(t, logs.Has("has not come round"), "a pause of the process was blamed on the protocol loop:\n%s", logs.String())
	require.False(t, logs.Has("the applier has been on one batch"), "a pause of the process was blamed on the applier:\n%s", logs.String())
	for at := resumed; at.Before(resumed.Add(stallAfter + stallCheck)); at = at.Add(stallCheck) {
		w.check(at)
	}
	require.True(t, logs.Has("has not come round"), "a loop held past the limit after the pause went unreported:\n%s", logs.String())
	require.True(t, logs.Has("the applier has been on one batch"), "an applier held past the limit after the pause went unreported:\n%s", logs.String())
}
