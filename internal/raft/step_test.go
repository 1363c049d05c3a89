package raft

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Tests of the rules every message passes first (step.go): the leader lease
// against disruptive servers (thesis §4.2.3, §9.6).
// Each test fails when its rule is taken out.

// TestCoreStickinessIgnoresVoteInLease: a follower in its leader's lease
// ignores a vote request of a higher term (keeping its term and leader),
// but grants a forced one (TriggerElection, TimeoutNow).
func TestCoreStickinessIgnoresVoteInLease(t *testing.T) {
	a := testCore(t, "a", names3)
	followerWithLog(t, a, 1, []uint64{1}, 1)
	a.tick()
	a.step(voteMsg(MsgVote, "c", 2, 1, 1))
	if rd := a.takeReady(); len(rd.Messages) != 0 || a.term != 1 || a.lead != "b" || a.votedFor != "" {
		t.Fatalf("vote request in lease: sent %s, term %d lead %q vote %q; want it ignored",
			dumpMsgs(rd.Messages), a.term, a.lead, a.votedFor)
	}
	m := voteMsg(MsgVote, "c", 2, 1, 1)
	m.Force = true
	a.step(m)
	if r := onlyMsg(t, a.takeReady().Messages, MsgVoteResp, "c"); r.Reject || a.term != 2 || a.votedFor != "c" {
		t.Fatalf("forced vote request: %s, term %d vote %q; want granted in term 2", dumpMsgs([]Message{r}), a.term, a.votedFor)
	}
}

// TestCoreOutsidersCannotMoveTermsInLease: while a server hears from a
// leader, nothing from a server outside its configuration moves its term or
// its leader, forced or not; once the lease lapses, an outsider's append is
// followed (a leader added by entries this server lacks).
func TestCoreOutsidersCannotMoveTermsInLease(t *testing.T) {
	forced := voteMsg(MsgVote, "x", 99, 50, 50)
	forced.Force = true
	ack := ackMsg("x", 99, 1<<40, 1)
	ack.Reject = true
	hostile := []Message{
		appendMsg("x", 99, 0, 0, 0, entries(1, 99)),
		appendMsg("x", 99, 1<<62, 7, 1<<62, nil),
		voteMsg(MsgVote, "x", 99, 50, 50),
		voteMsg(MsgPreVote, "x", 99, 50, 50),
		forced,
		msgFrom(MsgTimeoutNow, "x", 99),
		ack,
	}
	a := testCore(t, "a", names3)
	followerWithLog(t, a, 1, []uint64{1}, 1)
	for _, m := range hostile {
		a.step(m)
		rd := a.takeReady()
		if a.term != 1 || a.lead != "b" || a.role != Follower || a.log.lastIndex() != 1 || len(rd.Messages) != 0 {
			t.Fatalf("follower after %s: %v term %d lead %q last %d sent %s; want all ignored",
				dumpMsgs([]Message{m}), a.role, a.term, a.lead, a.log.lastIndex(), dumpMsgs(rd.Messages))
		}
	}

	l := testCore(t, "a", names3)
	elect(t, l, "b")
	term := l.term
	for _, m := range hostile {
		l.step(m)
		l.takeReady()
		if l.role != Leader || l.term != term {
			t.Fatalf("leader after %s: %v term %d; want leader of term %d", dumpMsgs([]Message{m}), l.role, l.term, term)
		}
	}

	for i := 0; i < a.cfg.electionMin; i++ {
		a.tick()
	}
	a.takeReady()
	a.step(appendMsg("x", 99, 1, 1, 0, nil))
	if a.term != 99 || a.lead != "x" {
		t.Fatalf("after the lease lapsed: term %d lead %q; want x's term 99", a.term, a.lead)
	}
}

// TestCoreReadyMarksStrangers: Ready marks the messages to an address that
// is neither a voter's, nor a server's the leader catches up, nor the
// leader's, so that the transport can bound the streams it opens to them.
func TestCoreReadyMarksStrangers(t *testing.T) {
	a := testCore(t, "a", names3)
	followerWithLog(t, a, 1, []uint64{1}, 1)
	a.step(appendMsg("b", 1, 1, 1, 1, nil))
	stale := voteMsg(MsgVote, "x", 0, 0, 0) // answered, with a refusal
	stale.FromAddr = "x:1"
	a.step(stale)
	out := a.takeReady().Messages
	require.False(t, onlyMsg(t, out, MsgAppResp, "b").ToStranger, "the answer to the leader")
	require.True(t, onlyMsg(t, out, MsgVoteResp, "x").ToStranger, "the answer to an outsider")

	l := testCore(t, "a", names3)
	elect(t, l, "b")
	require.NoError(t, l.addServer(Peer{Name: "d", Addr: "d:1"}))
	for _, m := range l.takeReady().Messages {
		require.False(t, m.ToStranger, "the leader's %v to %s", m.Type, m.To)
	}
}
