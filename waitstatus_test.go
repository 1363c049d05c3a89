package exraft_test

import (
	"context"
	"fmt"
	"net"
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

// TestLeaderStoppedRightAfterAwaitLeaderIsReplaced: until its first
// configuration, which binds the voters' incarnations, reaches a follower,
// a new cluster's configuration is InitialConfig, in which an election
// needs every voter. AwaitLeader on the leader therefore returns only once
// an entry of its term has committed, so that a user who stops the leader
// it returned leaves two servers that elect another. Without that wait the
// two stay candidates for good whenever the leader stops before its first
// append lands; the network delays every write by up to 20 ms to hold
// that window open.
func TestLeaderStoppedRightAfterAwaitLeaderIsReplaced(t *testing.T) {
	for range 5 {
		n := testkit.NewNet()
		n.MakeFlaky(1000, 0, 20*time.Millisecond)
		c := testkit.StartCluster(t, 3, testkit.Options{Net: n})
		var leader *exraft.Server
		testkit.Eventually(t, testkit.WaitLong, func() bool {
			for _, s := range c.Live() {
				if s.Status().Role == exraft.Leader {
					leader = s
					return true
				}
			}
			return false
		}, "a server elected")
		p, err := leader.AwaitLeader(testkit.Ctx(t, testkit.WaitLong))
		require.NoError(t, err)
		require.Equal(t, leader.Name(), p.Name)
		require.NoError(t, c.Stop(p.Name))
		for _, s := range c.Live() {
			_, err := s.WaitStatus(testkit.Ctx(t, testkit.WaitLong), func(st exraft.Status) bool {
				return st.Leader.Name != "" && st.Leader.Name != p.Name
			})
			require.NoError(t, err, "%s: the survivors elect a leader", s.Name())
		}
		for _, s := range c.Live() {
			require.NoError(t, c.Stop(s.Name()))
		}
	}
}

// TestAwaitLeaderSaysWhatItWaitsOn: a new cluster with a voter of
// InitialConfig missing cannot elect anyone; AwaitLeader's error, when ctx
// ends, still is ctx's, and says that every voter is needed and which.
func TestAwaitLeaderSaysWhatItWaitsOn(t *testing.T) {
	peers := []exraft.Peer{{Name: "a"}, {Name: "b"}, {Name: "c", Addr: testkit.DeadAddr(t)}}
	var lns []net.Listener
	for i := range 2 {
		lns = append(lns, testkit.Listen(t))
		peers[i].Addr = lns[i].Addr().String()
	}
	var servers []*exraft.Server
	for i := range 2 {
		cfg := testkit.FastConfig(peers[i].Name)
		cfg.Listener, cfg.InitialConfig = lns[i], peers
		s, err := exraft.StartServer(testkit.NewKV(), cfg)
		require.NoError(t, err)
		t.Cleanup(func() { s.Stop() })
		servers = append(servers, s)
	}
	// Long enough for several election timeouts, so that both have tried.
	ctx, cancel := context.WithTimeout(context.Background(), 20*testkit.ElectMax)
	defer cancel()
	_, err := servers[0].AwaitLeader(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "InitialConfig")
	require.ErrorContains(t, err, "every voter (a, b, c)")
}
