package raft

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// Tests of elections (election.go): RequestVote's receiver (§5.2, §5.4.1), pre-vote
// (thesis §9.6), forced elections, and Election Safety.
// Each test fails when its rule is taken out.

// TestCoreVoteOncePerTerm: a voter grants one vote per term, to the same
// candidate (and incarnation) again if it asks again, to nobody else.
func TestCoreVoteOncePerTerm(t *testing.T) {
	a := testCore(t, "a", names3)
	steps := []struct {
		from  string
		inc   uint64
		grant bool
	}{
		{"b", incOf["b"], true},
		{"c", incOf["c"], false}, // second candidate, same term
		{"b", incOf["b"], true},  // the same candidate again (a lost answer)
		{"b", 77, false},         // b restarted: another incarnation, same term
		{"c", incOf["c"], false},
	}
	for i, s := range steps {
		m := voteMsg(MsgVote, s.from, 1, 0, 0)
		m.FromInc = s.inc
		a.step(m)
		resp := onlyMsg(t, a.takeReady().Messages, MsgVoteResp, s.from)
		if resp.Reject == s.grant {
			t.Fatalf("step %d: vote request from %s/%d: reject=%v, want grant=%v", i, s.from, s.inc, resp.Reject, s.grant)
		}
		if resp.Term != 1 || a.term != 1 || a.votedFor != "b" || a.votedInc != incOf["b"] {
			t.Fatalf("step %d: term %d (resp %d), vote %s/%d; want term 1, vote b/%d",
				i, a.term, resp.Term, a.votedFor, a.votedInc, incOf["b"])
		}
	}
}

// TestCoreVoteLogUpToDate: the election restriction, for votes and
// pre-votes alike; a request of a higher term moves the voter's term even
// when its candidate's log is stale.
func TestCoreVoteLogUpToDate(t *testing.T) {
	// The voter's log ends at index 3 in term 2.
	voterLog := []uint64{1, 1, 2}
	cases := []struct {
		name                string
		lastIndex, lastTerm uint64
		grant               bool
	}{
		{"lower last term, longer log", 10, 1, false},
		{"same last term, shorter log", 2, 2, false},
		{"empty log", 0, 0, false},
		{"same last term, same length", 3, 2, true},
		{"same last term, longer log", 5, 2, true},
		{"higher last term, shorter log", 1, 3, true},
	}
	for _, tc := range cases {
		for _, typ := range []MessageType{MsgVote, MsgPreVote} {
			t.Run(fmt.Sprintf("%v/%s", typ, tc.name), func(t *testing.T) {
				a := testCore(t, "a", names3)
				a.log.append(entries(1, voterLog...)...)
				a.term = 2 // no leader known: not in a lease
				a.step(voteMsg(typ, "b", 3, tc.lastIndex, tc.lastTerm))
				resp := onlyMsg(t, a.takeReady().Messages, voteRespType(typ), "b")
				if resp.Reject == tc.grant {
					t.Fatalf("reject=%v, want grant=%v", resp.Reject, tc.grant)
				}
				switch typ {
				case MsgVote:
					if a.term != 3 || a.role != Follower {
						t.Fatalf("voter is %v in term %d, want follower in term 3", a.role, a.term)
					}
					if tc.grant != (a.votedFor == "b") {
						t.Fatalf("votedFor %q after grant=%v", a.votedFor, tc.grant)
					}
				case MsgPreVote:
					if a.term != 2 || a.votedFor != "" {
						t.Fatalf("a pre-vote changed the voter: term %d, vote %q", a.term, a.votedFor)
					}
				}
			})
		}
	}
}

