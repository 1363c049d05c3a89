package raft

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests of snapshots and compaction (snapshot.go, log.go; Figure 13). Each
// test fails when its rule is taken out.

// proposeN has the leader of n propose k commands and delivers everything.
func proposeN(n *network, l *core, k int) {
	for i := range k {
		l.propose(normal([]byte(fmt.Sprint("w", i))))
		if i%64 == 63 {
			n.collect(l.cfg.name)
			n.deliverAll()
		}
	}
	n.collect(l.cfg.name)
	n.deliverAll()
}

// TestLogCompactFreesWholeChunks: compaction forgets the entries up to its
// index, keeps that index's term for matching the next append, and frees
// every chunk wholly below it.
func TestLogCompactFreesWholeChunks(t *testing.T) {
	var l raftLog
	for i := uint64(1); i <= 3*logChunk+10; i++ {
		l.append(Entry{Index: i, Term: 1 + i/1000})
	}
	l.compact(2*logChunk + 5)
	assert.Len(t, l.chunks, 2, "the two chunks wholly below the floor are freed")
	assert.Equal(t, uint64(2*logChunk+6), l.firstIndex())
	term, ok := l.term(2*logChunk + 5)
	assert.True(t, ok)
	assert.Equal(t, 1+uint64(2*logChunk+5)/1000, term)
	_, ok = l.term(2*logChunk + 4)
	assert.False(t, ok, "an entry below the floor is unknown")
	assert.Equal(t, uint64(3*logChunk+10), l.at(3*logChunk+10).Index)
	es := l.slice(1, 2*logChunk+7, 1<<30)
	require.Len(t, es, 2, "a slice starts after the floor")
	assert.Equal(t, uint64(2*logChunk+6), es[0].Index)

	l.truncateAfter(2*logChunk + 5)
	assert.Equal(t, uint64(2*logChunk+5), l.lastIndex())
	l.append(Entry{Index: 2*logChunk + 6, Term: 9})
	assert.Equal(t, uint64(9), l.lastTerm())
}

// TestLogRestartContinuesFromTheSnapshot: a log restarted at a snapshot's
// last entry knows that entry's term and takes the entries after it, in
// the middle of a chunk or at its start.
func TestLogRestartContinuesFromTheSnapshot(t *testing.T) {
	for _, at := range []uint64{0, 7, logChunk, 3*logChunk + 1} {
		var l raftLog
		for i := uint64(1); i <= 5; i++ {
			l.append(Entry{Index: i, Term: 1})
		}
		l.restart(at, 4)
		assert.Equal(t, at, l.lastIndex())
		assert.Equal(t, uint64(4), l.lastTerm())
		for i := at + 1; i <= at+logChunk+3; i++ {
			l.append(Entry{Index: i, Term: 5})
		}
		assert.Equal(t, at+2, l.at(at+2).Index, "restart at %d", at)
		es := l.slice(at+1, at+logChunk+3, 1<<30)
		require.Len(t, es, logChunk+3)
		assert.Equal(t, at+1, es[0].Index)
	}
}

// TestCoreCompactNeedsAppliedIndex: a snapshot covers only what was handed
// out for applying; compacting keeps the trailing entries and the
// configuration in effect.
func TestCoreCompactNeedsAppliedIndex(t *testing.T) {
	n := newCluster(t, 3, names3)
	l := n.forceLeader("a")
	n.settle(100)
	proposeN(n, l, 300)
	_, err := l.compact(l.handedOut+1, 0)
	require.ErrorIs(t, err, ErrNotApplied)

	conf := l.committedConfig()
	meta, err := l.compact(l.handedOut-10, 50)
	require.NoError(t, err)
	assert.Equal(t, l.handedOut-10, meta.Index)
	assert.Equal(t, l.term, meta.Term)
	assert.Equal(t, meta.Index-50+1, l.log.firstIndex(), "trailing entries are kept")
	assert.Equal(t, voterNames(conf), voterNames(l.committedConfig()))
	assert.Equal(t, meta.Index, l.snap.index)
	st := (&Node{c: l}).Status()
	assert.Equal(t, meta.Index, st.SnapshotIndex)
	assert.Equal(t, meta.Index-49, st.FirstIndex)
}

