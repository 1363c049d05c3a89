package exraft_test

import (
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft"
	"github.com/exraft/exraft/internal/testkit"
)

// Status on the leader shows each other server's progress, so that a dead
// member does not look like a live one; every server shows whom it cannot
// reach, and why.

func TestStatusShowsADeadMemberOnTheLeader(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{})
	l := testkit.AwaitLeader(t, c.Live())
	fs := testkit.Others(c.Live(), l)
	testkit.WriteAny(t, c.Live(), "set k v")
	peer := func(name string) exraft.PeerStatus {
		for _, p := range l.Status().Peers {
			if p.Name == name {
				return p
			}
		}
		return exraft.PeerStatus{}
	}
	testkit.Eventually(t, testkit.WaitLong, func() bool {
		for _, f := range fs {
			p := peer(f.Name())
			if p.State != exraft.Replicating || p.Lag != 0 || !p.Voter || p.LastContact.IsZero() {
				return false
			}
		}
		return true
	}, "the leader shows both followers replicating, caught up: %+v", testkit.Lazy(func() string { return fmtPeers(l.Status().Peers) }))

	dead, live := fs[0], fs[1]
	require.NoError(t, c.Stop(dead.Name()))
	stopped := time.Now()
	testkit.WriteAny(t, c.Live(), "set k w")
	testkit.Eventually(t, testkit.WaitLong, func() bool {
		d, l := peer(dead.Name()), peer(live.Name())
		return d.LastContact.Before(stopped) && d.Lag > 0 && l.Lag == 0 && l.LastContact.After(stopped)
	}, "the stopped member's last contact stays before its stop and it lags, the live one's moves on: %s",
		testkit.Lazy(func() string { return fmtPeers(l.Status().Peers) }))
	for _, f := range fs {
		assert.Empty(t, f.Status().Peers, "only the leader reports peers")
	}
}

func fmtPeers(ps []exraft.PeerStatus) string {
	out := ""
	for _, p := range ps {
		out += p.Name + ":" + p.State.String() + " lag " + strconv.FormatUint(p.Lag, 10) + " contact " + p.LastContact.Format("15:04:05.000") + "; "
	}
	return out
}

// TestStatusNamesAnUnreachablePeer: a server that waits for a peer it
// cannot dial says so in its Status.
func TestStatusNamesAnUnreachablePeer(t *testing.T) {
	dead := testkit.DeadAddr(t)
	s := testkit.Start(t, testkit.NewKV(), exraft.Config{Name: "a", Listener: testkit.Listen(t),
		InitialConfig: []exraft.Peer{{Name: "a"}, {Name: "b", Addr: dead}}})
	testkit.Eventually(t, testkit.WaitLong, func() bool {
		for _, u := range s.Status().Unreachable {
			if u.Addr == dead && u.Err != "" && !u.Since.IsZero() {
				return true
			}
		}
		return false
	}, "a's Status names %s as unreachable: %+v", dead, testkit.Lazy(func() string { return fmtUnreachable(s.Status().Unreachable) }))
}

func fmtUnreachable(us []exraft.Unreachable) string {
	out := ""
	for _, u := range us {
		out += u.Addr + ": " + u.Err + "; "
	}
	return out
}

// TestStatusPeersFromTheFirstMoment: a leader lists its peers as soon as it
// leads, not from its next tick on. Ticks here come once a second (half the
// heartbeat interval) and elections only when triggered, so without the
// peers published with the new role the list is empty when the election's
// waiter looks.
func TestStatusPeersFromTheFirstMoment(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{Configure: func(_ int, cfg *exraft.Config) {
		cfg.HeartbeatInterval, cfg.ElectionTimeoutMin, cfg.ElectionTimeoutMax = 2*time.Second, time.Minute, 2*time.Minute
	}})
	s := c.Live()[0]
	require.NoError(t, s.TriggerElection(testkit.Ctx(t, testkit.WaitLong)))
	st, err := s.WaitStatus(testkit.Ctx(t, testkit.WaitLong), func(st exraft.Status) bool { return st.Role == exraft.Leader })
	require.NoError(t, err)
	require.Len(t, st.Peers, 2, "the new leader's peers: %+v", st.Peers)
}

