package raft

import (
	"fmt"
	"testing"
)

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

// TestCoreTransferCatchesUpThenHandsOverOnce: on request, the leader stops
// taking proposals, and sends TimeoutNow only once the target holds its
// whole log, and only once; it leads until the target's election deposes
// it.
func TestCoreTransferCatchesUpThenHandsOverOnce(t *testing.T) {
	a := leaderOfThree(t)
	a.step(ackMsg("b", a.term, a.log.lastIndex(), 0))
	a.step(ackMsg("c", a.term, a.log.lastIndex(), 0))
	a.propose(normal([]byte("b lacks this")))
	a.takeReady()
	if err := a.transferLeadership("b"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.propose(normal([]byte("during"))); err != ErrTransferring {
		t.Fatalf("a proposal during the transfer: %v, want ErrTransferring", err)
	}
	if n := len(msgsOf(a.takeReady().Messages, MsgTimeoutNow, "")); n != 0 {
		t.Fatalf("TimeoutNow sent to a target that lacks entries")
	}
	for range 2 {
		a.step(ackMsg("b", a.term, a.log.lastIndex(), 0))
	}
	rd := a.takeReady()
	if n := len(msgsOf(rd.Messages, MsgTimeoutNow, "b")); n != 1 {
		t.Fatalf("after b caught up (twice acknowledged), %d TimeoutNow to b in %s; want exactly one", n, dumpMsgs(rd.Messages))
	}
	if a.role != Leader {
		t.Fatalf("a is %v after handing over; it leads until b's election deposes it", a.role)
	}
	vote := voteMsg(MsgVote, "b", a.term+1, a.log.lastIndex(), a.log.lastTerm())
	vote.Force = true
	a.step(vote)
	if a.role != Follower {
		t.Fatalf("b's forced election did not depose a: %v", a.role)
	}
}

// TestCoreTransferAbandonedLeadsOn: a target that does not take over within
// an election timeout ends the transfer, and the leader takes proposals
// again instead of refusing them for ever.
func TestCoreTransferAbandonedLeadsOn(t *testing.T) {
	a := leaderOfThree(t)
	if err := a.transferLeadership("b"); err != nil {
		t.Fatal(err)
	}
	for range a.cfg.electionMin {
		a.tick()
		// Both answer, at their old match, so check-quorum is satisfied;
		// b never catches up.
		a.step(ackMsg("b", a.term, 0, 0))
		a.step(ackMsg("c", a.term, a.log.lastIndex(), 0))
	}
	if a.role != Leader || a.transferee != "" {
		t.Fatalf("after an election timeout: %v, transferee %q; want the leader, with no transfer", a.role, a.transferee)
	}
	if _, _, err := a.propose(normal([]byte("after"))); err != nil {
		t.Fatalf("a proposal after the abandoned transfer: %v", err)
	}
}

// TestCoreTransferRefusals: only the leader transfers, only to a voter; to
// itself is nothing to do, and ends a transfer in progress.
func TestCoreTransferRefusals(t *testing.T) {
	a := leaderOfThree(t)
	if err := a.transferLeadership("x"); err != ErrUnknownServer {
		t.Fatalf("to a stranger: %v, want ErrUnknownServer", err)
	}
	if err := a.transferLeadership("b"); err != nil {
		t.Fatal(err)
	}
	if err := a.transferLeadership("a"); err != nil || a.transferee != "" {
		t.Fatalf("to itself: %v, transferee %q; want nil and no transfer", err, a.transferee)
	}
	b := testCore(t, "b", names3)
	if err := b.transferLeadership("c"); err != ErrNotLeader {
		t.Fatalf("on a follower: %v, want ErrNotLeader", err)
	}
}

// TestCoreTriggerElectionOnALaggingFollowerGoesThroughTheLeader: a
// follower that hears from its leader asks it to hand over instead of
// campaigning, which its lagging log would lose (while deposing the leader);
// the leader then catches it up and hands over. Without a leader it
// campaigns at once.
func TestCoreTriggerElectionOnALaggingFollowerGoesThroughTheLeader(t *testing.T) {
	n := newCluster(t, 5, names3)
	a := n.forceLeader("a")
	n.settle(50)
	n.isolate("b")
	for i := range 5 {
		a.propose(normal(fmt.Append(nil, i)))
	}
	n.collect("a")
	n.deliverAll()
	n.healAll()
	b := n.cores["b"]
	if b.log.lastIndex() >= a.log.lastIndex() || b.lead != "a" {
		t.Fatalf("setup: b's last index %d, a's %d, b's leader %q; want b lagging behind a, its leader", b.log.lastIndex(), a.log.lastIndex(), b.lead)
	}
	if err := b.askToLead(); err != nil {
		t.Fatal(err)
	}
	out := b.takeReady().Messages
	if len(msgsOf(out, MsgTransferLeader, "a")) != 1 || len(msgsOf(out, MsgVote, "")) != 0 || b.role != Follower {
		t.Fatalf("b sent %s and is %v; want one TransferLeader to a and no campaign", dumpMsgs(out), b.role)
	}
	n.send(out...)
	n.deliverAll()
	if a.transferee != "b" {
		t.Fatalf("a got the request but hands over to %q", a.transferee)
	}
	// The appends b missed were lost, not refused: the leader's heartbeats
	// find that out and it resends them; b catches up and is told to
	// campaign, within the transfer's election timeout.
	for tick := 0; tick < a.cfg.electionMin-1 && n.leader() != b; tick++ {
		n.tick("a", 1)
		n.deliverAll()
	}
	if l := n.leader(); l != b {
		t.Fatalf("after the request, the leader is %s; want b, caught up first (a: transferee %q handedOver %v last %d term %d; b: last %d term %d role %v lead %q; b's progress %+v)", l.cfg.name,
			a.transferee, a.handedOver, a.log.lastIndex(), a.term, b.log.lastIndex(), b.term, b.role, b.lead, *a.prs["b"])
	}

	lone := testCore(t, "c", names3)
	if err := lone.askToLead(); err != nil || lone.role == Follower {
		t.Fatalf("without a leader, askToLead: %v, role %v; want a campaign", err, lone.role)
	}
}

// TestCoreTriggerElectionWhenTheLeaderJustDied: a follower asks the leader
// it heard from a moment ago, which has died; two heartbeat intervals
// without a word from it, the follower campaigns itself, as
// TriggerElection asked, instead of waiting out its election timeout.
func TestCoreTriggerElectionWhenTheLeaderJustDied(t *testing.T) {
	a := testCore(t, "a", names3) // its leader: b
	followerWithLog(t, a, 1, []uint64{1}, 1)
	a.takeReady()
	if err := a.askToLead(); err != nil {
		t.Fatal(err)
	}
	if len(msgsOf(a.takeReady().Messages, MsgTransferLeader, "b")) != 1 {
		t.Fatalf("a did not ask its leader first")
	}
	if a.lead != "" {
		t.Fatalf("a still reports %s as its leader after asking it to hand over: a wait for the outcome would end at once, on a leader that may be gone", a.lead)
	}
	for tick := 0; tick < 2*a.cfg.heartbeat-1; tick++ {
		a.tick()
		if a.role != Follower {
			t.Fatalf("a campaigned after %d ticks, before two heartbeat intervals without its leader", tick+1)
		}
	}
	a.tick()
	votes := msgsOf(a.takeReady().Messages, MsgVote, "")
	if a.role != Candidate || len(votes) != 2 || !votes[0].Force {
		t.Fatalf("a is %v and sent %d votes; want a forced campaign once its leader was silent for two heartbeats", a.role, len(votes))
	}
}

// TestCoreTransferRequestOnlyFromAVoter: only a voter of the leader's
// configuration, as the incarnation it binds, may ask it to hand over: a
// stranger's request, or one from a restarted b whose log is blank, changes
// nothing.
func TestCoreTransferRequestOnlyFromAVoter(t *testing.T) {
	a := leaderOfThree(t)
	a.step(msgFrom(MsgTransferLeader, "x", a.term))
	restarted := msgFrom(MsgTransferLeader, "b", a.term)
	restarted.FromInc++
	a.step(restarted)
	if a.transferee != "" {
		t.Fatalf("a request from a stranger or another incarnation started a transfer to %q", a.transferee)
	}
	a.step(msgFrom(MsgTransferLeader, "b", a.term))
	if a.transferee != "b" {
		t.Fatalf("b's request: transferee %q, want b", a.transferee)
	}
}

// TestCoreTimeoutNowFromTheLeaderAsked: a follower that asked its leader to
// hand over no longer reports it as leader; the TimeoutNow that leader
// sends must still make it campaign.
func TestCoreTimeoutNowFromTheLeaderAsked(t *testing.T) {
	a := testCore(t, "a", names3) // its leader: b
	followerWithLog(t, a, 1, []uint64{1}, 1)
	if err := a.askToLead(); err != nil {
		t.Fatal(err)
	}
	a.takeReady()
	a.step(msgFrom(MsgTimeoutNow, "b", a.term))
	if a.role != Candidate {
		t.Fatalf("a is %v after the asked leader's TimeoutNow; want a campaign", a.role)
	}
}

// TestCoreAskToLeadEndsWhenAnotherLeads: a follower that asked its leader b
// to hand over, and then hears c lead a later term, no longer waits on b:
// a gap of two heartbeat intervals in c's messages must not make it
// campaign (which would depose c for a request c never had).
func TestCoreAskToLeadEndsWhenAnotherLeads(t *testing.T) {
	a := testCore(t, "a", names3) // its leader: b
	followerWithLog(t, a, 1, []uint64{1}, 1)
	a.takeReady()
	if err := a.askToLead(); err != nil {
		t.Fatal(err)
	}
	a.takeReady()
	a.step(appendMsg("c", 2, 1, 1, 1, nil))
	a.takeReady()
	if a.lead != "c" || a.term != 2 {
		t.Fatalf("a follows %q in term %d; want c in term 2", a.lead, a.term)
	}
	for tick := 0; tick < 2*a.cfg.heartbeat+1; tick++ {
		a.tick()
		if a.role != Follower {
			t.Fatalf("a campaigned %d ticks after c, the new leader, last sent: its request to b should have ended", tick+1)
		}
	}
}
