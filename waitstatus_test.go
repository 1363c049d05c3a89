package exraft_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft"
	"github.com/exraft/exraft/internal/testkit"
)

// WaitStatus (await.go): a wait on any condition of a server's Status,
// woken by changes rather than by polling.

func TestWaitStatusSeesANewLeader(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{})
	old := testkit.AwaitLeader(t, c.Live())
	f := testkit.Others(c.Live(), old)[0]
	require.NoError(t, c.Stop(old.Name()))
	st, err := f.WaitStatus(testkit.Ctx(t, testkit.WaitLong), func(st exraft.Status) bool {
		return st.Leader.Name != "" && st.Leader.Name != old.Name()
	})
	require.NoError(t, err)
	assert.NotEqual(t, old.Name(), st.Leader.Name)
	assert.Equal(t, f.Name(), st.Name)
}

// TestWaitStatusSeesTheAppliedIndex: the applied index moves on the
// applier, after the commit index the protocol publishes; a wait on it must
// wake when the entry is applied, with nothing else changing.
func TestWaitStatusSeesTheAppliedIndex(t *testing.T) {
	gates := make([]*gatedKV, 3)
	c := testkit.StartCluster(t, 3, testkit.Options{NewSM: func(i int, kv *testkit.KV) exraft.StateMachine {
		gates[i] = &gatedKV{KV: kv, open: make(chan struct{})}
		return gates[i]
	}})
	l := testkit.AwaitLeader(t, c.Live())
	f := testkit.Others(c.Live(), l)[0]
	gate := gates[slices.Index(c.Names(), f.Name())]
	gate.armed.Store(true)
	// Registered after the cluster's own cleanup, so it runs first: a test
	// that fails with the gate shut must not leave Stop waiting on Apply.
	t.Cleanup(gate.release)
	testkit.WriteAny(t, c.Live(), "set slow 1")
	index := l.Status().CommitIndex

	got := make(chan exraft.Status, 1)
	errc := make(chan error, 1)
	go func() {
		st, err := f.WaitStatus(testkit.Ctx(t, testkit.WaitLong), func(st exraft.Status) bool { return st.AppliedIndex >= index })
		got <- st
		errc <- err
	}()
	// f knows the entry is committed, and its Apply is held: the wait has
	// seen every change but the applied index.
	testkit.Eventually(t, testkit.WaitLong, func() bool { return f.Status().CommitIndex >= index }, "%s learns the commit", f.Name())
	gate.release()
	require.NoError(t, <-errc)
	assert.GreaterOrEqual(t, (<-got).AppliedIndex, index)
}

// gatedKV holds, once armed, every Apply of a "set slow" command until open
// is closed.
type gatedKV struct {
	*testkit.KV
	armed atomic.Bool
	open  chan struct{}
	once  sync.Once
}

func (g *gatedKV) release() { g.once.Do(func() { close(g.open) }) }

func (g *gatedKV) Apply(cmd []byte) []byte {
	if g.armed.Load() && strings.HasPrefix(string(cmd), "set slow") {
		<-g.open
	}
	return g.KV.Apply(cmd)
}

func TestWaitStatusEndsWithCtxAndStop(t *testing.T) {
	s, _ := testkit.StartAlone(t, "alone", nil)
	never := func(exraft.Status) bool { return false }

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	st, err := s.WaitStatus(ctx, never)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, "alone", st.Name, "the last status seen comes back")

	errc := make(chan error, 1)
	go func() {
		st, err := s.WaitStatus(context.Background(), never)
		if err == nil || st.Role != exraft.Stopped {
			err = fmt.Errorf("want ErrStopped and Role Stopped, got %v and %v", err, st.Role)
		}
		errc <- err
	}()
	require.NoError(t, s.Stop())
	require.ErrorIs(t, <-errc, exraft.ErrStopped)

	// A condition the stopped status meets holds.
	st, err = s.WaitStatus(context.Background(), func(st exraft.Status) bool { return st.Role == exraft.Stopped })
	require.NoError(t, err)
	assert.Equal(t, exraft.Stopped, st.Role)
}

// TestWaitStatusDoesNotPoll: while nothing changes, cond is not called
// again and again.
func TestWaitStatusDoesNotPoll(t *testing.T) {
	s, _ := testkit.StartAlone(t, "alone", nil)
	var calls atomic.Int32
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := s.WaitStatus(ctx, func(exraft.Status) bool {
		calls.Add(1)
		return false
	})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.LessOrEqual(t, calls.Load(), int32(3), "an idle server that waits to be added changes nothing: cond ran %d times", calls.Load())
}
