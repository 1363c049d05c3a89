package raft

import (
	"fmt"
	"testing"
)

// Tests of linearizable reads (readindex.go, thesis §6.4).
// Each test fails when its rule is taken out.

// TestCoreReadWaitsForNoopCommit: a read that reaches a new leader before
// it committed an entry of its term waits for that commit, and is then
// served at an index that includes it, not at the leader's stale commit.
func TestCoreReadWaitsForNoopCommit(t *testing.T) {
	a := testCore(t, "a", names3)
	// a knows index 1 committed; b may have committed 2 and 3 since.
	followerWithLog(t, a, 1, []uint64{1, 1, 1}, 1)
	elect(t, a, "b")
	a.takeReady()
	if err := a.readIndex(7); err != nil {
		t.Fatal(err)
	}
	// b acknowledges every round a started, and holds index 3 (of term 1):
	// a quorum holds 3, but that is not an entry of a's term.
	ackRounds := func(match uint64) []ReadState {
		rd := a.takeReady()
		a.step(ackMsg("b", 2, match, a.seq))
		return append(rd.Reads, a.takeReady().Reads...)
	}
	if got := ackRounds(3); len(got) != 0 || a.commit != 1 {
		t.Fatalf("before the no-op committed: released %v (commit %d), want nothing", got, a.commit)
	}
	last := a.log.lastIndex() // the no-op and the configuration binding b
	if got := ackRounds(last); a.commit != last || len(got) != 0 {
		// Committed now: the read waits for a round that starts now.
		t.Fatalf("as the no-op committed: commit %d, released %v; want commit %d, a new round first", a.commit, got, last)
	}
	got := ackRounds(last)
	if len(got) != 1 || got[0].ID != 7 || got[0].Index != last {
		t.Fatalf("after a round: released %v, want read 7 at index %d", got, last)
	}
}

// TestCoreReadIndexNeedsQuorumRound: a read is released once a quorum
// (leader included) acknowledged a round the leader started after the read:
// acks of an older round, or from too few voters, do not do.
func TestCoreReadIndexNeedsQuorumRound(t *testing.T) {
	a := testCore(t, "a", names5)
	elect(t, a, "b", "c")
	a.step(ackMsg("b", a.term, a.log.lastIndex(), 0))
	a.step(ackMsg("c", a.term, a.log.lastIndex(), 0))
	commit := a.commit
	if commit != a.log.lastIndex() {
		t.Fatal("setup: nothing committed")
	}
	a.takeReady()
	old := a.seq
	a.readIndex(1)
	rd := a.takeReady()
	// Every follower answered round old (0, before any), so the round
	// goes to the two it needs for a quorum of three.
	if len(rd.Reads) != 0 || a.seq != old+1 || len(msgsOf(rd.Messages, MsgApp, "")) != 2 {
		t.Fatalf("registering the read: released %v, round %d->%d, sent %s", rd.Reads, old, a.seq, dumpMsgs(rd.Messages))
	}
	for _, m := range msgsOf(rd.Messages, MsgApp, "") {
		if m.Seq != a.seq {
			t.Fatalf("heartbeat of round %d, want %d", m.Seq, a.seq)
		}
	}
	steps := []struct {
		from    string
		seq     uint64
		release bool
	}{
		{"b", old, false},     // a round from before the read
		{"c", old, false},     // (a, b, c acked round old: a quorum, too early)
		{"b", old + 1, false}, // a and b: two of five
		{"b", old + 1, false}, // b again
		{"d", old + 1, true},  // a, b, d: three of five
	}
	for i, s := range steps {
		a.step(ackMsg(s.from, a.term, commit, s.seq))
		got := a.takeReady().Reads
		if (len(got) == 1) != s.release {
			t.Fatalf("step %d (ack of round %d from %s): released %v, want release=%v", i, s.seq, s.from, got, s.release)
		}
		if s.release && (got[0].ID != 1 || got[0].Index != commit) {
			t.Fatalf("released %v, want read 1 at %d", got, commit)
		}
	}
}

