package raft

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests of incarnations (incarnation.go, docs/design.md §2): only the bound
// incarnation's votes and acknowledgements count, and a restarted voter is
// caught up and re-admitted.
// Each test fails when its rule is taken out.

// TestCoreIncarnationVoteTally: a vote counts only from the incarnation the
// configuration names.
func TestCoreIncarnationVoteTally(t *testing.T) {
	a := testCore(t, "a", names3)
	boundFollower(t, a, names3)
	if err := a.triggerElection(); err != nil {
		t.Fatal(err)
	}
	vote := func(from string, inc uint64) {
		m := msgFrom(MsgVoteResp, from, a.term)
		m.FromInc = inc
		a.step(m)
	}
	vote("c", 33) // c restarted: its vote is not c/3's
	vote("b", 22)
	if a.role != Candidate {
		t.Fatalf("votes of new incarnations of b and c made a %v", a.role)
	}
	vote("c", 3)
	if a.role != Leader {
		t.Fatalf("the vote of c/3 left a %v", a.role)
	}
}

// TestCoreIncarnationRestartedVoterDoubleVote is docs/design.md §2's scenario: c
// votes for b in term 2 and restarts blank; the new c votes for a in the
// same term, but that vote does not count, so a does not become a second
// leader of term 2.
func TestCoreIncarnationRestartedVoterDoubleVote(t *testing.T) {
	n := newCluster(t, 43, names3)
	n.forceLeader("a")
	n.settle(100)
	a, b := n.cores["a"], n.cores["b"]
	if a.term != 1 || !allBound(a.committedConfig()) || !allBound(b.committedConfig()) {
		t.Fatalf("setup: a in term %d, configuration %+v", a.term, a.committedConfig().Voters)
	}
	n.isolate("a")
	n.forceLeader("b") // with c's vote
	if b.term != 2 || n.cores["c"].votedFor != "b" {
		t.Fatalf("setup: b leads term %d, c voted %q", b.term, n.cores["c"].votedFor)
	}
	c2 := n.start("c", testCoreConfig("c", []string{"a", "b", "c"}, 777, n.rng))
	// a gives up its leadership (check-quorum) without learning of term 2.
	n.tick("a", 3*a.cfg.electionMin)
	if a.role == Leader || a.term != 1 {
		t.Fatalf("setup: a is %v in term %d", a.role, a.term)
	}
	n.heal("a", "c")
	if err := a.triggerElection(); err != nil {
		t.Fatal(err)
	}
	n.collect("a")
	n.deliverAll()
	if c2.term != 2 || c2.votedFor != "a" {
		t.Fatalf("the new c is in term %d and voted %q; the scenario needs it to vote for a in term 2", c2.term, c2.votedFor)
	}
	n.requireOneLeaderPerTerm()
	if a.role == Leader {
		t.Fatalf("a leads term %d with the vote of the new c (b leads it too)", a.term)
	}
	// Everyone together again: one leader, the new c re-admitted.
	n.healAll()
	n.tickAll(100)
	n.requireOneLeaderPerTerm()
	l := n.leader()
	if v, _ := l.committedConfig().find("c"); v.Inc != 777 {
		t.Fatalf("c is %d in the committed configuration, want 777", v.Inc)
	}
	n.appliedAgree()
}

