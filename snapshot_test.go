package exraft_test

// End-to-end tests of snapshots (docs/design.md §9) on loopback TCP: every
// server compacts its log, and a server that needs what was compacted (new,
// restarted blank, or cut off while the others went on) is caught up from
// a snapshot, then from the log; failures of Snapshot, WriteTo, Restore and
// of the transfer itself are retried without stalling anyone. The state
// machine is testkit.SnapKV, whose snapshots carry its applied history, so
// that a restored server must hold exactly the state of the others.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
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

// ---------------------------------------------------------------------------
// Helpers

const (
	snapThreshold = 100
	snapTrailing  = 10
)

// snapConfigure sets the snapshot fields of every test server.
func snapConfigure(cfg *exraft.Config) {
	cfg.SnapshotThreshold = snapThreshold
	cfg.TrailingLogs = snapTrailing
}

// snapCluster starts a cluster of n SnapKV servers; configure, if not nil,
// changes more of each Config.
func snapCluster(t *testing.T, n int, configure func(i int, cfg *exraft.Config)) (*testkit.Cluster, *testkit.SnapKVs) {
	t.Helper()
	snaps := testkit.NewSnapKVs()
	c := testkit.StartCluster(t, n, testkit.Options{
		NewSM: snaps.NewSM,
		Configure: func(i int, cfg *exraft.Config) {
			snapConfigure(cfg)
			if configure != nil {
				configure(i, cfg)
			}
		},
	})
	return c, snaps
}

// compactedCluster starts a three-server snapCluster, writes n values under
// keys k0…, and waits until the leader has compacted its log; it returns
// the cluster, its state machines, the servers and the leader.
func compactedCluster(t *testing.T, configure func(i int, cfg *exraft.Config), value string, n int) (*testkit.Cluster, *testkit.SnapKVs, []*exraft.Server, *exraft.Server) {
	t.Helper()
	c, snaps := snapCluster(t, 3, configure)
	servers := c.Servers()
	testkit.AwaitLeader(t, servers)
	writeMany(t, servers, "k", value, n)
	leader := testkit.AwaitLeader(t, servers)
	awaitCompacted(t, leader)
	return c, snaps, servers, leader
}

// snapOf returns the SnapKV of name's current incarnation.
func snapOf(c *testkit.Cluster, snaps *testkit.SnapKVs, name string) *testkit.SnapKV {
	return snaps.Of(slices.Index(c.Names(), name))
}