// TestCoreVoteHigherTermClearsVote: a request of a higher term makes a
// candidate a follower of that term and frees the vote it had cast.
func TestCoreVoteHigherTermClearsVote(t *testing.T) {
	a := testCore(t, "a", names3)
	if err := a.triggerElection(); err != nil {
		t.Fatal(err)
	}
	a.takeReady()
	if a.role != Candidate || a.term != 1 || a.votedFor != "a" {
		t.Fatalf("setup: %v term %d vote %q", a.role, a.term, a.votedFor)
	}
	// A candidate of term 2: a steps down and votes for it.
	a.step(voteMsg(MsgVote, "b", 2, 0, 0))
	if r := onlyMsg(t, a.takeReady().Messages, MsgVoteResp, "b"); r.Reject || r.Term != 2 {
		t.Fatalf("vote for b in term 2: %+v", r)
	}
	if a.role != Follower || a.term != 2 || a.votedFor != "b" {
		t.Fatalf("a is %v term %d vote %q; want follower, term 2, vote b", a.role, a.term, a.votedFor)
	}
	// Term 3: the vote for b was for term 2 only.
	a.step(voteMsg(MsgVote, "c", 3, 0, 0))
	if r := onlyMsg(t, a.takeReady().Messages, MsgVoteResp, "c"); r.Reject || r.Term != 3 {
		t.Fatalf("vote for c in term 3: %+v", r)
	}
	if a.term != 3 || a.votedFor != "c" {
		t.Fatalf("a in term %d voted %q; want term 3, c", a.term, a.votedFor)
	}
	// And b, asking again in term 3, is refused.
	a.step(voteMsg(MsgVote, "b", 3, 0, 0))
	if r := onlyMsg(t, a.takeReady().Messages, MsgVoteResp, "b"); !r.Reject {
		t.Fatalf("second vote in term 3 granted: %+v", r)
	}
}

// TestCoreVoteStaleTermRejected: a request of an older term is refused with
// the voter's term, which it keeps.
func TestCoreVoteStaleTermRejected(t *testing.T) {
	a := testCore(t, "a", names3)
	a.term = 5
	for _, typ := range []MessageType{MsgVote, MsgPreVote} {
		a.step(voteMsg(typ, "b", 4, 9, 4))
		r := onlyMsg(t, a.takeReady().Messages, voteRespType(typ), "b")
		if !r.Reject || r.Term != 5 || a.term != 5 || a.votedFor != "" {
			t.Fatalf("%v of term 4 to a voter in term 5: %+v; voter term %d vote %q", typ, r, a.term, a.votedFor)
		}
	}
}

// TestCorePreVoteKeepsTerm: a server whose election timeout fires asks for
// pre-votes for term+1 without moving its own term or casting a vote; only
// once a quorum grants them does it campaign for real.
func TestCorePreVoteKeepsTerm(t *testing.T) {
	a := testCore(t, "a", names3)
	var out []Message
	for i := 0; i < 100 && a.role == Follower; i++ {
		a.tick()
		out = a.takeReady().Messages
	}
	if a.role != Candidate || !a.preVote || a.term != 0 || a.votedFor != "" {
		t.Fatalf("after the timeout: %v preVote=%v term %d vote %q; want a pre-candidate of term 0 without a vote",
			a.role, a.preVote, a.term, a.votedFor)
	}
	if len(out) != 2 || len(msgsOf(out, MsgPreVote, "")) != 2 || out[0].Term != 1 {
		t.Fatalf("sent %s, want a pre-vote for term 1 to b and c", dumpMsgs(out))
	}
	// Refused by both: back to follower, same term.
	for _, v := range []string{"b", "c"} {
		r := msgFrom(MsgPreVoteResp, v, 0)
		r.Reject = true
		a.step(r)
	}
	if a.role != Follower || a.term != 0 {
		t.Fatalf("refused pre-vote: %v in term %d, want follower in term 0", a.role, a.term)
	}
	// Next timeout, granted by b: now a real campaign for term 1.
	for i := 0; i < 100 && a.role == Follower; i++ {
		a.tick()
	}
	a.takeReady()
	a.step(msgFrom(MsgPreVoteResp, "b", 1))
	out = a.takeReady().Messages
	if a.role != Candidate || a.preVote || a.term != 1 || a.votedFor != "a" || len(msgsOf(out, MsgVote, "")) != 2 {
		t.Fatalf("after a granted pre-vote: %v preVote=%v term %d vote %q sent %s; want a candidate of term 1",
			a.role, a.preVote, a.term, a.votedFor, dumpMsgs(out))
	}
}