// TestCoreIncarnationAckResetsProgress: an append response from a new
// incarnation of a voter resets the leader's progress for it (match 0), and
// its acknowledgements count neither for commits nor for reads until a
// configuration names the new incarnation.
func TestCoreIncarnationAckResetsProgress(t *testing.T) {
	a := testCore(t, "a", names3, withoutAutoRejoin)
	boundFollower(t, a, names3)
	elect(t, a, "b")
	a.step(ackMsg("b", a.term, a.log.lastIndex(), 0))
	a.step(ackMsg("c", a.term, a.log.lastIndex(), 0))
	last := a.log.lastIndex()
	if a.commit != last || a.prs["b"].match != last {
		t.Fatalf("setup: commit %d, b's match %d, last %d", a.commit, a.prs["b"].match, last)
	}
	a.takeReady()
	// b comes back blank as incarnation 22 and refuses a heartbeat.
	r := msgFrom(MsgAppResp, "b", a.term)
	r.FromInc, r.Reject, r.PrevIndex, r.HintIndex, r.LastIndex = 22, true, last, 1, 0
	a.step(r)
	pr := a.prs["b"]
	if pr.inc != 22 || pr.match != 0 || pr.next != 1 || pr.state != stateProbe {
		t.Fatalf("progress after the new incarnation answered: inc %d match %d next %d state %d; want 22, 0, 1, probe",
			pr.inc, pr.match, pr.next, pr.state)
	}
	if m := onlyMsg(t, a.takeReady().Messages, MsgApp, "b"); m.PrevIndex != 0 || len(m.Entries) != int(last) {
		t.Fatalf("append to the new b: %s, want the whole log", dumpMsgs([]Message{m}))
	}
	// b/22 holds everything (x included); c does not answer.
	x, _, _ := a.propose(normal([]byte("x")))
	a.readIndex(5)
	a.takeReady()
	ack := ackMsg("b", a.term, x, a.seq)
	ack.FromInc = 22
	a.step(ack)
	if rd := a.takeReady(); a.commit >= x || len(rd.Reads) != 0 {
		t.Fatalf("acks of b/22 counted: commit %d (x at %d), released %v", a.commit, x, rd.Reads)
	}
	if a.log.lastIndex() != x {
		t.Fatalf("without autoRejoin the leader changed the configuration: last %d, want %d", a.log.lastIndex(), x)
	}
	// The old incarnation's ack (a late message) cannot count either.
	a.step(ackMsg("b", a.term, x, a.seq))
	if a.commit >= x || a.prs["b"].inc != 2 || a.prs["b"].match != 0 {
		t.Fatalf("late ack of b/2: commit %d, b's progress inc %d match %d", a.commit, a.prs["b"].inc, a.prs["b"].match)
	}
	a.step(ackMsg("c", a.term, x, a.seq))
	if rd := a.takeReady(); a.commit != x || len(rd.Reads) != 1 {
		t.Fatalf("with c's ack: commit %d (want %d), released %v", a.commit, x, rd.Reads)
	}
}

// TestCoreIncarnationAutoRejoin: with autoRejoin the leader catches a
// restarted voter up and commits a configuration naming its new incarnation;
// from then on it counts again.
func TestCoreIncarnationAutoRejoin(t *testing.T) {
	n := newCluster(t, 47, names3)
	l := n.forceLeader("a")
	n.settle(100)
	for i := 0; i < 5; i++ {
		l.propose(normal([]byte(fmt.Sprint(i))))
	}
	n.collect("a")
	n.deliverAll()
	c2 := n.start("c", testCoreConfig("c", []string{"a", "b", "c"}, 888, n.rng))
	for i := 0; i < 100; i++ {
		if v, _ := l.committedConfig().find("c"); v.Inc == 888 {
			break
		}
		n.tickAll(1)
	}
	if v, _ := l.committedConfig().find("c"); v.Inc != 888 {
		t.Fatalf("c is %d in the committed configuration, want 888", v.Inc)
	}
	if c2.removed || c2.log.lastIndex() != l.log.lastIndex() || n.leader() != l {
		t.Fatalf("the new c: removed=%v last %d (leader's %d); leader %s", c2.removed, c2.log.lastIndex(), l.log.lastIndex(), n.leader().cfg.name)
	}
	// c/888 counts: with b cut off, a and c commit.
	n.cut("a", "b")
	x, _, _ := l.propose(normal([]byte("x")))
	n.collect("a")
	n.deliverAll()
	if l.commit < x {
		t.Fatalf("a and c/888 did not commit x: commit %d, x at %d", l.commit, x)
	}
	n.healAll()
	n.tickAll(5)
	if got := normalData(n.applied["c"]); len(got) != 6 || got[5] != "x" {
		t.Fatalf("the new c applied %v", got)
	}
	n.appliedAgree()
}

