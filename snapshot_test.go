package exraft_test

// End-to-end tests of snapshots (docs/design.md §9) on loopback TCP: every
// server compacts its log, and a server that needs what was compacted (new,
// restarted blank, or cut off while the others went on) is caught up from
// a snapshot, then from the log; failures of Snapshot, WriteTo, Restore and
// of the transfer itself are retried without stalling anyone.
//
// Helpers of this file are prefixed with sn.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft"
)

// ---------------------------------------------------------------------------
// A key-value state machine with snapshots

// snapKV is a kvSM that snapshots its map as JSON, from a copy taken in
// Snapshot, and can be told to fail or to block.
type snapKV struct {
	*kvSM
	failSnapshots atomic.Int32 // Snapshot calls left to fail
	failWrites    atomic.Int32 // WriteTo calls left to fail
	failRestores  atomic.Int32 // Restore calls left to fail
	snapshots     atomic.Int32 // WriteTo calls that succeeded
	restores      atomic.Int32 // Restore calls that succeeded
	restoreErrs   atomic.Int32 // Restore calls that failed
	// gate, if not nil, holds every Restore until it is closed; entered
	// receives a value as each Restore begins.
	gate    chan struct{}
	entered chan struct{}
}

func newSnapKV() *snapKV { return &snapKV{kvSM: newKV()} }