// blankFollowerBehindCompaction is a cluster whose leader a wrote k
// entries while c was cut off, and compacted its log past all of them; c
// then restarted blank and is reached again, and needs a snapshot.
func blankFollowerBehindCompaction(t *testing.T, k int) (n *network, l *core, meta SnapshotMeta) {
	t.Helper()
	n = newCluster(t, 4, names3)
	l = n.forceLeader("a")
	n.settle(100)
	n.isolate("c")
	proposeN(n, l, k)
	meta, err := l.compact(l.handedOut, 0)
	require.NoError(t, err)
	n.start("c", testCoreConfig("c", []string{"a", "b", "c"}, 999, n.rng))
	n.healAll()
	return n, l, meta
}

// TestCoreSnapshotCatchesUpABlankFollower: a follower that needs entries
// the leader compacted is sent the snapshot, and no appends while it
// travels; once it has installed it, replication goes on from there and
// the follower's log and commit match the leader's.
func TestCoreSnapshotCatchesUpABlankFollower(t *testing.T) {
	n, l, meta := blankFollowerBehindCompaction(t, 500)
	var snaps, appsDuring int
	watch := func(m Message) bool {
		if m.To != "c" {
			return false
		}
		if m.Type == MsgSnap {
			snaps++
			assert.Equal(t, meta.Index, m.LastIndex)
		}
		if m.Type == MsgApp && len(m.Entries) > 0 && m.PrevIndex < meta.Index {
			appsDuring++ // entries the leader no longer has could not be sent
		}
		return false
	}
	for i := 0; i < 200 && (snaps == 0 || l.commit != n.cores["c"].commit); i++ {
		for _, name := range n.names {
			n.cores[name].tick()
			n.collect(name)
		}
		n.deliverCounting(watch)
	}
	c := n.cores["c"]
	require.Positive(t, snaps, "the leader sent a snapshot")
	assert.Zero(t, appsDuring, "no entries from before the snapshot went to c")
	assert.Equal(t, l.commit, c.commit)
	assert.Equal(t, meta.Index, c.snap.index)
	assert.Equal(t, meta.Index+1, c.log.firstIndex())
	for i := meta.Index; i <= l.log.lastIndex(); i++ {
		lt, _ := l.log.term(i)
		ct, ok := c.log.term(i)
		require.True(t, ok, "c lacks index %d", i)
		require.Equal(t, lt, ct, "index %d", i)
	}
	v, _ := l.committedConfig().find("c")
	assert.Equal(t, uint64(999), v.Inc, "the new c was re-admitted")
}

// TestCoreInstallSnapshotKeepsAMatchingSuffix: a follower whose log holds
// the snapshot's last entry keeps the entries after it (Figure 13, rule 6);
// one whose log conflicts there drops the whole log (rule 7).
func TestCoreInstallSnapshotKeepsAMatchingSuffix(t *testing.T) {
	conf := Entry{Index: 0, Type: EntryConfig, Data: encodeMembership(boundMembership(names3))}

	f := testCore(t, "c", names3)
	followerWithLog(t, f, 2, []uint64{1, 1, 2, 2, 2}, 1)
	f.step(Message{Type: MsgSnap, From: "b", FromInc: incOf["b"], FromAddr: "b", To: "c", Term: 2,
		LastIndex: 3, LastTerm: 2, Commit: 3, Entries: []Entry{conf}})
	ack := onlyMsg(t, f.takeReady().Messages, MsgAppResp, "b")
	assert.False(t, ack.Reject)
	assert.Equal(t, uint64(3), ack.Match)
	assert.Equal(t, uint64(5), f.log.lastIndex(), "the entries after the snapshot are kept")
	assert.Equal(t, uint64(3), f.commit)
	assert.Equal(t, uint64(4), f.log.firstIndex())

	g := testCore(t, "c", names3)
	followerWithLog(t, g, 2, []uint64{1, 1, 1, 1}, 1)
	g.step(Message{Type: MsgSnap, From: "b", FromInc: incOf["b"], FromAddr: "b", To: "c", Term: 2,
		LastIndex: 3, LastTerm: 2, Commit: 3, Entries: []Entry{conf}})
	g.takeReady()
	assert.Equal(t, uint64(3), g.log.lastIndex(), "a conflicting log is dropped")
	lt, _ := g.log.term(3)
	assert.Equal(t, uint64(2), lt)
}