// TestCorePreVotePartitionedFollowerKeepsTerm: a follower cut off from the
// cluster times out again and again without raising its term, so when it
// comes back the leader carries on undisturbed.
func TestCorePreVotePartitionedFollowerKeepsTerm(t *testing.T) {
	n := newCluster(t, 3, names3)
	l := n.settle(100)
	term := l.term
	f := n.cores["c"]
	if l == f {
		f = n.cores["b"]
	}
	n.isolate(f.cfg.name)
	n.tickAll(300)
	if f.term != term {
		t.Fatalf("the cut-off follower went from term %d to %d", term, f.term)
	}
	if n.leader() != l || l.term != term {
		t.Fatalf("leader changed while a follower was cut off")
	}
	n.healAll()
	n.tickAll(100)
	if n.leader() != l || l.term != term || f.term != term || f.lead != l.cfg.name {
		t.Fatalf("after the follower came back: leader %v in term %d, follower term %d lead %q; want %s in term %d",
			n.leader().cfg.name, n.leader().term, f.term, f.lead, l.cfg.name, term)
	}
}

// TestCorePreVoteRefusedInLease: a follower that heard from its leader
// within the minimum election timeout grants no pre-vote, though the
// candidate's log is up to date; once the lease has run out it does.
func TestCorePreVoteRefusedInLease(t *testing.T) {
	for _, inLease := range []bool{true, false} {
		t.Run(fmt.Sprint("inLease=", inLease), func(t *testing.T) {
			a := testCore(t, "a", names3)
			followerWithLog(t, a, 1, []uint64{1}, 1)
			if !inLease {
				// The leader is gone: a times out, and its pre-vote is
				// refused by b and c; it no longer knows a leader.
				for a.role == Follower {
					a.tick()
				}
				for _, v := range []string{"b", "c"} {
					r := msgFrom(MsgPreVoteResp, v, 1)
					r.Reject = true
					a.step(r)
				}
				a.takeReady()
				if a.role != Follower || a.lead != "" || a.term != 1 {
					t.Fatalf("setup: %v lead %q term %d", a.role, a.lead, a.term)
				}
			}
			a.step(voteMsg(MsgPreVote, "c", 2, 1, 1))
			granted := false
			for _, r := range msgsOf(a.takeReady().Messages, MsgPreVoteResp, "c") {
				granted = granted || !r.Reject
			}
			if granted == inLease {
				t.Fatalf("pre-vote granted=%v by a follower with inLease=%v", granted, inLease)
			}
			if a.term != 1 || a.votedFor != "" {
				t.Fatalf("a pre-vote moved the voter to term %d, vote %q", a.term, a.votedFor)
			}
		})
	}
}

// TestCoreTriggerElectionDeposesStickyLeader: on the network a forced
// election wins although every other server hears from a healthy leader.
func TestCoreTriggerElectionDeposesStickyLeader(t *testing.T) {
	n := newCluster(t, 5, names3)
	l := n.settle(100)
	var f *core
	for _, name := range n.names {
		if n.cores[name] != l {
			f = n.cores[name]
		}
	}
	term := l.term
	n.forceLeader(f.cfg.name)
	if f.term != term+1 || l.role != Follower {
		t.Fatalf("forced election: new leader term %d (want %d), old leader %v", f.term, term+1, l.role)
	}
	// A plain timeout would not have done it: a follower that times out
	// while the others hear from the leader stays in its term.
	n.tickAll(30)
	n.requireOneLeaderPerTerm()
	if n.leader() != f {
		t.Fatalf("leadership moved on from %s", f.cfg.name)
	}
}

