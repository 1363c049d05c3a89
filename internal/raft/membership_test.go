package raft

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// Tests of membership (membership.go): single-server changes (thesis §4.1),
// quorum sizes (MinMajority, bootstrap unanimity: docs/design.md §3, §6),
// and removed servers, which must not disturb the cluster (thesis §4.2.3).
// Each test fails when its rule is taken out.

// TestCoreMinMajorityElection: with MinMajority 3 in a three-server cluster
// a candidate needs all three votes.
func TestCoreMinMajorityElection(t *testing.T) {
	for _, mm := range []int{0, 3} {
		a := testCore(t, "a", names3, withMinMajority(mm))
		if err := a.triggerElection(); err != nil {
			t.Fatal(err)
		}
		a.step(msgFrom(MsgVoteResp, "b", 1))
		if got, want := a.role, map[int]Role{0: Leader, 3: Candidate}[mm]; got != want {
			t.Fatalf("minMajority %d, votes of a and b: %v, want %v", mm, got, want)
		}
		if mm == 3 {
			a.step(msgFrom(MsgVoteResp, "c", 1))
			if a.role != Leader {
				t.Fatalf("minMajority 3, votes of a, b, c: %v, want leader", a.role)
			}
		}
	}
}

// TestCoreMinMajorityCommit: with MinMajority 3 in a three-server cluster a
// leader cut off from one follower commits nothing more (and, as no quorum
// is left once that follower is cut off from everyone, no one does).
func TestCoreMinMajorityCommit(t *testing.T) {
	for _, mm := range []int{0, 3} {
		t.Run(fmt.Sprint("minMajority=", mm), func(t *testing.T) {
			n := newCluster(t, 21, names3, withMinMajority(mm))
			a := n.forceLeader("a")
			l := n.settle(100)
			if l != a {
				t.Fatalf("setup: leader %s", l.cfg.name)
			}
			n.isolate("c")
			before := a.commit
			idx, _, err := a.propose(normal([]byte("x")))
			if err != nil {
				t.Fatal(err)
			}
			n.collect("a")
			n.deliverAll()
			if committed := a.commit >= idx; committed != (mm == 0) {
				t.Fatalf("a with b only: commit %d (was %d), entry at %d; want committed=%v", a.commit, before, idx, mm == 0)
			}
			n.tickAll(200)
			applied := false
			for _, cmd := range normalData(n.appliedAgree()) {
				applied = applied || cmd == "x"
			}
			if applied != (mm == 0) {
				t.Fatalf("x applied=%v after 200 ticks, want %v", applied, mm == 0)
			}
		})
	}
}

// TestCoreMinMajoritySingleServer: a lone server with MinMajority 0 or 1
// leads at once; with 2 it never campaigns.
func TestCoreMinMajoritySingleServer(t *testing.T) {
	for _, mm := range []int{0, 1, 2} {
		t.Run(fmt.Sprint("minMajority=", mm), func(t *testing.T) {
			a := testCore(t, "a", []string{"a"}, withMinMajority(mm))
			if mm < 2 {
				if a.role != Leader || a.term != 1 {
					t.Fatalf("right after newCore: %v in term %d, want leader in term 1", a.role, a.term)
				}
				idx, _, err := a.propose(normal([]byte("x")))
				if rd := a.takeReady(); err != nil || a.commit != idx || len(rd.Committed) != 1 || string(rd.Committed[0].Data) != "x" {
					t.Fatalf("propose on a lone leader: err %v, commit %d (entry %d)", err, a.commit, idx)
				}
				return
			}
			for i := 0; i < 1000; i++ {
				a.tick()
				if rd := a.takeReady(); len(rd.Messages) != 0 {
					t.Fatalf("tick %d: sent %s", i, dumpMsgs(rd.Messages))
				}
			}
			if a.role != Follower || a.term != 0 {
				t.Fatalf("after 1000 ticks: %v in term %d, want follower in term 0", a.role, a.term)
			}
			if err := a.triggerElection(); !errors.Is(err, ErrNotVoter) || a.role != Follower || a.term != 0 {
				t.Fatalf("triggerElection: %v, %v in term %d; want errNotVoter", err, a.role, a.term)
			}
		})
	}
}