// TestCoreInstallSnapshotOfTheCommittedPastOnlyAcks: a snapshot that ends
// at or before the commit index changes nothing and is acknowledged with
// the commit index; one from an earlier term is refused with the term.
func TestCoreInstallSnapshotOfTheCommittedPastOnlyAcks(t *testing.T) {
	conf := Entry{Index: 0, Type: EntryConfig, Data: encodeMembership(boundMembership(names3))}
	f := testCore(t, "c", names3)
	followerWithLog(t, f, 2, []uint64{1, 1, 2, 2, 2}, 4)
	f.step(Message{Type: MsgSnap, From: "b", FromInc: incOf["b"], FromAddr: "b", To: "c", Term: 2,
		LastIndex: 2, LastTerm: 1, Commit: 4, Entries: []Entry{conf}})
	ack := onlyMsg(t, f.takeReady().Messages, MsgAppResp, "b")
	assert.Equal(t, uint64(4), ack.Match)
	assert.Equal(t, uint64(1), f.log.firstIndex(), "nothing was compacted")

	f.step(Message{Type: MsgSnap, From: "a", FromInc: incOf["a"], FromAddr: "a", To: "c", Term: 1,
		LastIndex: 5, LastTerm: 1, Commit: 5, Entries: []Entry{conf}})
	stale := onlyMsg(t, f.takeReady().Messages, MsgAppResp, "a")
	assert.True(t, stale.Reject)
	assert.Equal(t, uint64(2), stale.Term)
	assert.Equal(t, uint64(4), f.commit)
}

// leaderSendingSnapshot returns a leader of three that compacted its log
// while c was cut off, and has just sent c the snapshot (its Ready not
// taken yet), with c's progress.
func leaderSendingSnapshot(t *testing.T) (*core, *progress) {
	n := newCluster(t, 6, names3)
	l := n.forceLeader("a")
	n.settle(100)
	n.isolate("c")
	proposeN(n, l, 200)
	_, err := l.compact(l.handedOut, 0)
	require.NoError(t, err)
	pr := l.prs["c"]
	pr.becomeProbe(1)
	l.sendAppend("c", pr, evenIfEmpty)
	return l, pr
}

// TestCoreSnapshotFailedIsRetriedAtTheNextHeartbeat: a failed transfer
// sends the follower back to probing, paced by the heartbeat, and the
// snapshot is sent again.
func TestCoreSnapshotFailedIsRetriedAtTheNextHeartbeat(t *testing.T) {
	l, pr := leaderSendingSnapshot(t)
	require.Len(t, msgsOf(l.takeReady().Messages, MsgSnap, "c"), 1)
	require.Equal(t, stateSnapshot, pr.state)
	l.propose(normal([]byte("meanwhile")))
	l.bcastHeartbeat()
	during := l.takeReady().Messages
	assert.Empty(t, msgsOf(during, MsgSnap, "c"), "the snapshot in flight is not sent again")
	for _, m := range msgsOf(during, MsgApp, "c") {
		assert.Empty(t, m.Entries, "only heartbeats go to c while the snapshot travels")
	}

	l.reportSnapshot("c", l.snap.index-1, SnapshotFailed)
	assert.Equal(t, stateSnapshot, pr.state, "a report about another transfer changes nothing")
	l.reportSnapshot("c", l.snap.index, SnapshotFailed)
	assert.Equal(t, stateProbe, pr.state)
	l.bcastAppend()
	assert.Empty(t, msgsOf(l.takeReady().Messages, MsgSnap, "c"), "no retry before the heartbeat")
	l.bcastHeartbeat()
	assert.Len(t, msgsOf(l.takeReady().Messages, MsgSnap, "c"), 1, "the heartbeat retries")
}