// TestCoreReadIndexBatchesRound: reads registered together share one round
// (one heartbeat); a read registered after a round began waits for the
// next.
func TestCoreReadIndexBatchesRound(t *testing.T) {
	a := leaderOfThree(t)
	for id := uint64(1); id <= 3; id++ {
		a.readIndex(id)
	}
	rd := a.takeReady()
	hbs := msgsOf(rd.Messages, MsgApp, "")
	if len(rd.Messages) != 1 || len(hbs) != 1 || hbs[0].Seq != a.seq {
		t.Fatalf("three reads sent %s, want one heartbeat of round %d, to the one follower a quorum needs", dumpMsgs(rd.Messages), a.seq)
	}
	first := a.seq
	a.readIndex(4) // after the round began: it waits for the next one
	a.readIndex(5)
	if rd := a.takeReady(); len(rd.Messages) != 0 || a.seq != first {
		t.Fatalf("reads 4 and 5 sent %s (round %d) while round %d was in flight, want nothing yet", dumpMsgs(rd.Messages), a.seq, first)
	}
	a.step(ackMsg("c", a.term, a.commit, first))
	rd = a.takeReady()
	got := rd.Reads
	if len(got) != 3 || got[0].ID != 1 || got[1].ID != 2 || got[2].ID != 3 {
		t.Fatalf("ack of round %d released %v, want reads 1, 2, 3", first, got)
	}
	var round2 []Message
	for _, m := range msgsOf(rd.Messages, MsgApp, "") {
		if m.Seq == first+1 && len(m.Entries) == 0 {
			round2 = append(round2, m)
		}
	}
	if len(round2) != 1 || a.seq != first+1 {
		t.Fatalf("after round %d completed: sent %s, want one round %d for reads 4 and 5", first, dumpMsgs(rd.Messages), first+1)
	}
	a.step(ackMsg("c", a.term, a.commit, first+1))
	if got := a.takeReady().Reads; len(got) != 2 || got[0].ID != 4 || got[1].ID != 5 || got[0].Index != a.commit {
		t.Fatalf("ack of round %d released %v, want reads 4 and 5", first+1, got)
	}
}

// TestCoreReadIndexPartitionedLeader: a leader cut off from its followers
// never releases a read; once the links come back it does, at the commit
// index of the time the read arrived.
func TestCoreReadIndexPartitionedLeader(t *testing.T) {
	n := newCluster(t, 23, names3)
	l := n.settle(100)
	for i := 0; i < 3; i++ {
		l.propose(normal([]byte(fmt.Sprint(i))))
	}
	n.collect(l.cfg.name)
	n.deliverAll()
	commit := l.commit
	n.isolate(l.cfg.name)
	if err := l.readIndex(1); err != nil {
		t.Fatal(err)
	}
	// Entries proposed after the read do not raise the index it waits for.
	l.propose(normal([]byte("later")))
	n.collect(l.cfg.name)
	n.deliverAll()
	n.tick(l.cfg.name, l.cfg.electionMin/2)
	if got := n.reads[l.cfg.name]; len(got) != 0 || l.role != Leader {
		t.Fatalf("cut-off leader (%v) released %v", l.role, got)
	}
	n.healAll()
	for i := 0; i < 10 && len(n.reads[l.cfg.name]) == 0; i++ {
		n.tickAll(1)
	}
	if got := n.reads[l.cfg.name]; len(got) != 1 || got[0].ID != 1 || got[0].Index != commit {
		t.Fatalf("after healing: released %v, want read 1 at index %d", got, commit)
	}
}