// TestCoreAddServerCatchesUpLearnerFirst: AddServer catches the server up as
// a learner that is not a voter and does not count in the quorum, and only
// then commits a configuration that makes it a voter.
func TestCoreAddServerCatchesUpLearnerFirst(t *testing.T) {
	n := newCluster(t, 29, names3)
	l := n.settle(100)
	name := l.cfg.name
	d := n.addJoiner("d", 4444)
	n.cut(name, "d")
	last := l.log.lastIndex()
	if err := l.addServer(Peer{Name: "d", Addr: "d"}); err != nil {
		t.Fatal(err)
	}
	n.collect(name)
	n.deliverAll()
	n.tick(name, 6)
	n.deliverAll()
	pr := l.prs["d"]
	if pr == nil || !pr.learner {
		t.Fatalf("d has no learner progress: %+v", pr)
	}
	if _, ok := l.self.find("d"); ok || l.quorum() != 2 || l.log.lastIndex() != last || len(l.learners()) != 1 {
		t.Fatalf("before d caught up: voters %+v, quorum %d, last %d (was %d)", l.self.Voters, l.quorum(), l.log.lastIndex(), last)
	}
	// The learner can reach the leader, the voters cannot: what only the
	// leader and the learner hold is not committed.
	for _, o := range n.names {
		if o != name {
			n.cut(name, o)
		}
	}
	n.heal(name, "d")
	x, _, _ := l.propose(normal([]byte("x")))
	n.collect(name)
	n.deliverAll()
	n.tick(name, 4)
	n.deliverAll()
	if d.log.lastIndex() < x {
		t.Fatalf("d was not caught up: last %d, want >= %d", d.log.lastIndex(), x)
	}
	if l.commit >= x {
		t.Fatalf("x (index %d) committed by the leader and a learner: commit %d", x, l.commit)
	}
	// Caught up: a configuration naming d (with its incarnation) is in the
	// log after x, and commits once the voters are back.
	n.healAll()
	for i := 0; i < 50; i++ {
		if v, ok := l.committedConfig().find("d"); ok && v.Inc == 4444 {
			break
		}
		n.tickAll(1)
	}
	if v, ok := l.committedConfig().find("d"); !ok || v.Inc != 4444 || l.configs[len(l.configs)-1].index <= x {
		t.Fatalf("committed configuration %+v, want d/4444 in an entry after %d", l.committedConfig().Voters, x)
	}
	if d.removed || len(d.self.Voters) != 4 || l.quorum() != 3 {
		t.Fatalf("d: removed=%v voters %+v; leader quorum %d", d.removed, d.self.Voters, l.quorum())
	}
	n.tickAll(5)
	if got := normalData(n.applied["d"]); len(got) != 1 || got[0] != "x" {
		t.Fatalf("d applied %v, want [x]", got)
	}
}

// TestCoreMembershipOneChangeAtATime: a change is refused with errConfBusy
// while another is uncommitted, and a server being added waits for it.
func TestCoreMembershipOneChangeAtATime(t *testing.T) {
	n := newCluster(t, 31, names3)
	l := n.forceLeader("a")
	n.settle(100)
	n.addJoiner("d", 4444)
	n.isolate("a")
	idx, err := l.removeServer("c")
	if err != nil || idx != l.log.lastIndex() {
		t.Fatalf("removeServer(c): %d, %v", idx, err)
	}
	if _, err := l.removeServer("b"); !errors.Is(err, ErrConfBusy) {
		t.Fatalf("second removeServer while the first is uncommitted: %v, want errConfBusy", err)
	}
	// d catches up meanwhile, but its configuration waits.
	if err := l.addServer(Peer{Name: "d", Addr: "d"}); err != nil {
		t.Fatal(err)
	}
	n.heal("a", "d")
	n.collect("a")
	n.deliverAll()
	n.tick("a", 4)
	n.deliverAll()
	if l.prs["d"].match != idx || l.log.lastIndex() != idx || l.commit >= idx {
		t.Fatalf("d match %d, leader last %d commit %d; want d caught up to %d and no new entry", l.prs["d"].match, l.log.lastIndex(), l.commit, idx)
	}
	n.healAll()
	for i := 0; i < 50 && voterNames(l.committedConfig()) != "[a b d]"; i++ {
		n.tickAll(1)
	}
	if names := voterNames(l.committedConfig()); names != "[a b d]" || l.commit != l.log.lastIndex() {
		t.Fatalf("committed configuration %s (commit %d last %d), want [a b d] after both changes", names, l.commit, l.log.lastIndex())
	}
}