// TestCoreSnapshotFinishedWithoutAnswerIsProbed: a transfer that finished
// is followed by a probe past the snapshot, not by waiting for the
// follower's answer, which may never come: its core may refuse the header
// (a leader it does not know yet, inside its lease, see knows). The probe's
// answer tells the leader where to go on; here c lacks the snapshot, and it
// is sent again.
func TestCoreSnapshotFinishedWithoutAnswerIsProbed(t *testing.T) {
	l, pr := leaderSendingSnapshot(t)
	l.takeReady() // the header reaches c's driver, and c's core refuses it
	l.reportSnapshot("c", l.snap.index, SnapshotFinished)
	l.bcastAppend()
	assert.Empty(t, msgsOf(l.takeReady().Messages, MsgApp, "c"), "no probe before the heartbeat")
	l.bcastHeartbeat()
	probe := onlyMsg(t, l.takeReady().Messages, MsgApp, "c")
	require.Equal(t, l.snap.index, probe.PrevIndex, "the probe follows the snapshot")
	l.step(Message{Type: MsgAppResp, From: "c", FromInc: pr.inc, To: "a", Term: l.term, Reject: true,
		PrevIndex: probe.PrevIndex, HintIndex: 1, LastIndex: 0})
	onlyMsg(t, l.takeReady().Messages, MsgSnap, "c")
}

// TestCoreMalformedSnapshotIgnored: a snapshot header no leader would send
// changes nothing.
func TestCoreMalformedSnapshotIgnored(t *testing.T) {
	conf := Entry{Index: 0, Type: EntryConfig, Data: encodeMembership(boundMembership(names3))}
	for name, m := range map[string]Message{
		"no configuration":         {LastIndex: 9, LastTerm: 2},
		"term above the message's": {LastIndex: 9, LastTerm: 3, Entries: []Entry{conf}},
		"configuration after it":   {LastIndex: 9, LastTerm: 2, Entries: []Entry{{Index: 10, Type: EntryConfig, Data: conf.Data}}},
		"not a configuration":      {LastIndex: 9, LastTerm: 2, Entries: []Entry{{Type: EntryNormal, Data: conf.Data}}},
		"garbage configuration":    {LastIndex: 9, LastTerm: 2, Entries: []Entry{{Type: EntryConfig, Data: []byte{0xc1}}}},
	} {
		f := testCore(t, "c", names3)
		m.Type, m.From, m.FromInc, m.FromAddr, m.To, m.Term = MsgSnap, "b", incOf["b"], "b", "c", 2
		f.step(m)
		assert.Equal(t, uint64(0), f.commit, name)
		assert.Equal(t, uint64(0), f.snap.index, name)
	}
}

// boundMembership is the configuration of names with every incarnation
// bound as crCore binds it.
func boundMembership(names []string) membership {
	var m membership
	for _, name := range names {
		m = m.with(member{Name: name, Addr: name, Inc: incOf[name]})
	}
	return m
}

// snapHeader is a MsgSnap from the leader "b" in term 2 of a snapshot
// ending at index in term lastTerm, with the three-server configuration.
func snapHeader(index, lastTerm uint64) Message {
	conf := Entry{Index: 0, Type: EntryConfig, Data: encodeMembership(boundMembership(names3))}
	return Message{Type: MsgSnap, From: "b", FromInc: incOf["b"], FromAddr: "b", To: "c", Term: 2,
		LastIndex: index, LastTerm: lastTerm, Commit: index, Entries: []Entry{conf}}
}

// TestCoreInstallSnapshotDropsConfigurationsOfTheDroppedLog: a follower
// whose log is dropped for a snapshot stops using the configurations that
// log held: they are not in its log any more.
func TestCoreInstallSnapshotDropsConfigurationsOfTheDroppedLog(t *testing.T) {
	g := testCore(t, "c", names3)
	followerWithLog(t, g, 2, []uint64{1, 1, 1, 1}, 1)
	two := boundMembership(names3).without("a")
	es := []Entry{{Index: 5, Term: 1, Type: EntryConfig, Data: encodeMembership(two)}}
	g.log.append(es...)
	g.appendedConfigs(es)
	require.Len(t, g.self.Voters, 2)
	g.step(snapHeader(3, 2))
	assert.Equal(t, uint64(3), g.log.lastIndex())
	assert.Len(t, g.self.Voters, 3, "the configuration of the dropped log is gone")
}

