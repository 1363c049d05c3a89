package raft

import "testing"

// Tests of the commit rule (commit.go): counting a quorum, current term only
// (§5.3, §5.4.2), and the no-op entry that lets a new leader commit (§8).
// Each test fails when its rule is taken out.

// TestCoreCommitOnlyCurrentTerm is Figure 8: an entry of an earlier term
// that a majority holds is not committed by counting; it commits when an
// entry of the current term above it does.
func TestCoreCommitOnlyCurrentTerm(t *testing.T) {
	a := leaderOfFive(t)
	a.step(ackMsg("b", 3, 2, 0))
	a.step(ackMsg("c", 3, 2, 0))
	if rd := a.takeReady(); a.commit != 1 || len(rd.Committed) != 0 {
		t.Fatalf("index 2 (term 2) on a, b, c: commit %d, %d entries to apply; want commit 1", a.commit, len(rd.Committed))
	}
	a.step(ackMsg("b", 3, 3, 0))
	if a.commit != 1 {
		t.Fatalf("index 3 on a and b only: commit %d, want 1", a.commit)
	}
	a.step(ackMsg("c", 3, 3, 0))
	rd := a.takeReady()
	if a.commit != 3 {
		t.Fatalf("index 3 (term 3) on a, b, c: commit %d, want 3", a.commit)
	}
	if len(rd.Committed) != 2 || rd.Committed[0].Term != 2 || rd.Committed[1].Type != EntryNoop {
		t.Fatalf("handed out %d entries, want indexes 2-3: the term-2 entry and the no-op", len(rd.Committed))
	}
}

// TestCoreCommitNeedsQuorum: an index commits once a quorum of voters (the
// leader included) holds it, not before.
func TestCoreCommitNeedsQuorum(t *testing.T) {
	a := leaderOfFive(t)
	last := a.log.lastIndex()
	a.step(ackMsg("b", 3, last, 0))
	if a.commit != 1 {
		t.Fatalf("2 of 5 hold index %d: commit %d, want 1", last, a.commit)
	}
	a.step(ackMsg("b", 3, last, 0)) // the same voter again counts once
	if a.commit != 1 {
		t.Fatalf("a duplicated ack committed: commit %d", a.commit)
	}
	a.step(ackMsg("d", 3, last, 0)) // d is not bound yet: any incarnation counts
	if a.commit != last {
		t.Fatalf("3 of 5 hold index %d: commit %d", last, a.commit)
	}
}

// TestCoreLeaderAppendsNoop: a new leader's first entry is a no-op of its
// term, and it is the first thing sent to the followers.
func TestCoreLeaderAppendsNoop(t *testing.T) {
	a := testCore(t, "a", names3)
	followerWithLog(t, a, 1, []uint64{1, 1}, 0)
	elect(t, a, "b")
	if e := a.log.at(3); e.Type != EntryNoop || e.Term != 2 {
		t.Fatalf("index 3 after winning term 2: type %d term %d, want a no-op of term 2", e.Type, e.Term)
	}
	out := a.takeReady().Messages
	for _, to := range []string{"b", "c"} {
		m := onlyMsg(t, out, MsgApp, to)
		if len(m.Entries) == 0 || m.Entries[0].Type != EntryNoop || m.Entries[0].Index != 3 {
			t.Fatalf("first append to %s: %s, want it to start with the no-op", to, dumpMsgs([]Message{m}))
		}
	}
	// On the network: every term in every log starts with a no-op.
	n := newCluster(t, 17, names3)
	n.settle(100)
	for _, name := range []string{"b", "c", "a", "b"} {
		n.forceLeader(name)
		n.settle(100)
	}
	for _, name := range n.names {
		requireNoopFirst(t, n.cores[name])
	}
}