// TestCoreMembershipNeedsCommittedEntryOfTerm: no change before the leader
// committed an entry of its term.
func TestCoreMembershipNeedsCommittedEntryOfTerm(t *testing.T) {
	a := testCore(t, "a", names3)
	followerWithLog(t, a, 1, []uint64{1, 1}, 0)
	elect(t, a, "b")
	last := a.log.lastIndex()
	if _, err := a.removeServer("c"); !errors.Is(err, ErrNotCommittedYet) {
		t.Fatalf("removeServer before the no-op committed: %v, want errNotCommittedYet", err)
	}
	a.step(ackMsg("b", a.term, 2, 0)) // entries of term 1 only
	if _, err := a.removeServer("c"); !errors.Is(err, ErrNotCommittedYet) || a.log.lastIndex() != last {
		t.Fatalf("removeServer with only term-1 entries on a quorum: %v, want errNotCommittedYet", err)
	}
	a.step(ackMsg("b", a.term, last, 0))
	if idx, err := a.removeServer("c"); err != nil || idx != last+1 {
		t.Fatalf("removeServer after the no-op committed: %d, %v", idx, err)
	}
}

// TestCoreRemoveServerErrors: the last voter cannot be removed, nor a server
// that is not a member.
func TestCoreRemoveServerErrors(t *testing.T) {
	solo := testCore(t, "a", []string{"a"})
	if _, err := solo.removeServer("a"); !errors.Is(err, ErrLastServer) {
		t.Fatalf("removing the only voter: %v, want ErrLastServer", err)
	}
	if _, err := solo.removeServer("z"); !errors.Is(err, ErrUnknownServer) {
		t.Fatalf("removing a non-member from one server: %v, want ErrUnknownServer", err)
	}
	a := leaderOfThree(t)
	last := a.log.lastIndex()
	if _, err := a.removeServer("z"); !errors.Is(err, ErrUnknownServer) || a.log.lastIndex() != last {
		t.Fatalf("removing a non-member: %v, want ErrUnknownServer and no entry", err)
	}
	if solo.role != Leader || len(solo.self.Voters) != 1 {
		t.Fatal("the lone server changed")
	}
}

// TestCoreRemoveLeaderHandsOver: a leader that removes itself commits the
// change, then sends TimeoutNow to the most up-to-date voter and steps
// down; that voter becomes the leader, and the old one keeps quiet.
func TestCoreRemoveLeaderHandsOver(t *testing.T) {
	n := newCluster(t, 37, []string{"a", "b", "c", "d"})
	a := n.forceLeader("a")
	n.settle(100)
	term := a.term
	// b falls behind; c and d cannot hear a for now.
	n.cutOneWay("a", "b")
	n.cut("a", "c")
	n.cut("a", "d")
	a.propose(normal([]byte("y")))
	idx, err := a.removeServer("a")
	if err != nil {
		t.Fatal(err)
	}
	isTimeoutNow := func(m Message) bool { return m.Type == MsgTimeoutNow }
	n.collect("a")
	if k := n.deliverCounting(isTimeoutNow); k != 0 || a.role != Leader || a.commit >= idx {
		t.Fatalf("before the removal committed: %d TimeoutNow, a %v commit %d", k, a.role, a.commit)
	}
	n.heal("a", "c")
	n.heal("a", "d")
	var to []string
	for i := 0; i < 10 && a.role == Leader; i++ {
		n.tick("a", 1)
		n.deliverCounting(func(m Message) bool {
			if isTimeoutNow(m) {
				to = append(to, m.To)
				if a.commit < idx {
					t.Errorf("TimeoutNow sent before the removal (index %d) committed", idx)
				}
			}
			return false
		})
	}
	if len(to) != 1 || to[0] != "c" {
		t.Fatalf("TimeoutNow sent to %v, want [c] (b is behind, c and d hold everything)", to)
	}
	c := n.cores["c"]
	if a.role != Follower || !a.removed || c.role != Leader || c.term != term+1 {
		t.Fatalf("a is %v (removed=%v), c is %v in term %d; want c leading term %d", a.role, a.removed, c.role, c.term, term+1)
	}
	if _, ok := c.self.find("a"); ok {
		t.Fatal("a is still in the new leader's configuration")
	}
	n.healAll()
	n.tickAll(200)
	n.requireOneLeaderPerTerm()
	if n.leader() != c || c.term != term+1 || a.role != Follower {
		t.Fatalf("after 200 ticks: leader %s term %d, a %v", n.leader().cfg.name, n.leader().term, a.role)
	}
	if got := normalData(n.appliedAgree()); len(got) != 1 || got[0] != "y" {
		t.Fatalf("applied %v, want [y]", got)
	}
}