// TestCoreInstallSnapshotCompactsAroundALaterConfiguration: a snapshot that
// ends before a configuration entry the log keeps leaves that entry in
// force, uncommitted, so that a conflict can still take it back.
func TestCoreInstallSnapshotCompactsAroundALaterConfiguration(t *testing.T) {
	g := testCore(t, "c", names3)
	followerWithLog(t, g, 2, []uint64{1, 2, 2, 2}, 1)
	two := boundMembership(names3).without("a")
	es := []Entry{{Index: 5, Term: 2, Type: EntryConfig, Data: encodeMembership(two)}}
	g.log.append(es...)
	g.appendedConfigs(es)
	g.step(snapHeader(4, 2))
	require.Equal(t, uint64(5), g.log.lastIndex(), "the matching suffix is kept")
	assert.Len(t, g.self.Voters, 2, "the kept configuration is in force")
	assert.Len(t, g.committedConfig().Voters, 3, "and not committed")
	g.step(appendMsg("b", 3, 4, 2, 4, entries(5, 3)))
	assert.Len(t, g.self.Voters, 3, "a conflict at 5 takes the configuration back")
}

// TestCoreInstallSnapshotFollowsItsSender: a candidate that takes a
// snapshot from the leader of its term follows it; a follower ignores one
// from a second leader of its term, as it ignores its appends.
func TestCoreInstallSnapshotFollowsItsSender(t *testing.T) {
	c := testCore(t, "c", names3)
	require.NoError(t, c.triggerElection())
	c.takeReady()
	m := snapHeader(10, 1)
	m.Term = c.term
	c.step(m)
	assert.Equal(t, Follower, c.role)
	assert.Equal(t, "b", c.lead)
	assert.Equal(t, uint64(10), c.commit)

	f := testCore(t, "c", names3)
	followerWithLog(t, f, 2, []uint64{1, 1, 2}, 1)
	require.Equal(t, "b", f.lead)
	forged := snapHeader(10, 2)
	forged.From, forged.FromInc, forged.FromAddr = "a", incOf["a"], "a"
	f.step(forged)
	assert.Equal(t, uint64(3), f.log.lastIndex())
	assert.Equal(t, "b", f.lead)
}

// TestCoreInstallSnapshotHandsOutWhatFollows: after a snapshot the core
// hands out the entries after it, so that the driver can snapshot again at
// the snapshot's index.
func TestCoreInstallSnapshotHandsOutWhatFollows(t *testing.T) {
	f := testCore(t, "c", names3)
	f.step(snapHeader(20, 2))
	assert.Equal(t, uint64(20), f.handedOut)
	_, err := f.compact(20, 0)
	assert.NoError(t, err)
}

// TestCoreSnapshotStateHolds: while a snapshot travels, the follower gets
// heartbeats, and neither a rejected heartbeat nor an acknowledgement short
// of the snapshot ends the transfer or starts a second one; a late failure
// report about a transfer that already succeeded changes nothing either.
func TestCoreSnapshotStateHolds(t *testing.T) {
	l, pr := leaderSendingSnapshot(t)
	l.takeReady()
	l.bcastHeartbeat()
	assert.Len(t, msgsOf(l.takeReady().Messages, MsgApp, "c"), 1, "a heartbeat during the transfer")
	l.step(Message{Type: MsgAppResp, From: "c", FromInc: pr.inc, To: "a", Term: l.term, Match: 1, LastIndex: 1})
	assert.Equal(t, stateSnapshot, pr.state, "an acknowledgement short of the snapshot")
	assert.Empty(t, msgsOf(l.takeReady().Messages, MsgSnap, "c"))
	l.step(Message{Type: MsgAppResp, From: "c", FromInc: pr.inc, To: "a", Term: l.term, Reject: true, PrevIndex: 1, HintIndex: 2, LastIndex: 1})
	assert.Equal(t, stateSnapshot, pr.state, "a rejected heartbeat")
	assert.Empty(t, msgsOf(l.takeReady().Messages, MsgSnap, "c"))

	l.step(Message{Type: MsgAppResp, From: "c", FromInc: pr.inc, To: "a", Term: l.term, Match: l.snap.index, LastIndex: l.snap.index})
	require.Equal(t, stateReplicate, pr.state, "the follower installed the snapshot")
	l.reportSnapshot("c", l.snap.index, SnapshotFailed)
	assert.Equal(t, stateReplicate, pr.state, "a late failure report")
}