// TestStatusUnreachableKeepsTheFirstFailure: Status lists the peers a
// server cannot reach by address, each with the time of the first failure
// of its episode, which the retries after it leave alone: a Since that
// moved with each retry would say that the peer had just become
// unreachable, however long ago it did.
func TestStatusUnreachableKeepsTheFirstFailure(t *testing.T) {
	deadB, deadC := testkit.DeadAddr(t), testkit.DeadAddr(t)
	var dials atomic.Int32
	cfg := testkit.FastConfig("a")
	cfg.Listener = testkit.Listen(t)
	cfg.InitialConfig = []exraft.Peer{{Name: "a"}, {Name: "b", Addr: deadB}, {Name: "c", Addr: deadC}}
	cfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
		if addr == deadB || addr == deadC {
			dials.Add(1)
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	s := testkit.Start(t, testkit.NewKV(), cfg)
	since := map[string]time.Time{}
	testkit.Eventually(t, testkit.WaitLong, func() bool {
		us := s.Status().Unreachable
		for _, u := range us {
			since[u.Addr] = u.Since
		}
		return len(us) == 2 && !since[deadB].IsZero() && !since[deadC].IsZero()
	}, "a's Status names b and c as unreachable: %+v", testkit.Lazy(func() string { return fmtUnreachable(s.Status().Unreachable) }))
	n := dials.Load()
	testkit.Eventually(t, testkit.WaitLong, func() bool { return dials.Load() >= n+6 }, "a retries b and c several times")
	want := []string{deadB, deadC}
	if want[1] < want[0] {
		want[0], want[1] = want[1], want[0]
	}
	for range 20 { // a map's order changes from one listing to the next
		us := s.Status().Unreachable
		require.Len(t, us, 2)
		require.Equal(t, want, []string{us[0].Addr, us[1].Addr}, "listed by address")
		for _, u := range us {
			assert.Equal(t, since[u.Addr], u.Since, "%s: Since moved with a retry", u.Addr)
		}
	}
}

// TestStatusUnreachableClearsOnceReached: a peer that could not be reached
// leaves Status's Unreachable once a connection to it is made; one that
// stayed listed would send an operator after a fault long mended.
func TestStatusUnreachableClearsOnceReached(t *testing.T) {
	var blocked atomic.Bool
	blocked.Store(true)
	peerLn, selfLn := testkit.Listen(t), testkit.Listen(t)
	peers := []exraft.Peer{{Name: "a", Addr: selfLn.Addr().String()}, {Name: "b", Addr: peerLn.Addr().String()}}
	cfg := testkit.FastConfig("a")
	cfg.Listener, cfg.InitialConfig = selfLn, peers
	cfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
		if blocked.Load() && addr == peers[1].Addr {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	a := testkit.Start(t, testkit.NewKV(), cfg)
	unreachable := func() []exraft.Unreachable { return a.Status().Unreachable }
	testkit.Eventually(t, testkit.WaitLong, func() bool {
		us := unreachable()
		return len(us) == 1 && us[0].Addr == peers[1].Addr
	}, "a's Status names b as unreachable: %+v", testkit.Lazy(func() string { return fmtUnreachable(unreachable()) }))

	bcfg := testkit.FastConfig("b")
	bcfg.Listener, bcfg.InitialConfig = peerLn, peers
	// b waits long before it campaigns, so that a campaigns first and has
	// to connect to b.
	bcfg.ElectionTimeoutMin, bcfg.ElectionTimeoutMax = time.Minute, 2*time.Minute
	b := testkit.Start(t, testkit.NewKV(), bcfg)
	blocked.Store(false)
	testkit.AwaitLeader(t, []*exraft.Server{a, b})
	testkit.Eventually(t, testkit.WaitLong, func() bool { return len(unreachable()) == 0 },
		"a's Status names no peer once it reached b: %+v", testkit.Lazy(func() string { return fmtUnreachable(unreachable()) }))
}

// TestStatusForgetsARemovedUnreachablePeer: once a server that could not be
// reached is removed from the configuration, nothing is sent to it and
// nothing waits on it: the leader's Status stops naming it (once the stream
// to it retires, within streamIdle's two ticks), rather than for the rest
// of its life.
func TestStatusForgetsARemovedUnreachablePeer(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{})
	leader := c.LeaderWithin(testkit.WaitLong)
	gone := c.Others(leader)[0]
	require.NoError(t, c.Stop(gone.Name()))
	names := func() bool {
		for _, u := range leader.Status().Unreachable {
			if u.Addr == gone.Addr() {
				return true
			}
		}
		return false
	}
	testkit.Eventually(t, testkit.WaitLong, names, "the leader names the stopped %s as unreachable", gone.Name())
	require.NoError(t, leader.RemoveServer(testkit.Ctx(t, testkit.WaitLong), gone.Name()))
	testkit.Eventually(t, 2*testkit.WaitLong, func() bool { return !names() },
		"the leader still names the removed %s: %+v", gone.Name(), testkit.Lazy(func() string { return fmtUnreachable(leader.Status().Unreachable) }))
}