// TestCoreNonMemberVoteRequestsRejected: a vote or pre-vote request from a
// server that is not a voter (or from an incarnation that is not the
// configured one) is refused and moves neither the term nor the vote, even
// on a server that knows no leader.
func TestCoreNonMemberVoteRequestsRejected(t *testing.T) {
	cases := []struct {
		name  string
		typ   MessageType
		from  string
		inc   uint64
		term  uint64
		force bool
	}{
		{"vote, higher term", MsgVote, "d", 4, 9, false},
		{"forced vote, higher term", MsgVote, "d", 4, 9, true},
		{"vote, same term", MsgVote, "d", 4, 3, false},
		{"pre-vote", MsgPreVote, "d", 4, 9, false},
		{"vote from a new incarnation of a voter", MsgVote, "c", 33, 9, false},
		{"pre-vote from a new incarnation of a voter", MsgPreVote, "c", 33, 4, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := testCore(t, "a", names3)
			boundFollower(t, a, names3)
			a.term, a.lead = 3, "" // no leader known: no lease
			// A log exactly as up to date as the voter's: enough for a
			// member, not for a server outside the configuration.
			m := voteMsg(tc.typ, tc.from, tc.term, a.log.lastIndex(), a.log.lastTerm())
			m.FromInc, m.Force = tc.inc, tc.force
			a.step(m)
			r := onlyMsg(t, a.takeReady().Messages, voteRespType(tc.typ), tc.from)
			if !r.Reject || r.Term != 3 || a.term != 3 || a.votedFor != "" || a.role != Follower {
				t.Fatalf("answer %s; voter %v in term %d, vote %q; want a refusal in term 3 and no change",
					dumpMsgs([]Message{r}), a.role, a.term, a.votedFor)
			}
		})
	}
}

// TestCoreVoteForAddedServerWithNewerLog: a voter whose configuration lags
// (it has not received the entry that added d) still votes for d when d's
// log is strictly newer, so that a live majority can always elect someone.
func TestCoreVoteForAddedServerWithNewerLog(t *testing.T) {
	for _, typ := range []MessageType{MsgPreVote, MsgVote} {
		a := testCore(t, "a", names3)
		boundFollower(t, a, names3)
		a.term, a.lead = 3, ""
		m := voteMsg(typ, "d", 4, a.log.lastIndex()+2, a.log.lastTerm())
		m.FromInc = 4
		a.step(m)
		r := onlyMsg(t, a.takeReady().Messages, voteRespType(typ), "d")
		if r.Reject {
			t.Fatalf("%v from d with a newer log refused: %s", typ, dumpMsgs([]Message{r}))
		}
	}
}

