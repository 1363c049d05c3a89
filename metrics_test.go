package exraft_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft"
	"github.com/exraft/exraft/internal/testkit"
)

// Metrics (metrics.go, metrics_samples.go): what a server counts follows
// what it did.

func TestMetricsCountWhatHappened(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{NewSM: func(_ int, kv *testkit.KV) exraft.StateMachine {
		return testkit.NewSnapKV(kv)
	}, Configure: func(_ int, cfg *exraft.Config) { cfg.SnapshotThreshold, cfg.TrailingLogs = 20, 5 }})
	l := testkit.AwaitLeader(t, c.Live())
	before := l.Metrics()
	for i := range 50 {
		testkit.MustWrite(t, l, "set k "+string(rune('a'+i%26)))
	}
	_, err := l.Read(testkit.Ctx(t, testkit.WaitShort), []byte("get k"))
	require.NoError(t, err)
	sess := (&exraft.Client{}).NewSession(addrsOf(c)...)
	_, err = sess.Write(testkit.Ctx(t, testkit.WaitShort), []byte("set s 1"))
	require.NoError(t, err)

	testkit.Eventually(t, testkit.WaitLong, func() bool { return l.Metrics().SnapshotsTaken > 0 }, "the leader snapshots")
	m := l.Metrics()
	assert.GreaterOrEqual(t, m.Writes-before.Writes, uint64(52), "50 writes, a session's registration and its write")
	assert.Equal(t, m.Writes-m.WriteErrors, m.WriteTime.Count, "every successful write timed")
	assert.GreaterOrEqual(t, m.Reads-before.Reads, uint64(1))
	assert.Positive(t, m.ApplyTime.Count)
	assert.Equal(t, 1, m.Sessions)
	assert.GreaterOrEqual(t, m.LeaderChanges, uint64(1), "it learned of a leader: itself")
	assert.Positive(t, m.Elections)
	require.Len(t, m.Peers, 2)
	for _, p := range m.Peers {
		assert.Positive(t, p.Messages, "messages to %s", p.Addr)
		assert.Positive(t, p.Bytes, "bytes to %s", p.Addr)
	}

	names := map[string]int{}
	for _, s := range m.Samples() {
		names[s.Name]++
		if s.Kind == exraft.HistogramSample {
			require.NotNil(t, s.Histogram, s.Name)
			assert.Len(t, s.Histogram.Counts, len(s.Histogram.Bounds)+1, s.Name)
		}
	}
	for _, name := range []string{"exraft_term", "exraft_commit_index", "exraft_writes_total", "exraft_write_seconds",
		"exraft_snapshots_taken_total", "exraft_sessions", "exraft_elections_total"} {
		assert.Equal(t, 1, names[name], name)
	}
	assert.Equal(t, 4, names["exraft_role"], "one per role")
	assert.Equal(t, 2, names["exraft_peer_sent_bytes_total"], "one per peer")
	assert.Equal(t, 2, names["exraft_peer_lag"], "the leader's view of each peer")
}

// TestMetricsCountRestoresAndSends: a server caught up by a snapshot counts
// the restore, and its leader the send.
func TestMetricsCountRestoresAndSends(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{NewSM: func(_ int, kv *testkit.KV) exraft.StateMachine {
		return testkit.NewSnapKV(kv)
	}, Configure: func(_ int, cfg *exraft.Config) { cfg.SnapshotThreshold, cfg.TrailingLogs = 20, 5 }})
	l := testkit.AwaitLeader(t, c.Live())
	f := testkit.Others(c.Live(), l)[0]
	for i := range 100 {
		testkit.MustWrite(t, l, "set k "+string(rune('a'+i%26)))
	}
	require.NoError(t, c.Restart(f.Name()))
	g := c.Server(f.Name())
	testkit.Eventually(t, testkit.WaitLong, func() bool { return g.Metrics().SnapshotsRestored == 1 }, "the restarted server restores a snapshot")
	testkit.Eventually(t, testkit.WaitLong, func() bool { return l.Metrics().SnapshotsSent >= 1 }, "the leader counts the send")
}