func (m *snapKV) Snapshot() (io.WriterTo, error) {
	defer m.enter()()
	if m.failSnapshots.Add(-1) >= 0 {
		return nil, errors.New("test: Snapshot told to fail")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return &kvImage{m: m, data: maps.Clone(m.data)}, nil
}

// kvImage is a copy of the map: later Applies do not touch it.
type kvImage struct {
	m    *snapKV
	data map[string]string
}

func (im *kvImage) WriteTo(w io.Writer) (int64, error) {
	if im.m.failWrites.Add(-1) >= 0 {
		return 0, errors.New("test: WriteTo told to fail")
	}
	b, err := json.Marshal(im.data)
	if err != nil {
		return 0, err
	}
	n, err := w.Write(b)
	if err == nil {
		im.m.snapshots.Add(1)
	}
	return int64(n), err
}

func (m *snapKV) Restore(r io.Reader) error {
	defer m.enter()()
	if m.entered != nil {
		m.entered <- struct{}{}
	}
	if m.gate != nil {
		<-m.gate
	}
	if m.failRestores.Add(-1) >= 0 {
		m.restoreErrs.Add(1)
		m.mu.Lock()
		m.data = map[string]string{"half": "restored"} // as a failure may leave it
		m.mu.Unlock()
		return errors.New("test: Restore told to fail")
	}
	data := map[string]string{}
	if err := json.NewDecoder(r).Decode(&data); err != nil {
		return err
	}
	m.mu.Lock()
	m.data = data
	m.mu.Unlock()
	m.restores.Add(1)
	return nil
}

// ---------------------------------------------------------------------------
// Helpers

const (
	snThreshold = 100
	snTrailing  = 10
)

// snConfigure sets the snapshot fields of every test server.
func snConfigure(cfg *exraft.Config) {
	cfg.SnapshotThreshold = snThreshold
	cfg.TrailingLogs = snTrailing
}

// snCluster starts a cluster of n snapKV servers; configure, if not nil,
// changes more of each Config.
func snCluster(t *testing.T, n int, configure func(i int, cfg *exraft.Config)) (*cluster, []*snapKV) {
	t.Helper()
	sms := make([]*snapKV, n)
	c := startCluster(t, n, clusterOptions{
		newSM: func(i int, kv *kvSM) exraft.StateMachine {
			sms[i] = &snapKV{kvSM: kv}
			return sms[i]
		},
		configure: func(i int, cfg *exraft.Config) {
			snConfigure(cfg)
			if configure != nil {
				configure(i, cfg)
			}
		},
	})
	return c, sms
}

// snWrite writes "set <prefix><i> <value>" for i in [0, n) with 8 writers
// at whichever of servers leads, retrying while leadership moves.
func snWrite(t *testing.T, servers []*exraft.Server, prefix, value string, n int) {
	t.Helper()
	const writers = 8
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += writers {
				if err := snWriteOne(servers, fmt.Sprintf("set %s%d %s", prefix, i, value)); err != nil {
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

// snWriteOne writes cmd at the leader among servers until it succeeds.
func snWriteOne(servers []*exraft.Server, cmd string) error {
	var last, fatal error
	ok := exraft.PollUntil(waitLong, func() bool {
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
			case !transient(err):
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
		return fmt.Errorf("Write(%q) did not succeed within %v (last error: %v)", cmd, waitLong, last)
	}
	return nil
}

// snSame waits until every server's state equals the leader's, and every
// server has applied all the leader committed.
func snSame(t *testing.T, leader *exraft.Server, servers ...*exraft.Server) {
	t.Helper()
	eventually(t, waitLong, func() bool {
		want, commit := dirty(leader, "dump"), leader.Status().CommitIndex
		for _, s := range servers {
			if s.Status().AppliedIndex < commit || dirty(s, "dump") != want {
				return false
			}
		}
		return true
	}, "every server to hold the leader %s's state:%s", leader.Name(), mbDumpLazy(append([]*exraft.Server{leader}, servers...)...))
}

// snAlone starts a snapKV server that waits for a leader to add it.
func snAlone(t *testing.T, name string, sm *snapKV, configure func(cfg *exraft.Config)) *exraft.Server {
	t.Helper()
	cfg := fastConfig(name)
	cfg.Listener = listen(t)
	cfg.MinMajority = 2
	snConfigure(&cfg)
	if configure != nil {
		configure(&cfg)
	}
	return start(t, sm, cfg)
}

// snCompacted waits until the leader's log no longer holds index 1.
func snCompacted(t *testing.T, leader *exraft.Server) {
	t.Helper()
	eventually(t, waitShort, func() bool { return leader.Status().FirstIndex > 1 },
		"the leader %s to compact its log:%s", leader.Name(), mbDumpLazy(leader))
}

// snAddAsync calls AddServer on the leader in the background; the channel
// gets its error.
func snAddAsync(t *testing.T, leader *exraft.Server, p exraft.Peer, d time.Duration) <-chan error {
	done := make(chan error, 1)
	ctx := ctxFor(t, d)
	go func() { done <- leader.AddServer(ctx, p) }()
	return done
}

// ---------------------------------------------------------------------------
// Tests

// TestSnapshotsCompactEveryServer: with a Snapshotter, every server takes
// snapshots on its own and drops its log up to TrailingLogs entries before
// the latest, and the servers still agree.
func TestSnapshotsCompactEveryServer(t *testing.T) {
	c, sms := snCluster(t, 3, nil)
	leader := awaitLeader(t, c.servers)
	snWrite(t, c.servers, "k", "v", 2000)
	leader = awaitLeader(t, c.servers)
	snSame(t, leader, c.servers...)
	eventually(t, waitShort, func() bool {
		for _, s := range c.servers {
			if st := s.Status(); st.SnapshotIndex == 0 || st.FirstIndex <= 1 {
				return false
			}
		}
		return true
	}, "every server to have a snapshot and a compacted log:%s", mbDumpLazy(c.servers...))
	for i, s := range c.servers {
		st := s.Status()
		assert.GreaterOrEqual(t, st.FirstIndex+snTrailing, st.SnapshotIndex+1,
			"%s keeps at most TrailingLogs entries before its snapshot: %+v", s.Name(), st)
		assert.LessOrEqual(t, st.SnapshotIndex, st.AppliedIndex, "%s: %+v", s.Name(), st)
		assert.Greater(t, st.SnapshotIndex+snThreshold+1024, st.AppliedIndex,
			"%s snapshots every SnapshotThreshold entries, give or take an apply batch: %+v", s.Name(), st)
		assert.Greater(t, sms[i].snapshots.Load(), int32(1), "%s took several snapshots", s.Name())
		assert.False(t, sms[i].overlap.Load(), "%s: the state machine was called concurrently", s.Name())
	}
	assert.Equal(t, "v", dirty(c.servers[2], "get k1999"))
}

// TestSnapshotCatchesUpNewServer: a server added after the leader compacted
// its log is caught up from a snapshot, then from the log, and applies what
// comes after.
func TestSnapshotCatchesUpNewServer(t *testing.T) {
	c, _ := snCluster(t, 3, nil)
	leader := awaitLeader(t, c.servers)
	snWrite(t, c.servers, "k", "v", 1000)
	leader = awaitLeader(t, c.servers)
	snCompacted(t, leader)

	sm := newSnapKV()
	d := snAlone(t, "raft4", sm, nil)
	require.NoError(t, leader.AddServer(ctxFor(t, waitLong), d.Peer()))
	all := append(append([]*exraft.Server(nil), c.servers...), d)
	snSame(t, leader, all...)
	assert.GreaterOrEqual(t, sm.restores.Load(), int32(1), "raft4 was caught up through a snapshot")
	assert.Greater(t, d.Status().FirstIndex, uint64(1), "raft4's log starts after the snapshot")

	snWrite(t, c.servers, "after", "w", 200)
	leader = awaitLeader(t, all)
	snSame(t, leader, all...)
	assert.Equal(t, "w", dirty(d, "get after199"))
	assert.False(t, sm.overlap.Load(), "the state machine was called concurrently")
}

// TestSnapshotCatchesUpRestartedFollower: a follower restarted blank under
// its name and address is re-admitted by the leader on its own, caught up
// through a snapshot.
func TestSnapshotCatchesUpRestartedFollower(t *testing.T) {
	c, _ := snCluster(t, 3, nil)
	initial := mbPeers(c.servers)
	leader := awaitLeader(t, c.servers)
	snWrite(t, c.servers, "k", "v", 1000)
	leader = mbSettle(t, c.servers, 300*time.Millisecond)
	snCompacted(t, leader)
	f, g := mbTwoFollowers(t, c.servers, leader)

	sm := newSnapKV()
	name, addr := f.Name(), f.Addr()
	require.NoError(t, exraft.StopServer(f))
	var l net.Listener
	eventually(t, waitShort, func() bool {
		var err error
		l, err = net.Listen("tcp", addr)
		return err == nil
	}, "listen again on %s", addr)
	cfg := fastConfig(name)
	cfg.Listener = l
	cfg.InitialConfig = initial
	snConfigure(&cfg)
	f2 := start(t, sm, cfg)

	eventually(t, waitLong, func() bool {
		st := leader.Status()
		return mbHasPeer(st.Members, f2.Peer()) && len(st.Learners) == 0 && sm.restores.Load() > 0
	}, "the restarted %s to be re-admitted after a snapshot:%s", name, mbDumpLazy(leader, f2, g))
	snWrite(t, []*exraft.Server{leader, g, f2}, "after", "w", 100)
	snSame(t, leader, g, f2)
}

// TestSnapshotCatchesUpFarBehindFollower: a follower cut off while the
// others wrote on and compacted past its log is caught up through a
// snapshot once it is back.
func TestSnapshotCatchesUpFarBehindFollower(t *testing.T) {
	pn := newPartitionNet()
	sms := make([]*snapKV, 3)
	c := startCluster(t, 3, clusterOptions{
		newSM: func(i int, kv *kvSM) exraft.StateMachine {
			sms[i] = &snapKV{kvSM: kv}
			return sms[i]
		},
		wrap: func(i int, name string, l net.Listener) net.Listener { return pn.listener(name, l) },
		configure: func(i int, cfg *exraft.Config) {
			snConfigure(cfg)
			cfg.Dial = pn.dialer(cfg.Name)
		},
	})
	leader := mbSettle(t, c.servers, 300*time.Millisecond)
	f, g := mbTwoFollowers(t, c.servers, leader)
	fi := 0
	for i, s := range c.servers {
		if s == f {
			fi = i
		}
	}
	pn.isolate(f.Name())
	snWrite(t, []*exraft.Server{leader, g}, "k", "v", 1500)
	behind := f.Status().LastIndex
	eventually(t, waitShort, func() bool { return leader.Status().FirstIndex > behind+1 },
		"the leader to compact past %s's last index %d:%s", f.Name(), behind, mbDumpLazy(leader, f))

	pn.heal(f.Name())
	leader = awaitLeader(t, c.servers)
	snSame(t, leader, c.servers...)
	assert.GreaterOrEqual(t, sms[fi].restores.Load(), int32(1), "%s was caught up through a snapshot", f.Name())
	snWrite(t, c.servers, "after", "w", 100)
	snSame(t, leader, c.servers...)
}

// TestSnapshotRestoreFailureKeepsServerOut: a server whose Restore fails is
// not admitted and applies nothing, and answers no read, while the others
// go on committing; the leader sends the snapshot again, and once Restore
// succeeds the server is caught up and admitted.
func TestSnapshotRestoreFailureKeepsServerOut(t *testing.T) {
	var logs exraft.TestLog
	c, _ := snCluster(t, 3, func(i int, cfg *exraft.Config) { cfg.Logger = logs.Logger() })
	leader := awaitLeader(t, c.servers)
	snWrite(t, c.servers, "k", "v", 500)
	leader = awaitLeader(t, c.servers)
	snCompacted(t, leader)

	sm := newSnapKV()
	sm.failRestores.Store(2)
	var dlogs exraft.TestLog
	d := snAlone(t, "raft4", sm, func(cfg *exraft.Config) { cfg.Logger = dlogs.Logger() })
	added := snAddAsync(t, leader, d.Peer(), 2*waitLong)

	eventually(t, waitLong, func() bool { return sm.restoreErrs.Load() >= 1 }, "a first Restore to fail")
	var readErr error
	eventually(t, waitShort, func() bool {
		_, readErr = d.ReadDirty(ctxFor(t, waitShort), []byte("get k1"))
		return readErr != nil
	}, "ReadDirty on raft4 to fail while its state machine is unfit")
	assert.Contains(t, readErr.Error(), "restore", "the error says what the server waits on")
	st := leader.Status()
	assert.False(t, mbHasName(st.Members, d.Name()), "raft4 is not admitted while its Restore fails: %+v", st)
	assert.Zero(t, d.Status().AppliedIndex, "raft4 applies nothing")
	mustWrite(t, leader, "set during failure")

	select {
	case err := <-added:
		require.NoError(t, err, "AddServer once Restore succeeds")
	case <-time.After(2 * waitLong):
		t.Fatalf("AddServer did not return:%s", mbDump(leader, d))
	}
	assert.Equal(t, int32(2), sm.restoreErrs.Load())
	assert.GreaterOrEqual(t, sm.restores.Load(), int32(1))
	all := append(append([]*exraft.Server(nil), c.servers...), d)
	snSame(t, leader, all...)
	assert.Equal(t, "failure", dirty(d, "get during"))
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
			sm := newSnapKV()
			if what == "Snapshot" {
				sm.failSnapshots.Store(1)
			} else {
				sm.failWrites.Store(1)
			}
			cfg := fastConfig("solo")
			cfg.Listener = listen(t)
			cfg.InitialConfig = []exraft.Peer{{Name: "solo", Addr: cfg.Listener.Addr().String()}}
			cfg.Logger = logs.Logger()
			snConfigure(&cfg)
			s := start(t, sm, cfg)
			awaitLeader(t, []*exraft.Server{s})
			for i := range snThreshold + 20 {
				mustWrite(t, s, fmt.Sprintf("set a%d x", i))
			}
			eventually(t, waitShort, func() bool { return logs.Warnings(what, "failed") > 0 },
				"a warning that %s failed:\n%s", what, mbLazy(func() string { return logs.Tail(10) }))
			failedAt := s.Status().AppliedIndex
			assert.Zero(t, s.Status().SnapshotIndex, "no snapshot yet")
			for i := range snThreshold + 20 {
				mustWrite(t, s, fmt.Sprintf("set b%d y", i))
			}
			eventually(t, waitShort, func() bool { return s.Status().SnapshotIndex > 0 }, "a snapshot at the next threshold")
			assert.GreaterOrEqual(t, s.Status().SnapshotIndex, uint64(2*snThreshold),
				"the next try comes SnapshotThreshold entries after the failed one, at %d or later", failedAt)
			assert.Equal(t, "y", mustRead(t, s, "get b0"))
		})
	}
}

// snCutter is a Config.Dial that closes the first connections carrying a
// snapshot once they have written after bytes.
type snCutter struct {
	after int
	left  atomic.Int32 // cuts to make
	cut   atomic.Int32 // cuts made
}

func (sc *snCutter) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &snCutConn{Conn: conn, sc: sc}, nil
}

type snCutConn struct {
	net.Conn
	sc      *snCutter
	mu      sync.Mutex
	snap    bool
	written int
}

func (c *snCutConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if !c.snap && bytes.Contains(p, []byte("InstallSnapshot")) {
		c.snap = true
	}
	if c.snap {
		c.written += len(p)
	}
	cut := c.snap && c.written > c.sc.after && c.sc.left.Add(-1) >= 0
	c.mu.Unlock()
	if cut {
		c.sc.cut.Add(1)
		c.Conn.Close()
		return 0, errors.New("snCutter: connection cut mid-transfer")
	}
	return c.Conn.Write(p)
}

// TestSnapshotTransferCutMidwayRestarts: connections cut in the middle of a
// transfer fail it; the leader starts it again, from the beginning, and it
// completes.
func TestSnapshotTransferCutMidwayRestarts(t *testing.T) {
	cutter := &snCutter{after: 40 << 10}
	cutter.left.Store(2)
	small := func(cfg *exraft.Config) { cfg.MaxFrameSize = 16 << 10 } // chunks of 8 KiB
	c, _ := snCluster(t, 3, func(i int, cfg *exraft.Config) {
		small(cfg)
		cfg.Dial = cutter.dial
	})
	leader := awaitLeader(t, c.servers)
	snWrite(t, c.servers, "k", strings.Repeat("v", 100), 1000) // a snapshot of ~120 KB
	leader = awaitLeader(t, c.servers)
	snCompacted(t, leader)

	sm := newSnapKV()
	d := snAlone(t, "raft4", sm, small)
	require.NoError(t, leader.AddServer(ctxFor(t, 2*waitLong), d.Peer()))
	all := append(append([]*exraft.Server(nil), c.servers...), d)
	snSame(t, leader, all...)
	assert.Equal(t, int32(2), cutter.cut.Load(), "two transfers were cut")
	assert.Equal(t, int32(1), sm.restores.Load(), "one transfer arrived whole, and was restored")
	assert.Zero(t, sm.restoreErrs.Load())
}

// snStaller is a Config.Dial whose first connection carrying a snapshot
// goes silent after some bytes: its writes are swallowed, so that neither
// end hears from the other again, as when a peer hangs.
type snStaller struct {
	after   int
	left    atomic.Int32 // connections to stall
	stalled atomic.Int32
}

func (st *snStaller) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &snStallConn{Conn: conn, st: st}, nil
}