// TestCoreIncarnationVoteForOldIncarnationIgnored: a vote granted to an
// earlier incarnation of a candidate must not count for the new one. c/3
// asks a for its vote in term 2 and a grants it; c restarts blank as c/33,
// campaigns (TriggerElection twice brings it to term 2), and a's answer,
// addressed by name only, reaches c/33. The answer does not say which
// incarnation it was for, so c/33 counts it and leads term 2 with an empty
// log; a, whose committed entries 1-2 differ, acknowledges c/33's entries
// 1-2 (handleAppendEntries skips what it committed), and c/33 commits them:
// two different committed entries at the same indexes.
func TestCoreIncarnationVoteForOldIncarnationIgnored(t *testing.T) {
	a := testCore(t, "a", names3)
	followerWithLog(t, a, 1, []uint64{1, 1}, 2) // committed by leader b
	req := voteMsg(MsgVote, "c", 2, 2, 1)
	req.Force = true // TriggerElection on c/3
	a.step(req)
	grant := onlyMsg(t, a.takeReady().Messages, MsgVoteResp, "c")
	if grant.Reject {
		t.Fatalf("setup: a refused c/3: %s", dumpMsgs([]Message{grant}))
	}

	c := testCore(t, "c", names3, withInc(33)) // c restarted, blank
	c.triggerElection()
	c.triggerElection()
	c.takeReady()
	if c.term != 2 || c.role != Candidate || c.log.lastIndex() != 0 {
		t.Fatalf("setup: c/33 is %v in term %d with %d entries", c.role, c.term, c.log.lastIndex())
	}
	c.step(grant) // the answer meant for c/3
	if c.role == Leader {
		msg := fmt.Sprintf("c/33 leads term %d with an empty log, counting a's vote for c/3", c.term)
		// Show what follows: c/33 commits entries that contradict a's.
		net := connect(t, a, c)
		net.collect("c")
		net.deliverAll()
		if c.commit >= 2 && a.commit >= 2 && c.log.at(2).Term != a.log.at(2).Term {
			msg += fmt.Sprintf("; then c/33 commits index 2 of term %d while a committed index 2 of term %d",
				c.log.at(2).Term, a.log.at(2).Term)
		}
		t.Fatal(msg)
	}
}

// TestCoreIncarnationAutoRejoinAfterVotingForLeader: autoRejoin must
// re-admit a restarted voter whichever way the leader first learns its new
// incarnation. Here c restarts blank as c/33 and its (uncounted) vote
// reaches b before a's counted one: becomeLeader copies the incarnation of
// every granted vote into the progress, so c/33's append responses carry the
// incarnation the progress already has, noticeIncarnation never runs, and
// the leader never binds c/33: the cluster is left with one voter short
// for good.
func TestCoreIncarnationAutoRejoinAfterVotingForLeader(t *testing.T) {
	a := testCore(t, "a", names3)
	b := testCore(t, "b", names3)
	c := testCore(t, "c", names3, withInc(33)) // c/3 restarted, blank
	boundFollower(t, a, names3)
	boundFollower(t, b, names3)
	if err := b.triggerElection(); err != nil {
		t.Fatal(err)
	}
	reqs := b.takeReady().Messages
	net := connect(t, a, b, c)
	// c/33 answers first, then a.
	net.send(msgsOf(reqs, MsgVote, "c")...)
	net.deliverAll()
	if b.role != Candidate || c.votedFor != "b" {
		t.Fatalf("setup: after c/33's vote b is %v (c voted %q)", b.role, c.votedFor)
	}
	net.send(msgsOf(reqs, MsgVote, "a")...)
	net.deliverDropping(func(m Message) bool { return m.Type == MsgApp })
	if b.role != Leader {
		t.Fatalf("setup: b is %v", b.role)
	}
	for i := 0; i < 200; i++ {
		for _, name := range []string{"a", "b", "c"} {
			net.tick(name, 1)
			net.deliverAll()
		}
	}
	if b.role != Leader || c.log.lastIndex() != b.log.lastIndex() {
		t.Fatalf("b %v, c/33 holds %d of %d entries", b.role, c.log.lastIndex(), b.log.lastIndex())
	}
	if v, _ := b.committedConfig().find("c"); v.Inc != 33 {
		t.Fatalf("after 200 ticks c/33 is caught up but the committed configuration names c/%d (progress inc %d, joining=%v)",
			v.Inc, b.prs["c"].inc, b.prs["c"].joining)
	}
}