// TestCoreRemovedServerKeepsQuiet: a server that knows it was removed never
// campaigns, however long it ticks.
func TestCoreRemovedServerKeepsQuiet(t *testing.T) {
	n := newCluster(t, 53, names3)
	l := n.forceLeader("a")
	n.settle(100)
	if _, err := l.removeServer("c"); err != nil {
		t.Fatal(err)
	}
	n.collect("a")
	n.deliverAll()
	c := n.cores["c"]
	if !c.removed || l.commit != l.log.lastIndex() {
		t.Fatalf("setup: c removed=%v, leader commit %d last %d", c.removed, l.commit, l.log.lastIndex())
	}
	term := l.term
	for i := 0; i < 300; i++ {
		if k := n.tickCounting(func(m Message) bool { return m.From == "c" }); k != 0 {
			t.Fatalf("tick %d: the removed c sent %d messages", i, k)
		}
	}
	if c.role != Follower || n.leader() != l || l.term != term || n.cores["b"].term != term {
		t.Fatalf("after 300 ticks: c %v, leader %s term %d", c.role, n.leader().cfg.name, n.leader().term)
	}
}

// TestCoreRemovedServerUnawareDoesNotRaiseTerms: a server removed while cut
// off never learns it; it keeps timing out, but its requests move no
// member's term — not with a leader in place (even when it is made to force
// an election), and not when the only member left cannot elect anyone and so
// knows no leader.
func TestCoreRemovedServerUnawareDoesNotRaiseTerms(t *testing.T) {
	n := newCluster(t, 59, names3)
	a := n.forceLeader("a")
	n.settle(100)
	n.isolate("c")
	if _, err := a.removeServer("c"); err != nil {
		t.Fatal(err)
	}
	n.collect("a")
	n.deliverAll()
	c := n.cores["c"]
	if c.removed || a.commit != a.log.lastIndex() {
		t.Fatalf("setup: c removed=%v, leader commit %d last %d", c.removed, a.commit, a.log.lastIndex())
	}
	term, cterm := a.term, c.term
	n.tickAll(100)
	n.healAll()
	requests := 0
	for i := 0; i < 300; i++ {
		requests += n.tickCounting(func(m Message) bool { return m.From == "c" && (m.Type == MsgPreVote || m.Type == MsgVote) })
	}
	b := n.cores["b"]
	if requests == 0 {
		t.Fatal("the scenario needs c to keep asking for votes")
	}
	if n.leader() != a || a.term != term || b.term != term || c.term != cterm {
		t.Fatalf("with a leader: terms a %d b %d c %d, want %d %d %d", a.term, b.term, c.term, term, term, cterm)
	}
	// Forced elections (TriggerElection on c, which believes it is a voter)
	// pass the lease, but not the membership check.
	for i := 0; i < 3; i++ {
		if err := c.triggerElection(); err != nil {
			t.Fatal(err)
		}
		n.collect("c")
		n.deliverAll()
		n.tickAll(3)
	}
	if n.leader() != a || a.term != term || b.term != term {
		t.Fatalf("after forced elections of c (term %d): terms a %d b %d, leader %v; want term %d",
			c.term, a.term, b.term, n.leader() == a, term)
	}
	cterm = c.term
	// a stops: b is alone in {a, b}, knows no leader, and hears c.
	delete(n.cores, "a")
	requests = 0
	for i := 0; i < 300; i++ {
		requests += n.tickCounting(func(m Message) bool { return m.From == "c" && m.To == "b" })
	}
	if requests == 0 || b.lead != "" {
		t.Fatalf("the scenario needs b without a leader (lead %q) and c asking it (%d requests)", b.lead, requests)
	}
	if b.term != term || c.term != cterm || b.role == Leader || c.role == Leader {
		t.Fatalf("without a leader: b %v in term %d, c %v in term %d; want terms %d and %d", b.role, b.term, c.role, c.term, term, cterm)
	}
}

