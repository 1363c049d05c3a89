package raft

import "testing"

// Tests of leadership transfer (transfer.go, thesis §3.10).
// Each test fails when its rule is taken out.

// TestCoreTimeoutNowForcesElection: TimeoutNow makes a follower campaign at
// once with a forced request.
func TestCoreTimeoutNowForcesElection(t *testing.T) {
	a := testCore(t, "a", names3)
	followerWithLog(t, a, 1, []uint64{1}, 1)
	a.step(msgFrom(MsgTimeoutNow, "b", 1))
	out := a.takeReady().Messages
	votes := msgsOf(out, MsgVote, "")
	if a.role != Candidate || a.term != 2 || len(votes) != 2 || !votes[0].Force || !votes[1].Force {
		t.Fatalf("after TimeoutNow: %v term %d sent %s; want forced vote requests of term 2", a.role, a.term, dumpMsgs(out))
	}
}

// TestCoreHandOverTimesOut: a leader that removed itself hands over to the
// most up-to-date voter; if that voter does not catch up within an election
// timeout, the leader steps down anyway instead of leading, outside its
// configuration, for ever.
func TestCoreHandOverTimesOut(t *testing.T) {
	a := leaderOfThree(t)
	idx, err := a.removeServer("a")
	if err != nil {
		t.Fatal(err)
	}
	a.propose(normal([]byte("after"))) // b and c will lack it
	a.takeReady()
	a.step(ackMsg("b", a.term, idx, 0))
	a.step(ackMsg("c", a.term, idx, 0))
	a.takeReady()
	if a.commit < idx || a.transferee == "" || a.role != Leader {
		t.Fatalf("setup: commit %d (removal at %d), transferee %q, %v", a.commit, idx, a.transferee, a.role)
	}
	for tick := 0; tick < a.cfg.electionMin-1; tick++ {
		a.tick()
		// Both keep answering, at idx, so check-quorum is satisfied.
		a.step(ackMsg("b", a.term, idx, 0))
		a.step(ackMsg("c", a.term, idx, 0))
	}
	if a.role != Leader {
		t.Fatalf("a gave up the hand-over after %d ticks, before an election timeout", a.cfg.electionMin-1)
	}
	a.tick()
	rd := a.takeReady()
	if a.role != Follower || len(msgsOf(rd.Messages, MsgTimeoutNow, "")) != 0 {
		t.Fatalf("after an election timeout a is %v and sent %s; want a follower that sent no TimeoutNow", a.role, dumpMsgs(rd.Messages))
	}
}