// TestCoreIncarnationRejoinKeepsQuorumsOverlapping: re-admitting a restarted
// voter must never let two quorums miss each other. c leads term 1 and
// appends X at index 2, then is cut off from a; a leads term 2 with b's
// vote and commits its own entry at index 2. b restarts blank as b/22, and
// c, which has not heard of term 2, reaches b/22 alone. Swapping b/2 for
// b/22 in one configuration entry would let c commit X with b/22's
// acknowledgement: a quorum of {a, b/22, c} and one of {a, b/2, c} need not
// share a server. Re-admission takes two steps instead, and the first, a
// configuration without b, needs a quorum c cannot reach.
func TestCoreIncarnationRejoinKeepsQuorumsOverlapping(t *testing.T) {
	a, b, c := testCore(t, "a", names3), testCore(t, "b", names3), testCore(t, "c", names3)
	net := connect(t, a, b, c)
	elect(t, c, "a")
	net.collect("c")
	net.deliverAll()
	c.propose(normal([]byte("X")))
	c.takeReady() // X reaches nobody: c is cut off from here on

	require.NoError(t, a.triggerElection())
	withoutC := func(m Message) bool { return m.To == "c" || m.From == "c" }
	net.collect("a")
	net.deliverDropping(withoutC)
	require.Equal(t, Leader, a.role)
	a.propose(normal([]byte("V")))
	net.collect("a")
	net.deliverDropping(withoutC)
	require.Greater(t, a.commit, uint64(1), "a commits in term %d", a.term)

	b22 := newCore(testCoreConfig("b", names3, 22, rand.New(rand.NewPCG(1, 2))))
	b22.takeReady()
	net.put("b", b22) // b restarted blank
	onlyCAndB := func(m Message) bool {
		return !(m.From == "c" && m.To == "b" || m.From == "b" && m.To == "c")
	}
	c.propose(normal([]byte("Y")))
	net.collect("c")
	net.deliverDropping(onlyCAndB)
	for range 5 {
		c.bcastHeartbeat()
		net.collect("c")
		net.deliverDropping(onlyCAndB)
	}
	for i := uint64(1); i <= min(a.commit, c.commit); i++ {
		ta, _ := a.log.term(i)
		tc, _ := c.log.term(i)
		require.Equal(t, ta, tc, "index %d committed in term %d on a and term %d on c", i, ta, tc)
	}
	v, ok := c.committedConfig().find("b")
	require.True(t, ok && v.Inc == incOf["b"], "c committed a configuration with b as %+v", v)
}

// TestCoreIncarnationRejoinSteps: in a cluster of three a restarted voter is
// re-admitted in two configuration entries, without it and then with its new
// incarnation; in a cluster of two, where any two quorums overlap, in one.
func TestCoreIncarnationRejoinSteps(t *testing.T) {
	for _, tc := range []struct {
		names []string
		steps int
	}{{names3, 2}, {[]string{"a", "b"}, 1}} {
		n := newCluster(t, 5, tc.names)
		l := n.forceLeader("a")
		n.settle(100)
		before := l.log.lastIndex()
		n.start("b", testCoreConfig("b", tc.names, 777, n.rng))
		for i := 0; i < 200; i++ {
			if v, _ := l.committedConfig().find("b"); v.Inc == 777 {
				break
			}
			n.tickAll(1)
		}
		v, _ := l.committedConfig().find("b")
		require.Equal(t, uint64(777), v.Inc, "%d servers: b/777 re-admitted", len(tc.names))
		var confs []string
		for i := before + 1; i <= l.log.lastIndex(); i++ {
			if e := l.log.at(i); e.Type == EntryConfig {
				m, err := decodeMembership(e.Data)
				require.NoError(t, err)
				confs = append(confs, voterNames(m))
			}
		}
		assert.Len(t, confs, tc.steps, "%d servers: configuration entries %v", len(tc.names), confs)
	}
}

// removalState is how far the configuration that lists a restarted voter
// as a learner got before the leader changed.
type removalState uint8

const (
	removalCommitted removalState = iota
	removalAppended               // to the leader and one follower
)

func (r removalState) String() string {
	if r == removalCommitted {
		return "listing committed"
	}
	return "listing appended"
}