// writeMany writes "set <prefix><i> <value>" for i in [0, n) with 8
// writers at whichever of servers leads, retrying while leadership moves.
func writeMany(t *testing.T, servers []*exraft.Server, prefix, value string, n int) {
	t.Helper()
	const writers = 8
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += writers {
				if err := writeOneAtLeader(servers, fmt.Sprintf("set %s%d %s", prefix, i, value)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// writeOneAtLeader writes cmd at the leader among servers until it
// succeeds. It returns an error rather than fail the test, as it runs off
// the test's goroutine.
func writeOneAtLeader(servers []*exraft.Server, cmd string) error {
	var last, fatal error
	ok := testkit.PollUntil(testkit.WaitLong, func() bool {
		for _, s := range servers {
			if s.Status().Role != exraft.Leader {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := s.Write(ctx, []byte(cmd))
			cancel()
			switch {
			case err == nil:
				return true
			case !errors.Is(err, exraft.ErrNotLeader) && !errors.Is(err, exraft.ErrLeadershipLost) &&
				!errors.Is(err, context.DeadlineExceeded):
				fatal = fmt.Errorf("Write(%q) on %s: %w", cmd, s.Name(), err)
				return true
			}
			last = err
		}
		return false
	})
	switch {
	case fatal != nil:
		return fatal
	case !ok:
		return fmt.Errorf("Write(%q) did not succeed within %v (last error: %v)", cmd, testkit.WaitLong, last)
	}
	return nil
}

// awaitSameState waits until every server's state equals the leader's, and
// every server has applied all the leader committed.
func awaitSameState(t *testing.T, leader *exraft.Server, servers ...*exraft.Server) {
	t.Helper()
	testkit.Eventually(t, testkit.WaitLong, func() bool {
		want, commit := testkit.Dirty(leader, "dump"), leader.Status().CommitIndex
		for _, s := range servers {
			if s.Status().AppliedIndex < commit || testkit.Dirty(s, "dump") != want {
				return false
			}
		}
		return true
	}, "every server to hold the leader %s's state:%v", leader.Name(), append(testkit.Statuses{leader}, servers...))
}

// startSnapJoiner starts a SnapKV server that waits for a leader to add it.
func startSnapJoiner(t *testing.T, name string, sm *testkit.SnapKV, configure func(cfg *exraft.Config)) *exraft.Server {
	t.Helper()
	return testkit.StartAloneWith(t, name, sm, func(cfg *exraft.Config) {
		snapConfigure(cfg)
		if configure != nil {
			configure(cfg)
		}
	})
}

// awaitCompacted waits until the leader's log no longer holds index 1.
func awaitCompacted(t *testing.T, leader *exraft.Server) {
	t.Helper()
	testkit.Eventually(t, testkit.WaitShort, func() bool { return leader.Status().FirstIndex > 1 },
		"the leader %s to compact its log:%v", leader.Name(), testkit.Statuses{leader})
}

// addAsync calls AddServer on the leader in the background; the channel
// gets its error.
func addAsync(t *testing.T, leader *exraft.Server, p exraft.Peer, d time.Duration) <-chan error {
	done := make(chan error, 1)
	ctx := testkit.Ctx(t, d)
	go func() { done <- leader.AddServer(ctx, p) }()
	return done
}

// ---------------------------------------------------------------------------
// Tests

// TestSnapshotsCompactEveryServer: with a Snapshotter, every server takes
// snapshots on its own and drops its log up to TrailingLogs entries before
// the latest, and the servers still agree.
func TestSnapshotsCompactEveryServer(t *testing.T) {
	c, snaps := snapCluster(t, 3, nil)
	servers := c.Servers()
	leader := testkit.AwaitLeader(t, servers)
	writeMany(t, servers, "k", "v", 2000)
	leader = testkit.AwaitLeader(t, servers)
	awaitSameState(t, leader, servers...)
	testkit.Eventually(t, testkit.WaitShort, func() bool {
		for _, s := range servers {
			if st := s.Status(); st.SnapshotIndex == 0 || st.FirstIndex <= 1 {
				return false
			}
		}
		return true
	}, "every server to have a snapshot and a compacted log:%v", testkit.Statuses(servers))
	for i, s := range servers {
		st := s.Status()
		assert.GreaterOrEqual(t, st.FirstIndex+snapTrailing, st.SnapshotIndex+1,
			"%s keeps at most TrailingLogs entries before its snapshot: %+v", s.Name(), st)
		assert.LessOrEqual(t, st.SnapshotIndex, st.AppliedIndex, "%s: %+v", s.Name(), st)
		assert.Greater(t, st.SnapshotIndex+snapThreshold+1024, st.AppliedIndex,
			"%s snapshots every SnapshotThreshold entries, give or take an apply batch: %+v", s.Name(), st)
		assert.Greater(t, snaps.Of(i).Snapshots(), 1, "%s took several snapshots", s.Name())
		assert.False(t, snaps.Of(i).Overlapped(), "%s: the state machine was called concurrently", s.Name())
	}
	assert.Equal(t, "v", testkit.Dirty(servers[2], "get k1999"))
}

// TestSnapshotCatchesUpNewServer: a server added after the leader compacted
// its log is caught up from a snapshot, then from the log, and applies what
// comes after.
func TestSnapshotCatchesUpNewServer(t *testing.T) {
	_, _, servers, leader := compactedCluster(t, nil, "v", 1000)

	sm := testkit.NewSnapKV(nil)
	d := startSnapJoiner(t, "raft4", sm, nil)
	require.NoError(t, leader.AddServer(testkit.Ctx(t, testkit.WaitLong), d.Peer()))
	all := append(slices.Clone(servers), d)
	awaitSameState(t, leader, all...)
	assert.GreaterOrEqual(t, sm.Restores(), 1, "raft4 was caught up through a snapshot")
	assert.Greater(t, d.Status().FirstIndex, uint64(1), "raft4's log starts after the snapshot")

	writeMany(t, servers, "after", "w", 200)
	leader = testkit.AwaitLeader(t, all)
	awaitSameState(t, leader, all...)
	assert.Equal(t, "w", testkit.Dirty(d, "get after199"))
	assert.False(t, sm.Overlapped(), "the state machine was called concurrently")
}

// TestSnapshotCatchesUpRestartedFollower: a follower restarted blank under
// its name and address is re-admitted by the leader on its own, caught up
// through a snapshot.
func TestSnapshotCatchesUpRestartedFollower(t *testing.T) {
	c, snaps := snapCluster(t, 3, nil)
	servers := c.Servers()
	leader := testkit.AwaitLeader(t, servers)
	writeMany(t, servers, "k", "v", 1000)
	leader = testkit.AwaitSettled(t, servers, 300*time.Millisecond)
	awaitCompacted(t, leader)
	f, g := twoFollowers(t, servers, leader)

	// The cluster starts it again blank, with its old name, address and
	// InitialConfig, and a new SnapKV.
	name := f.Name()
	require.NoError(t, c.Restart(name))
	f2, sm := c.Server(name), snapOf(c, snaps, name)
	require.Zero(t, sm.Restores(), "a new incarnation has a new state machine")

	testkit.Eventually(t, testkit.WaitLong, func() bool {
		st := leader.Status()
		return slices.Contains(st.Members, f2.Peer()) && len(st.Learners) == 0 && sm.Restores() > 0
	}, "the restarted %s to be re-admitted after a snapshot:%v", name, testkit.Statuses{leader, f2, g})
	writeMany(t, []*exraft.Server{leader, g, f2}, "after", "w", 100)
	awaitSameState(t, leader, g, f2)
}

// TestSnapshotCatchesUpFarBehindFollower: a follower cut off while the
// others wrote on and compacted past its log is caught up through a
// snapshot once it is back.
func TestSnapshotCatchesUpFarBehindFollower(t *testing.T) {
	snaps := testkit.NewSnapKVs()
	c := testkit.StartCluster(t, 3, testkit.Options{
		Net:       testkit.NewNet(),
		NewSM:     snaps.NewSM,
		Configure: func(i int, cfg *exraft.Config) { snapConfigure(cfg) },
	})
	servers := c.Servers()
	leader := testkit.AwaitSettled(t, servers, 300*time.Millisecond)
	f, g := twoFollowers(t, servers, leader)
	sm := snapOf(c, snaps, f.Name())

	c.Net().Isolate(f.Name())
	writeMany(t, []*exraft.Server{leader, g}, "k", "v", 1500)
	behind := f.Status().LastIndex
	testkit.Eventually(t, testkit.WaitShort, func() bool { return leader.Status().FirstIndex > behind+1 },
		"the leader to compact past %s's last index %d:%v", f.Name(), behind, testkit.Statuses{leader, f})

	c.Net().Heal(f.Name())
	leader = testkit.AwaitLeader(t, servers)
	awaitSameState(t, leader, servers...)
	assert.GreaterOrEqual(t, sm.Restores(), 1, "%s was caught up through a snapshot", f.Name())
	writeMany(t, servers, "after", "w", 100)
	awaitSameState(t, leader, servers...)
}

// TestSnapshotRestoreFailureThenLeaderChange: a member restarted blank
// fails to restore the snapshot of the leader that sends it; the leadership
// then moves. The new leader, which knows nothing of the failed transfer,
// sends its own snapshot, and the member restores it and catches up: the
// failure is held by the member, not by one leader's bookkeeping.
func TestSnapshotRestoreFailureThenLeaderChange(t *testing.T) {
	var logs exraft.TestLog
	c, snaps, servers, leader := compactedCluster(t, func(i int, cfg *exraft.Config) { cfg.Logger = logs.Logger() }, "v", 500)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.Tail(60))
		}
	})
	others := testkit.Others(servers, leader)
	f, next := others[0], others[1]
	i := slices.Index(c.Names(), f.Name())
	snaps.FailRestoresOfNext(i, 1)
	require.NoError(t, c.Restart(f.Name()))
	testkit.Eventually(t, testkit.WaitLong, func() bool { return snaps.Of(i).RestoreErrors() == 1 }, "the restarted %s's first Restore to fail", f.Name())

	require.NoError(t, leader.TransferLeadership(testkit.Ctx(t, testkit.WaitLong), next.Name()))
	testkit.MustWrite(t, next, "set after change")
	live := c.Live()
	awaitSameState(t, next, live...)
	assert.GreaterOrEqual(t, snaps.Of(i).Restores(), 1, "%s restored a snapshot after the failure", f.Name())
	assert.Equal(t, "change", testkit.Dirty(c.Server(f.Name()), "get after"))
}