// TestCoreBootstrapNeedsEveryVoter: a configuration that names servers only
// (a fresh InitialConfig, or a server restarted blank) elects only with the
// vote of every voter, so blank restarted servers cannot elect a leader
// with an empty log behind the back of the servers that hold the data. The
// first leader binds the incarnations, and majorities apply from then on.
func TestCoreBootstrapNeedsEveryVoter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	a := newCore(testCoreConfig("a", names3, incOf["a"], rng))
	a.takeReady()
	if err := a.triggerElection(); err != nil {
		t.Fatal(err)
	}
	a.step(msgFrom(MsgVoteResp, "b", a.term))
	if a.role == Leader {
		t.Fatal("a leads a names-only configuration with 2 votes of 3")
	}
	a.step(msgFrom(MsgVoteResp, "c", a.term))
	if a.role != Leader {
		t.Fatalf("a is %v with every vote, want leader", a.role)
	}
	last := a.log.at(a.log.lastIndex())
	m, err := decodeMembership(last.Data)
	if last.Type != EntryConfig || err != nil {
		t.Fatalf("the new leader's last entry is %v, want the configuration that binds incarnations", last.Type)
	}
	for _, v := range m.Voters {
		if v.Inc != incOf[v.Name] {
			t.Fatalf("binding configuration %+v, want every voter bound to the incarnation that voted", m.Voters)
		}
	}
	if q := a.self.quorum(0); q != 2 {
		t.Fatalf("quorum after binding: %d, want a majority of 2", q)
	}
}

// TestCoreUncommittedRemovalStillCampaigns: a server whose removal is in
// its log but not committed may hold entries no one else has; it must still
// campaign (without counting its own vote), or the cluster could stall.
func TestCoreUncommittedRemovalStillCampaigns(t *testing.T) {
	a := testCore(t, "a", names3)
	without := a.self.without("a")
	a.step(appendMsg("b", 2, 0, 0, 0, []Entry{{Index: 1, Term: 2, Type: EntryConfig, Data: encodeMembership(without)}}))
	a.takeReady()
	if !a.removed || a.commit != 0 {
		t.Fatalf("setup: removed=%v commit=%d", a.removed, a.commit)
	}
	for i := 0; i < 100 && a.role == Follower; i++ {
		a.tick()
	}
	if a.role != Candidate || !a.preVote {
		t.Fatalf("a with an uncommitted removal is %v after its election timeout, want a pre-candidate", a.role)
	}
	// The configuration in use is {b, c}: a needs both, its own vote
	// does not count, in the pre-vote and in the election.
	a.step(msgFrom(MsgPreVoteResp, "b", a.term+1))
	if !a.preVote {
		t.Fatal("a left the pre-vote with b's grant alone: it counted itself")
	}
	a.step(msgFrom(MsgPreVoteResp, "c", a.term+1))
	if a.preVote || a.role != Candidate {
		t.Fatalf("a is %v (pre-vote %v) with b's and c's pre-votes, want a candidate", a.role, a.preVote)
	}
	a.step(msgFrom(MsgVoteResp, "b", a.term))
	if a.role == Leader {
		t.Fatal("a leads with b's vote alone: it counted its own vote in a configuration without it")
	}
	a.step(msgFrom(MsgVoteResp, "c", a.term))
	if a.role != Leader {
		t.Fatalf("a is %v with the votes of b and c, want leader", a.role)
	}

	// Once the removal is committed, it stays quiet.
	q := testCore(t, "a", names3)
	q.step(appendMsg("b", 2, 0, 0, 1, []Entry{{Index: 1, Term: 2, Type: EntryConfig, Data: encodeMembership(without)}}))
	q.takeReady()
	for i := 0; i < 100; i++ {
		q.tick()
	}
	if q.role != Follower || q.term != 2 {
		t.Fatalf("a removed by a committed configuration is %v in term %d, want a quiet follower", q.role, q.term)
	}
}

// TestCoreLeaderHearsServersItCatchesUp: a leader takes a higher term from a
// server it is catching up, though that server is not in its configuration
// yet: it is no outsider to this leader (knows), and a leader that ignored
// it would never catch it up.
func TestCoreLeaderHearsServersItCatchesUp(t *testing.T) {
	a := testCore(t, "a", names3)
	elect(t, a, "b", "c")
	if err := a.addServer(Peer{Name: "d", Addr: "d"}); err != nil {
		t.Fatal(err)
	}
	a.takeReady()
	term := a.term
	a.step(Message{Type: MsgAppResp, From: "d", FromInc: 7, FromAddr: "d", To: "a", Term: term + 5, Reject: true})
	if a.term != term+5 || a.role != Follower {
		t.Fatalf("after d answered at term %d: term %d, %v; want to follow at that term", term+5, a.term, a.role)
	}
}