// startReadmission runs a, b, c with a leading until a has appended the
// configuration that lists c, restarted as c/777, as a learner to be
// re-admitted, and returns the network, a, and c/777. From that moment
// nothing reaches c or comes from it, so a cannot admit it, and c ends cut
// off; with removalAppended b's acknowledgements stop reaching a too, so the
// configuration reaches b but does not commit.
func startReadmission(t *testing.T, state removalState) (*network, *core, *core) {
	n := newCluster(t, 61, names3)
	a := n.forceLeader("a")
	n.settle(100)
	for i := range 3 {
		a.propose(normal([]byte(fmt.Sprint(i))))
	}
	n.collect("a")
	n.deliverAll()
	c2 := n.start("c", testCoreConfig("c", names3, 777, n.rng))
	listed := func() bool { _, ok := a.self.findLearner("c"); return ok }
	stop := func(m Message) bool {
		return listed() && (m.To == "c" || m.From == "c" || state == removalAppended && m.From == "b" && m.To == "a")
	}
	for i := 0; i < 200 && !listed(); i++ {
		n.tickEach()
		n.deliverDropping(stop)
	}
	require.True(t, listed(), "a did not start re-admitting c: its configuration is %+v", a.self)
	_, bLists := n.cores["b"].self.findLearner("c")
	require.True(t, bLists, "b did not receive the configuration listing c as a learner")
	require.Equal(t, state == removalCommitted, a.commit >= a.pendingConf, "the configuration listing c committed")
	n.isolate("c")
	return n, a, c2
}

// awaitVoter ticks the network until its leader has committed a
// configuration with name as incarnation inc and name holds the leader's
// log, or max ticks; it returns the leader.
func awaitVoter(t *testing.T, n *network, name string, inc uint64, max int) *core {
	t.Helper()
	for i := 0; i < max; i++ {
		if l := n.leader(); l != nil {
			if v, ok := l.committedConfig().find(name); ok && v.Inc == inc && n.cores[name].log.lastIndex() == l.log.lastIndex() {
				return l
			}
		}
		n.tickAll(1)
	}
	l := n.leader()
	require.NotNil(t, l, "no leader after %d ticks", max)
	v, ok := l.committedConfig().find(name)
	t.Fatalf("after %d ticks leader %s (term %d) has %s as %+v (a voter: %v) in its committed configuration %+v; %s holds %d of %d entries",
		max, l.cfg.name, l.term, name, v, ok, l.committedConfig(), name, n.cores[name].log.lastIndex(), l.log.lastIndex())
	return nil
}

// TestCoreIncarnationRejoinSurvivesLeaderChange: the re-admission of a
// restarted voter is the cluster's, not its leader's. a starts re-admitting
// c/777 with the configuration that lists it as a learner, then loses the
// leadership to b before it admits c; b must finish the re-admission. If
// the learner were a's alone, b's configuration would lack c and b would
// never replicate to it again, while c, no voter of its own configuration,
// waited for ever. Whether that configuration had committed when the
// leadership changed or was only appended makes no difference.
func TestCoreIncarnationRejoinSurvivesLeaderChange(t *testing.T) {
	for _, state := range []removalState{removalCommitted, removalAppended} {
		t.Run(state.String(), func(t *testing.T) {
			n, _, c2 := startReadmission(t, state)
			n.forceLeader("b")
			n.healAll()
			awaitVoter(t, n, "c", 777, 300)
			require.False(t, c2.removed, "c/777 is not a voter of its configuration")
			n.requireOneLeaderPerTerm()
			n.appliedAgree()
		})
	}
}

// TestCoreIncarnationLearnerNeitherVotesNorCounts: a learner of the
// configuration waits to be admitted: it never campaigns, however long it
// hears from no leader, and its acknowledgements commit nothing.
// (Were it counted, a and c/777 would commit x; admitting c waits for the
// configuration that lists it to commit.)
func TestCoreIncarnationLearnerNeitherVotesNorCounts(t *testing.T) {
	n, a, c2 := startReadmission(t, removalAppended)
	n.tick("c", 10*c2.cfg.electionMax)
	require.Equal(t, Follower, c2.role)
	require.Zero(t, c2.counts.PreVotes+c2.counts.Elections, "the learner campaigned")

	n.heal("a", "c")
	n.cutOneWay("b", "a")
	x, _, err := a.propose(normal([]byte("x")))
	require.NoError(t, err)
	n.collect("a")
	n.deliverAll()
	n.tickAll(2 * a.cfg.heartbeat)
	require.Equal(t, x, a.prs["c"].match, "the learner did not acknowledge x")
	require.Less(t, a.commit, x, "a committed x with the learner's acknowledgement")
	n.healAll()
	awaitVoter(t, n, "c", 777, 300)
}