// TestSnapshotRestoreFailureKeepsServerOut: a server whose Restore fails is
// not admitted and applies nothing, and answers no read, while the others
// go on committing; the leader sends the snapshot again, and once Restore
// succeeds the server is caught up and admitted.
func TestSnapshotRestoreFailureKeepsServerOut(t *testing.T) {
	var logs exraft.TestLog
	_, _, servers, leader := compactedCluster(t, func(i int, cfg *exraft.Config) { cfg.Logger = logs.Logger() }, "v", 500)

	sm := testkit.NewSnapKV(nil)
	sm.FailRestores(2)
	var dlogs exraft.TestLog
	d := startSnapJoiner(t, "raft4", sm, func(cfg *exraft.Config) { cfg.Logger = dlogs.Logger() })
	added := addAsync(t, leader, d.Peer(), 2*testkit.WaitLong)

	testkit.Eventually(t, testkit.WaitLong, func() bool { return sm.RestoreErrors() >= 1 }, "a first Restore to fail")
	var readErr error
	testkit.Eventually(t, testkit.WaitShort, func() bool {
		_, readErr = d.ReadDirty(testkit.Ctx(t, testkit.WaitShort), []byte("get k1"))
		return readErr != nil
	}, "ReadDirty on raft4 to fail while its state machine is unfit")
	assert.Contains(t, readErr.Error(), "restore", "the error says what the server waits on")
	st := leader.Status()
	assert.False(t, testkit.HasName(st.Members, d.Name()), "raft4 is not admitted while its Restore fails: %+v", st)
	assert.Zero(t, d.Status().AppliedIndex, "raft4 applies nothing")
	testkit.MustWrite(t, leader, "set during failure")

	select {
	case err := <-added:
		require.NoError(t, err, "AddServer once Restore succeeds")
	case <-time.After(2 * testkit.WaitLong):
		require.FailNowf(t, "AddServer did not return", "%v", testkit.Statuses{leader, d})
	}
	assert.Equal(t, 2, sm.RestoreErrors())
	assert.GreaterOrEqual(t, sm.Restores(), 1)
	all := append(slices.Clone(servers), d)
	awaitSameState(t, leader, all...)
	assert.Equal(t, "failure", testkit.Dirty(d, "get during"))
	assert.True(t, dlogs.Has("level=ERROR", "Restore failed"), "raft4 logs the failed Restore:\n%s", dlogs.Tail(20))
	assert.Positive(t, logs.Warnings("sending a snapshot failed"), "the leader logs the failed transfer")
}