type snStallConn struct {
	net.Conn
	st      *snStaller
	mu      sync.Mutex
	snap    bool
	written int
	silent  bool
}

func (c *snStallConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if !c.snap && bytes.Contains(p, []byte("InstallSnapshot")) {
		c.snap = true
	}
	if c.snap {
		c.written += len(p)
	}
	if c.snap && !c.silent && c.written > c.st.after && c.st.left.Add(-1) >= 0 {
		c.silent = true
		c.st.stalled.Add(1)
	}
	silent := c.silent
	c.mu.Unlock()
	if silent {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// TestSnapshotTransferStallRestarts: a transfer whose peer goes silent
// fails after IOTimeout on the leader, while the follower drops what it
// buffered; the next transfer completes, and the leader kept committing
// throughout (hashicorp/raft#212 wedged it instead).
func TestSnapshotTransferStallRestarts(t *testing.T) {
	staller := &snStaller{after: 20 << 10}
	staller.left.Store(1)
	var logs exraft.TestLog
	conf := func(cfg *exraft.Config) {
		cfg.MaxFrameSize = 16 << 10
		cfg.IOTimeout = time.Second
	}
	c, _ := snCluster(t, 3, func(i int, cfg *exraft.Config) {
		conf(cfg)
		cfg.Dial = staller.dial
		cfg.Logger = logs.Logger()
	})
	leader := awaitLeader(t, c.servers)
	snWrite(t, c.servers, "k", strings.Repeat("v", 100), 1000)
	leader = awaitLeader(t, c.servers)
	snCompacted(t, leader)

	sm := newSnapKV()
	var dlogs exraft.TestLog
	d := snAlone(t, "raft4", sm, func(cfg *exraft.Config) {
		conf(cfg)
		cfg.Logger = dlogs.Logger()
	})
	added := snAddAsync(t, leader, d.Peer(), 2*waitLong)
	eventually(t, waitLong, func() bool { return staller.stalled.Load() == 1 }, "a transfer to stall")
	mustWrite(t, leader, "set while stalled")
	select {
	case err := <-added:
		require.NoError(t, err, "AddServer once a transfer completes")
	case <-time.After(2 * waitLong):
		t.Fatalf("AddServer did not return:%s", mbDump(leader, d))
	}
	all := append(append([]*exraft.Server(nil), c.servers...), d)
	snSame(t, leader, all...)
	assert.Equal(t, "stalled", dirty(d, "get while"))
	assert.Positive(t, logs.Warnings("sending a snapshot failed", "no answer"), "the leader gave up on the silent transfer:\n%s", logs.Tail(20))
	assert.True(t, dlogs.Has("dropped a snapshot transfer that stalled"), "raft4 dropped the stalled transfer:\n%s", dlogs.Tail(20))
}

// TestNoSnapshotterKeepsWholeLog: without a Snapshotter the snapshot fields
// are ignored: nothing is compacted.
func TestNoSnapshotterKeepsWholeLog(t *testing.T) {
	c := startCluster(t, 3, clusterOptions{configure: func(i int, cfg *exraft.Config) {
		cfg.SnapshotThreshold = 10
		cfg.TrailingLogs = 1
	}})
	awaitLeader(t, c.servers)
	snWrite(t, c.servers, "k", "v", 300)
	leader := awaitLeader(t, c.servers)
	snSame(t, leader, c.servers...)
	for _, s := range c.servers {
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
		c, _ := snCluster(t, 3, nil)
		leader := awaitLeader(t, c.servers)
		snWrite(t, c.servers, "k", "v", 500)
		leader = awaitLeader(t, c.servers)
		snCompacted(t, leader)

		sm := newSnapKV()
		sm.gate, sm.entered = make(chan struct{}), make(chan struct{}, 8)
		d := snAlone(t, "raft4", sm, nil)
		added := snAddAsync(t, leader, d.Peer(), waitLong)
		select {
		case <-sm.entered:
		case <-time.After(waitLong):
			close(sm.gate)
			t.Fatalf("no Restore began:%s", mbDump(leader, d))
		}
		// The leader's transfer waits for the Restore's answer now.
		stopWithin(t, leader, waitShort, "with a snapshot transfer waiting on a Restore", func() { close(sm.gate) })
		<-added
		close(sm.gate)
		for _, s := range append(c.servers, d) {
			stopWithin(t, s, waitShort, "after the transfer", nil)
		}
		waitGoroutines(t, baseline, waitShort)
	})

	t.Run("follower stops mid-transfer", func(t *testing.T) {
		baseline := runtime.NumGoroutine()
		slow := &snSlowDial{delay: 20 * time.Millisecond}
		small := func(cfg *exraft.Config) { cfg.MaxFrameSize = 16 << 10 }
		c, _ := snCluster(t, 3, func(i int, cfg *exraft.Config) {
			small(cfg)
			cfg.Dial = slow.dial
		})
		leader := awaitLeader(t, c.servers)
		snWrite(t, c.servers, "k", strings.Repeat("v", 100), 1000)
		leader = awaitLeader(t, c.servers)
		snCompacted(t, leader)

		var logs exraft.TestLog
		d := snAlone(t, "raft4", newSnapKV(), func(cfg *exraft.Config) {
			small(cfg)
			cfg.Logger = logs.Logger()
		})
		added := snAddAsync(t, leader, d.Peer(), waitLong)
		eventually(t, waitLong, func() bool { return slow.snapWrites.Load() >= 3 }, "a transfer to begin")
		stopWithin(t, d, waitShort, "while receiving a snapshot", nil)
		for _, s := range c.servers {
			stopWithin(t, s, waitShort, "after the follower stopped mid-transfer", nil)
		}
		<-added
		waitGoroutines(t, baseline, waitShort)
	})
}

// snSlowDial is a Config.Dial whose connections carrying a snapshot pause
// before each write, so that a transfer takes a while.
type snSlowDial struct {
	delay      time.Duration
	snapWrites atomic.Int32
}

func (sd *snSlowDial) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &snSlowConn{Conn: conn, sd: sd}, nil
}

type snSlowConn struct {
	net.Conn
	sd   *snSlowDial
	snap atomic.Bool
}

func (c *snSlowConn) Write(p []byte) (int, error) {
	if c.snap.Load() || bytes.Contains(p, []byte("InstallSnapshot")) {
		c.snap.Store(true)
		c.sd.snapWrites.Add(1)
		time.Sleep(c.sd.delay) // the slow link itself, not a wait
	}
	return c.Conn.Write(p)
}

// TestSnapshotConfigErrors: negative snapshot fields are refused, naming
// the field.
func TestSnapshotConfigErrors(t *testing.T) {
	for _, field := range []string{"SnapshotThreshold", "TrailingLogs"} {
		cfg := fastConfig("cfg")
		if field == "SnapshotThreshold" {
			cfg.SnapshotThreshold = -1
		} else {
			cfg.TrailingLogs = -1
		}
		s, err := exraft.StartServer(newSnapKV(), cfg)
		if s != nil {
			_ = exraft.StopServer(s)
		}
		var ce *exraft.ConfigError
		require.ErrorAs(t, err, &ce, field)
		assert.Equal(t, field, ce.Field)
	}
}