// TestCoreIncarnationRemoveServerEndsRejoin: RemoveServer of a learner of
// the configuration takes it out of the configuration, and so no leader
// re-admits it, this one or the next.
func TestCoreIncarnationRemoveServerEndsRejoin(t *testing.T) {
	n, a, _ := startReadmission(t, removalCommitted)
	idx, err := a.removeServer("c")
	require.NoError(t, err)
	require.NotZero(t, idx, "RemoveServer of a learner appended no configuration")
	n.collect("a")
	n.deliverAll()
	require.GreaterOrEqual(t, a.commit, idx)
	n.healAll()
	for _, next := range []string{"a", "b"} {
		if n.leader().cfg.name != next {
			n.forceLeader(next)
		}
		n.tickAll(100)
		l := n.leader()
		require.NotNil(t, l)
		require.Equal(t, membership{Voters: l.committedConfig().Voters}, l.configs[len(l.configs)-1].m, "learners left after RemoveServer")
		require.Equal(t, "[a b]", voterNames(l.committedConfig()))
		require.Nil(t, l.prs["c"], "leader %s still catches c up", l.cfg.name)
		_, err = l.removeServer("c")
		require.ErrorIs(t, err, ErrUnknownServer)
	}
}

// TestCoreIncarnationRejoinIsNoAddServersToCancel: AddServer of a learner of
// the configuration finds it being re-admitted (at its own address; another
// address is refused as for a voter), and CancelJoin, which ends what an
// AddServer started, leaves the re-admission going.
func TestCoreIncarnationRejoinIsNoAddServersToCancel(t *testing.T) {
	n, a, _ := startReadmission(t, removalCommitted)
	require.ErrorIs(t, a.addServer(Peer{Name: "c", Addr: "elsewhere"}), ErrNameTaken)
	require.NoError(t, a.addServer(Peer{Name: "c", Addr: "c"}))
	require.Equal(t, Join{Pending: true, Known: true}, a.joinState("c"))
	a.cancelJoin("c")
	n.healAll()
	awaitVoter(t, n, "c", 777, 300)
}

// TestCoreIncarnationCancelJoinKeepsAutoRejoin: with autoRejoin the leader
// re-admits a restarted voter whether or not anyone asked; an AddServer of
// it that its caller gave up on (CancelJoin) must not call that off. Before,
// it did, and nothing would start it again while the leader lasted.
func TestCoreIncarnationCancelJoinKeepsAutoRejoin(t *testing.T) {
	n := newCluster(t, 67, names3)
	a := n.forceLeader("a")
	n.settle(100)
	n.isolate("c")
	n.start("c", testCoreConfig("c", names3, 777, n.rng))
	n.heal("a", "c")
	// a hears c/777, and from then on nothing reaches c or comes from it.
	noticed := func(m Message) bool { return a.prs["c"].joining && (m.To == "c" || m.From == "c") }
	for i := 0; i < 50 && !a.prs["c"].joining; i++ {
		n.tickEach()
		n.deliverDropping(noticed)
	}
	require.True(t, a.prs["c"].joining, "a did not notice c/777")
	_, ok := a.self.find("c")
	require.True(t, ok, "setup: a started re-admitting c already")
	require.NoError(t, a.addServer(Peer{Name: "c", Addr: "c"}))
	a.cancelJoin("c")
	n.healAll()
	awaitVoter(t, n, "c", 777, 300)
}

// TestCoreIncarnationNoticedRestartIsListed: the moment the leader hears a
// voter answer as a new incarnation, it lists the server among those it
// catches up (Learners, refreshed by the driver when Epoch moves), so that
// nobody takes the old incarnation in the configuration for the new one
// already re-admitted.
func TestCoreIncarnationNoticedRestartIsListed(t *testing.T) {
	a := leaderOfThree(t)
	n := &Node{c: a}
	epoch := n.Status().Epoch
	ack := ackMsg("c", a.term, 0, 0)
	ack.FromInc = 333 // c restarted blank
	a.step(ack)
	if n.Status().Epoch == epoch {
		t.Fatalf("Epoch stayed %d after a voter answered as a new incarnation", epoch)
	}
	if ls := n.Learners(); len(ls) != 1 || ls[0].Name != "c" {
		t.Fatalf("Learners %v, want c being caught up", ls)
	}
}