// TestSnapshotErrorsAreRetried: a Snapshot or WriteTo that fails is logged
// and tried again after the next SnapshotThreshold entries, while the
// server goes on serving.
func TestSnapshotErrorsAreRetried(t *testing.T) {
	for _, what := range []string{"Snapshot", "WriteTo"} {
		t.Run(what, func(t *testing.T) {
			var logs exraft.TestLog
			sm := testkit.NewSnapKV(nil)
			if what == "Snapshot" {
				sm.FailSnapshots(1)
			} else {
				sm.FailWrites(1)
			}
			cfg := testkit.FastConfig("solo")
			cfg.Listener = testkit.Listen(t)
			cfg.InitialConfig = []exraft.Peer{{Name: "solo", Addr: cfg.Listener.Addr().String()}}
			cfg.Logger = logs.Logger()
			snapConfigure(&cfg)
			s := testkit.Start(t, sm, cfg)
			testkit.AwaitLeader(t, []*exraft.Server{s})
			for i := range snapThreshold + 20 {
				testkit.MustWrite(t, s, fmt.Sprintf("set a%d x", i))
			}
			testkit.Eventually(t, testkit.WaitShort, func() bool { return logs.Warnings(what, "failed") > 0 },
				"a warning that %s failed:\n%v", what, testkit.Lazy(func() string { return logs.Tail(10) }))
			failedAt := s.Status().AppliedIndex
			assert.Zero(t, s.Status().SnapshotIndex, "no snapshot yet")
			for i := range snapThreshold + 20 {
				testkit.MustWrite(t, s, fmt.Sprintf("set b%d y", i))
			}
			testkit.Eventually(t, testkit.WaitShort, func() bool { return s.Status().SnapshotIndex > 0 }, "a snapshot at the next threshold")
			assert.GreaterOrEqual(t, s.Status().SnapshotIndex, uint64(2*(snapThreshold-snapThreshold/4)),
				"the next try comes at the next snapshot point, 3/4 of SnapshotThreshold after the failed one (at %d or before) or later", failedAt)
			assert.Equal(t, "y", testkit.MustRead(t, s, "get b0"))
			assert.Equal(t, 1, sm.SnapshotErrors(), "the one failure told")
		})
	}
}