// TestCoreReadRoundGoesToQuorum: a read round goes only to followers that
// answered the last one, as many as a quorum needs; a round whose followers
// fall silent completes with the next heartbeat, which every follower gets.
func TestCoreReadRoundGoesToQuorum(t *testing.T) {
	a := testCore(t, "a", names5)
	elect(t, a, "b", "c")
	for _, name := range []string{"b", "c", "d", "e"} {
		a.step(ackMsg(name, a.term, a.log.lastIndex(), 0))
	}
	a.takeReady()
	commit := a.commit
	heartbeats := func(rd Ready) []string {
		var to []string
		for _, m := range msgsOf(rd.Messages, MsgApp, "") {
			if m.Seq == a.seq {
				to = append(to, m.To)
			}
		}
		return to
	}
	a.readIndex(1)
	if to := heartbeats(a.takeReady()); len(to) != 2 {
		t.Fatalf("round 1 went to %v, want two followers", to)
	}
	// d and e answer round 1 (as they would a heartbeat of it).
	a.step(ackMsg("d", a.term, commit, a.seq))
	a.step(ackMsg("e", a.term, commit, a.seq))
	if rd := a.takeReady(); len(rd.Reads) != 1 {
		t.Fatalf("round 1 answered by a quorum released %v", rd.Reads)
	}
	a.readIndex(2)
	if to := heartbeats(a.takeReady()); len(to) != 2 || to[0] != "d" || to[1] != "e" {
		t.Fatalf("round 2 went to %v, want d and e, who answered round 1", to)
	}
	// Only d answers; the next heartbeat takes round 2 to everyone.
	a.step(ackMsg("d", a.term, commit, a.seq))
	a.takeReady()
	for i := 0; i < a.cfg.heartbeat; i++ {
		a.tick()
	}
	if to := heartbeats(a.takeReady()); len(to) != 4 {
		t.Fatalf("the heartbeat during round 2 went to %v, want all four with its seq", to)
	}
	a.step(ackMsg("b", a.term, commit, a.seq))
	if rd := a.takeReady(); len(rd.Reads) != 1 {
		t.Fatalf("round 2 answered by a, b and d released %v", rd.Reads)
	}
	a.readIndex(3)
	if to := heartbeats(a.takeReady()); len(to) != 2 || to[0] != "b" || to[1] != "d" {
		t.Fatalf("round 3 went to %v, want b and d, who answered round 2", to)
	}
}

// TestCoreReadRoundHeldOnceAfterRelease: with hold, the round that releases
// reads does not start the next one in the same breath, so that the readers
// just answered can join it; the next takeReady starts it, with every read
// that came meanwhile.
func TestCoreReadRoundHeldOnceAfterRelease(t *testing.T) {
	a := testCore(t, "a", names3)
	elect(t, a, "b", "c")
	a.step(ackMsg("b", a.term, a.log.lastIndex(), 0))
	a.takeReady()
	a.readIndex(1)
	a.takeReady() // round 1 goes out
	a.readIndex(2)
	a.step(ackMsg("b", a.term, a.log.lastIndex(), a.seq)) // round 1 done
	rd := a.takeReadyHolding(HoldRound)
	if len(rd.Reads) != 1 || rd.Reads[0].ID != 1 || !rd.RoundHeld {
		t.Fatalf("the answered round released %v, held %v; want read 1 and the next round held", rd.Reads, rd.RoundHeld)
	}
	if ms := msgsOf(rd.Messages, MsgApp, ""); len(ms) != 0 {
		t.Fatalf("a held round sent %s", dumpMsgs(ms))
	}
	a.readIndex(3) // a reader just answered asks again
	rd = a.takeReadyHolding(StartRound)
	if ms := msgsOf(rd.Messages, MsgApp, ""); len(ms) == 0 || ms[0].Seq != a.seq {
		t.Fatalf("the held round did not start: %s", dumpMsgs(rd.Messages))
	}
	a.step(ackMsg("b", a.term, a.log.lastIndex(), a.seq))
	if rd := a.takeReady(); len(rd.Reads) != 2 {
		t.Fatalf("the held round released %v, want reads 2 and 3 together", rd.Reads)
	}
}