// TestCoreCompactNotBelowFloor: a snapshot never goes back before the
// log's first entry, whose term the log no longer knows.
func TestCoreCompactNotBelowFloor(t *testing.T) {
	n := newCluster(t, 6, names3)
	l := n.forceLeader("a")
	n.settle(100)
	proposeN(n, l, 50)
	_, err := l.compact(l.handedOut, 0)
	require.NoError(t, err)
	_, err = l.compact(l.handedOut-10, 0)
	assert.ErrorIs(t, err, ErrNotApplied)
}

// TestCoreSnapshotAtAConfigurationCarriesIt: a snapshot ending exactly at a
// configuration entry carries that configuration, not the one before.
func TestCoreSnapshotAtAConfigurationCarriesIt(t *testing.T) {
	n := newCluster(t, 7, names3)
	l := n.forceLeader("a")
	n.settle(100)
	idx, err := l.removeServer("c")
	require.NoError(t, err)
	n.collect("a")
	n.deliverAll()
	require.GreaterOrEqual(t, l.handedOut, idx)
	_, err = l.compact(idx, 0)
	require.NoError(t, err)
	assert.Equal(t, idx, l.snap.config.index)
	assert.Len(t, l.snap.config.m.Voters, 2)
}

// TestCoreCompactKeepsTheConfigurationsItMustAnswerFor: compacting drops
// the configurations before the one in force at the snapshot, and no
// later one: a configuration still uncommitted stays so, and a conflict
// can still take it back.
func TestCoreCompactKeepsTheConfigurationsItMustAnswerFor(t *testing.T) {
	g := testCore(t, "c", names3)
	followerWithLog(t, g, 2, []uint64{1, 1, 1, 1}, 1)
	withoutA := boundMembership(names3).without("a")
	onlyB := withoutA.without("c")
	g.step(appendMsg("b", 2, 4, 1, 5, []Entry{
		{Index: 5, Term: 2, Type: EntryConfig, Data: encodeMembership(withoutA)},
		{Index: 6, Term: 2, Type: EntryConfig, Data: encodeMembership(onlyB)},
	}))
	g.takeReady()
	require.Equal(t, uint64(5), g.commit)
	_, err := g.compact(5, 0)
	require.NoError(t, err)
	assert.Len(t, g.committedConfig().Voters, 2, "the configuration at 5 is the committed one")
	assert.Len(t, g.self.Voters, 1, "the one at 6 is in force")
	g.step(appendMsg("b", 3, 5, 2, 5, entries(6, 3)))
	assert.Len(t, g.self.Voters, 2, "a conflict at 6 takes it back")
}

// TestCoreCompactKeepsTheLogAfterASnapshotBeingSent: while a follower is
// sent a snapshot, the leader's compactions stop at it, so that the
// follower, once restored, continues from the log; compacted past it
// meanwhile, it would need another snapshot, and under enough writes
// never catch up.
func TestCoreCompactKeepsTheLogAfterASnapshotBeingSent(t *testing.T) {
	n, l, first := blankFollowerBehindCompaction(t, 100)
	// The snapshot is still travelling: its header does not arrive.
	n.admit = func(m Message) bool { return m.Type != MsgSnap || m.To != "c" }
	for i := 0; i < 50 && l.prs["c"].state != stateSnapshot; i++ {
		n.tickAll(1)
	}
	require.Equal(t, stateSnapshot, l.prs["c"].state, "setup: c is being sent the snapshot")

	proposeN(n, l, 100) // writes go on while it travels
	_, err := l.compact(l.handedOut, 0)
	require.NoError(t, err)
	assert.Equal(t, first.Index, l.log.floor, "the log after the snapshot being sent is kept")

	// The transfer fails; the next one arrives, and c goes on from the log.
	n.admit = nil
	l.reportSnapshot("c", first.Index, SnapshotFailed)
	for i := 0; i < 50 && l.prs["c"].state != stateReplicate; i++ {
		n.tickAll(1)
	}
	require.Equal(t, stateReplicate, l.prs["c"].state, "c restored a snapshot and replicates")
	_, err = l.compact(l.handedOut, 0)
	require.NoError(t, err)
	assert.Greater(t, l.log.floor, first.Index, "once no transfer is under way, compaction goes on")
}