// TestCoreOneLeaderPerTerm: a follower that knows this term's leader
// ignores appends and TimeoutNow from anyone else in the same term (there
// is one leader per term, so the other is forged), whether the sender is a
// member or not.
func TestCoreOneLeaderPerTerm(t *testing.T) {
	for _, from := range []string{"c", "intruder"} {
		a := testCore(t, "a", names3)
		followerWithLog(t, a, 1, []uint64{1}, 1)
		before := logTerms(a)
		for _, m := range []Message{
			appendMsg(from, 1, 1, 1, 2, entries(2, 1)),
			msgFrom(MsgTimeoutNow, from, 1),
		} {
			a.step(m)
			rd := a.takeReady()
			if a.lead != "b" || a.role != Follower || a.term != 1 || !slices.Equal(logTerms(a), before) || a.commit != 1 || len(rd.Messages) != 0 {
				t.Fatalf("after %s: %v term %d lead %q log %v commit %d sent %s; want it ignored",
					dumpMsgs([]Message{m}), a.role, a.term, a.lead, logTerms(a), a.commit, dumpMsgs(rd.Messages))
			}
		}
	}
}

// TestCoreTermNeverWraps: a server forced to the last term (by a forged
// message: no election gets there) does not campaign into term 0, where
// its votes and appends would pass for ancient ones.
func TestCoreTermNeverWraps(t *testing.T) {
	a := testCore(t, "a", names3)
	followerWithLog(t, a, 1, []uint64{1}, 1)
	a.step(appendMsg("b", math.MaxUint64, 1, 1, 1, nil))
	a.takeReady()
	// A forced election (TimeoutNow from the leader) skips pre-vote, the
	// path that would add one to the term at once.
	a.step(msgFrom(MsgTimeoutNow, "b", math.MaxUint64))
	a.takeReady()
	if a.term != math.MaxUint64 {
		t.Fatalf("term %d after a forced campaign from the last term; want it kept", a.term)
	}
	for i := 0; i < 10*a.cfg.electionMax; i++ {
		a.tick()
		a.takeReady()
		if a.term != math.MaxUint64 {
			t.Fatalf("term %d after campaigning from the last term; want it kept", a.term)
		}
	}
}

// TestCoreCountsCampaigns: pre-vote rounds and elections are counted apart,
// for the driver's metrics.
func TestCoreCountsCampaigns(t *testing.T) {
	a := testCore(t, "a", names3)
	for range a.cfg.electionMax + 1 {
		a.tick()
	}
	if a.counts.PreVotes != 1 || a.counts.Elections != 0 {
		t.Fatalf("after an election timeout: %+v; want one pre-vote round and no election", a.counts)
	}
	if err := a.triggerElection(); err != nil {
		t.Fatal(err)
	}
	if a.counts.Elections != 1 {
		t.Fatalf("after a forced election: %+v; want one election", a.counts)
	}
}

// TestCoreStatusTermCommittedAndUnanimous: a new leader reports no entry of
// its term committed until a majority holds its first entries, and so binds
// the incarnations it was elected by; a follower of a new cluster reports
// its configuration unanimous (InitialConfig, every voter needed) until
// that binding configuration reaches it. AwaitLeader waits on the first,
// and explains a wait that cannot end with the second.
func TestCoreStatusTermCommittedAndUnanimous(t *testing.T) {
	blank := func(name string) *core {
		c := newCore(testCoreConfig(name, names3, incOf[name], rand.New(rand.NewPCG(7, 1))))
		c.takeReady()
		return c
	}
	a, b := blank("a"), blank("b")
	status := func(c *core) Status { return (&Node{c: c}).Status() }
	if st := status(b); !st.Unanimous || st.TermCommitted {
		t.Fatalf("a new follower: %+v, want a unanimous configuration and nothing committed in its term", st)
	}
	elect(t, a, "b", "c") // InitialConfig: every voter's vote
	rd := a.takeReady()
	if st := status(a); st.TermCommitted || st.Unanimous {
		t.Fatalf("a leader just elected: TermCommitted %v Unanimous %v, want false and false (it binds the voters it knows as it starts)",
			st.TermCommitted, st.Unanimous)
	}
	app := onlyMsg(t, rd.Messages, MsgApp, "b")
	b.step(app)
	if st := status(b); st.Unanimous {
		t.Fatalf("b after the leader's first append: Unanimous, want the bound configuration in use")
	}
	a.step(ackMsg("b", a.term, a.log.lastIndex(), app.Seq))
	if st := status(a); !st.TermCommitted {
		t.Fatalf("the leader after b holds its first entries: commit %d of last %d, TermCommitted false", st.Commit, st.LastIndex)
	}
}