// snapshotLinks is a Config.Dial that injects one fault into the first
// connections carrying a snapshot (recognised by the InstallSnapshot
// method in their first frame): cut them, or make them go silent, once
// they have written after bytes; or delay each of their writes, so that a
// transfer takes a while.
type snapshotLinks struct {
	fault snapshotFault
	after int
	delay time.Duration
	left  atomic.Int32 // connections still to fault (cut and silence)
	hits  atomic.Int32 // connections faulted (cut and silence); writes delayed
	// only, if set, is the one address whose connections are faulted:
	// other followers may need a snapshot too.
	only atomic.Pointer[string]
}

type snapshotFault uint8

const (
	cutMidway  snapshotFault = iota // close the connection
	goSilent                        // swallow every later write: neither end hears again
	slowWrites                      // pause before each write
)

func (sl *snapshotLinks) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if only := sl.only.Load(); only != nil && *only != addr {
		return conn, nil
	}
	return &snapshotLink{Conn: conn, sl: sl}, nil
}

type snapshotLink struct {
	net.Conn
	sl      *snapshotLinks
	mu      sync.Mutex
	snap    bool
	written int
	faulted bool
}

func (c *snapshotLink) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.snap = c.snap || bytes.Contains(p, []byte("InstallSnapshot"))
	if !c.snap {
		c.mu.Unlock()
		return c.Conn.Write(p)
	}
	before := c.written
	c.written += len(p)
	// pass: what of p goes through before the fault, so that the peer
	// gets the first after bytes even when they come in one large write.
	pass := len(p)
	if c.sl.fault != slowWrites && !c.faulted && c.written > c.sl.after && c.sl.left.Add(-1) >= 0 {
		c.faulted = true
		c.sl.hits.Add(1)
		pass = max(c.sl.after-before, 0)
	} else if c.faulted {
		pass = 0
	}
	faulted := c.faulted
	c.mu.Unlock()
	switch {
	case c.sl.fault == slowWrites:
		c.sl.hits.Add(1)
		time.Sleep(c.sl.delay) // the slow link itself, not a wait
	case faulted && c.sl.fault == cutMidway:
		if pass > 0 {
			c.Conn.Write(p[:pass])
		}
		c.Conn.Close()
		return 0, errors.New("snapshotLinks: connection cut mid-transfer")
	case faulted:
		if pass > 0 {
			if _, err := c.Conn.Write(p[:pass]); err != nil {
				return 0, err
			}
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// TestSnapshotTransferCutMidwayRestarts: connections cut in the middle of a
// transfer fail it; the leader starts it again, from the beginning, and it
// completes.
func TestSnapshotTransferCutMidwayRestarts(t *testing.T) {
	cutter := &snapshotLinks{fault: cutMidway, after: 40 << 10}
	cutter.left.Store(2)
	small := func(cfg *exraft.Config) { cfg.MaxFrameSize = 16 << 10 } // chunks of 8 KiB
	// a snapshot of ~230 KB: the map and the commands
	_, _, servers, leader := compactedCluster(t, func(i int, cfg *exraft.Config) {
		small(cfg)
		cfg.Dial = cutter.dial
	}, strings.Repeat("v", 100), 1000)

	sm := testkit.NewSnapKV(nil)
	d := startSnapJoiner(t, "raft4", sm, small)
	require.NoError(t, leader.AddServer(testkit.Ctx(t, 2*testkit.WaitLong), d.Peer()))
	all := append(slices.Clone(servers), d)
	awaitSameState(t, leader, all...)
	assert.Equal(t, int32(2), cutter.hits.Load(), "two transfers were cut")
	assert.Equal(t, 1, sm.Restores(), "one transfer arrived whole, and was restored")
	assert.Zero(t, sm.RestoreErrors())
}

// TestSnapshotTransferStallRestarts: a transfer whose peer goes silent
// fails after IOTimeout on the leader, while the follower drops what it
// buffered; the next transfer completes, and the leader kept committing
// throughout (hashicorp/raft#212 wedged it instead).
func TestSnapshotTransferStallRestarts(t *testing.T) {
	staller := &snapshotLinks{fault: goSilent, after: 20 << 10}
	staller.left.Store(1)
	nobody := ""
	staller.only.Store(&nobody) // until raft4 is known: only its transfer stalls
	var logs exraft.TestLog
	conf := func(cfg *exraft.Config) {
		cfg.MaxFrameSize = 16 << 10
		cfg.IOTimeout = time.Second
	}
	_, _, servers, leader := compactedCluster(t, func(i int, cfg *exraft.Config) {
		conf(cfg)
		cfg.Dial = staller.dial
		cfg.Logger = logs.Logger()
	}, strings.Repeat("v", 100), 1000)

	sm := testkit.NewSnapKV(nil)
	var dlogs exraft.TestLog
	d := startSnapJoiner(t, "raft4", sm, func(cfg *exraft.Config) {
		conf(cfg)
		cfg.Logger = dlogs.Logger()
	})
	addr := d.Addr()
	staller.only.Store(&addr)
	added := addAsync(t, leader, d.Peer(), 2*testkit.WaitLong)
	testkit.Eventually(t, testkit.WaitLong, func() bool { return staller.hits.Load() == 1 }, "a transfer to stall")
	testkit.MustWrite(t, leader, "set while stalled")
	select {
	case err := <-added:
		require.NoError(t, err, "AddServer once a transfer completes")
	case <-time.After(2 * testkit.WaitLong):
		require.FailNowf(t, "AddServer did not return", "%v", testkit.Statuses{leader, d})
	}
	all := append(slices.Clone(servers), d)
	awaitSameState(t, leader, all...)
	assert.Equal(t, "stalled", testkit.Dirty(d, "get while"))
	// The leader gives up on the silent transfer when its own IOTimeout
	// passes without an answer, or, when raft4's passes first and it drops
	// the transfer, as the connection ends under it.
	assert.Positive(t, logs.Warnings("sending a snapshot failed", "no answer")+logs.Warnings("sending a snapshot failed", "EOF"),
		"the leader gave up on the silent transfer:\n%s", logs.Tail(20))
	// raft4 drops the stalled transfer once no chunk came for IOTimeout, or,
	// on a machine slow enough that the leader's next try comes first, when
	// that one begins.
	assert.True(t, dlogs.Has("dropped a snapshot transfer that stalled") || dlogs.Has("dropped an unfinished snapshot transfer"),
		"raft4 dropped the stalled transfer, of which it had the first %d bytes:\n%s", staller.after, dlogs.Tail(20))
}

// TestNoSnapshotterKeepsWholeLog: without a Snapshotter the snapshot fields
// are ignored: nothing is compacted.
func TestNoSnapshotterKeepsWholeLog(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{Configure: func(i int, cfg *exraft.Config) {
		cfg.SnapshotThreshold = 10
		cfg.TrailingLogs = 1
	}})
	servers := c.Servers()
	testkit.AwaitLeader(t, servers)
	writeMany(t, servers, "k", "v", 300)
	leader := testkit.AwaitLeader(t, servers)
	awaitSameState(t, leader, servers...)
	for _, s := range servers {
		st := s.Status()
		assert.Zero(t, st.SnapshotIndex, "%s", s.Name())
		assert.Equal(t, uint64(1), st.FirstIndex, "%s keeps its whole log", s.Name())
	}
}

// TestStopDuringSnapshotTransfer: stopping either end of a transfer in
// progress ends it, and leaves no goroutine behind.
func TestStopDuringSnapshotTransfer(t *testing.T) {
	t.Run("leader stops while the follower restores", func(t *testing.T) {
		baseline := runtime.NumGoroutine()
		_, _, servers, leader := compactedCluster(t, nil, "v", 500)

		sm := testkit.NewSnapKV(nil)
		entered, release := sm.HoldRestores()
		d := startSnapJoiner(t, "raft4", sm, nil)
		added := addAsync(t, leader, d.Peer(), testkit.WaitLong)
		select {
		case <-entered:
		case <-time.After(testkit.WaitLong):
			release()
			require.FailNowf(t, "no Restore began", "%v", testkit.Statuses{leader, d})
		}
		// The leader's transfer waits for the Restore's answer now.
		testkit.StopWithin(t, leader, testkit.WaitShort, "with a snapshot transfer waiting on a Restore", release)
		<-added
		release()
		for _, s := range append(servers, d) {
			testkit.StopWithin(t, s, testkit.WaitShort, "after the transfer", nil)
		}
		testkit.AwaitGoroutines(t, baseline, testkit.WaitShort)
	})

	t.Run("follower stops mid-transfer", func(t *testing.T) {
		baseline := runtime.NumGoroutine()
		slow := &snapshotLinks{fault: slowWrites, delay: 20 * time.Millisecond}
		small := func(cfg *exraft.Config) { cfg.MaxFrameSize = 16 << 10 }
		_, _, servers, leader := compactedCluster(t, func(i int, cfg *exraft.Config) {
			small(cfg)
			cfg.Dial = slow.dial
		}, strings.Repeat("v", 100), 1000)

		var logs exraft.TestLog
		d := startSnapJoiner(t, "raft4", testkit.NewSnapKV(nil), func(cfg *exraft.Config) {
			small(cfg)
			cfg.Logger = logs.Logger()
		})
		added := addAsync(t, leader, d.Peer(), testkit.WaitLong)
		testkit.Eventually(t, testkit.WaitLong, func() bool { return slow.hits.Load() >= 3 }, "a transfer to begin")
		testkit.StopWithin(t, d, testkit.WaitShort, "while receiving a snapshot", nil)
		for _, s := range servers {
			testkit.StopWithin(t, s, testkit.WaitShort, "after the follower stopped mid-transfer", nil)
		}
		<-added
		testkit.AwaitGoroutines(t, baseline, testkit.WaitShort)
	})
}

// TestSnapshotConfigErrors: negative snapshot fields are refused, naming
// the field.
func TestSnapshotConfigErrors(t *testing.T) {
	for _, field := range []string{"SnapshotThreshold", "TrailingLogs"} {
		cfg := testkit.FastConfig("cfg")
		if field == "SnapshotThreshold" {
			cfg.SnapshotThreshold = -1
		} else {
			cfg.TrailingLogs = -1
		}
		s, err := exraft.StartServer(testkit.NewSnapKV(nil), cfg)
		if s != nil {
			_ = exraft.StopServer(s)
		}
		var ce *exraft.ConfigError
		require.ErrorAs(t, err, &ce, field)
		assert.Equal(t, field, ce.Field)
	}
}
