package raft

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// Tests of log replication (replication.go, progress.go): AppendEntries'
// receiver (§5.3), fast log back-off, and the leader's pipelining.
// Each test fails when its rule is taken out.

// TestCoreAppendRejectsMismatchWithHint: an append whose (prevIndex,
// prevTerm) the log does not hold is refused, with the fast back-off hint,
// and the log is left alone.
func TestCoreAppendRejectsMismatchWithHint(t *testing.T) {
	cases := []struct {
		name                string
		log                 []uint64
		commit              uint64
		prevIndex, prevTerm uint64
		hintIndex, hintTerm uint64
	}{
		// The first index of the conflicting term.
		{"conflicting term", []uint64{1, 1, 1, 2, 2}, 0, 5, 3, 4, 2},
		{"conflicting term inside the log", []uint64{1, 1, 1, 2, 2}, 0, 3, 2, 1, 1},
		{"conflicting term among others", []uint64{1, 2, 2, 2, 3, 3}, 0, 6, 4, 5, 3},
		{"long conflicting term", concatTerms([]uint64{1}, repeatTerm(2, 50)), 0, 51, 3, 2, 2},
		// Never below what is committed.
		{"conflict stops at commit", []uint64{1, 1, 1, 1}, 2, 4, 3, 3, 1},
		// Too short: where the log ends, no term.
		{"log too short", []uint64{1, 1, 1, 2, 2}, 0, 7, 2, 6, 0},
		{"empty log", nil, 0, 4, 1, 1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := testCore(t, "a", names3)
			if len(tc.log) > 0 {
				followerWithLog(t, a, 0, tc.log, tc.commit)
			}
			before := logTerms(a)
			a.step(appendMsg("c", 9, tc.prevIndex, tc.prevTerm, 0, entries(tc.prevIndex+1, 9)))
			r := onlyMsg(t, a.takeReady().Messages, MsgAppResp, "c")
			if !r.Reject || r.PrevIndex != tc.prevIndex || r.Term != 9 {
				t.Fatalf("response %s, want a reject of prev %d in term 9", dumpMsgs([]Message{r}), tc.prevIndex)
			}
			if r.HintIndex != tc.hintIndex || r.HintTerm != tc.hintTerm {
				t.Fatalf("hint %d/%d, want %d/%d", r.HintIndex, r.HintTerm, tc.hintIndex, tc.hintTerm)
			}
			if r.LastIndex != uint64(len(tc.log)) {
				t.Fatalf("LastIndex %d, want %d", r.LastIndex, len(tc.log))
			}
			if !slices.Equal(before, logTerms(a)) {
				t.Fatalf("a refused append changed the log: %v -> %v", before, logTerms(a))
			}
		})
	}
}

// TestCoreAppendStaleTermRejected: an append from a leader of an older term
// is refused with the current term, and changes nothing.
func TestCoreAppendStaleTermRejected(t *testing.T) {
	a := testCore(t, "a", names3)
	followerWithLog(t, a, 3, []uint64{1, 1}, 0)
	a.step(appendMsg("c", 2, 2, 1, 2, entries(3, 2)))
	r := onlyMsg(t, a.takeReady().Messages, MsgAppResp, "c")
	if !r.Reject || r.Term != 3 {
		t.Fatalf("stale append answered %s, want a reject in term 3", dumpMsgs([]Message{r}))
	}
	if a.term != 3 || a.lead != "b" || a.log.lastIndex() != 2 || a.commit != 0 {
		t.Fatalf("stale append changed the follower: term %d lead %q last %d commit %d", a.term, a.lead, a.log.lastIndex(), a.commit)
	}
}

// TestCoreAppendTruncatesConflict: the first entry that conflicts and
// everything after it are replaced by the leader's.
func TestCoreAppendTruncatesConflict(t *testing.T) {
	a := testCore(t, "a", names3)
	followerWithLog(t, a, 0, []uint64{1, 1, 2, 2, 2}, 2)
	a.step(appendMsg("c", 3, 2, 1, 2, entries(3, 3, 3)))
	r := onlyMsg(t, a.takeReady().Messages, MsgAppResp, "c")
	if r.Reject || r.Match != 4 || r.LastIndex != 4 {
		t.Fatalf("response %s, want match 4, last 4", dumpMsgs([]Message{r}))
	}
	if got, want := logTerms(a), []uint64{1, 1, 3, 3}; !slices.Equal(got, want) {
		t.Fatalf("log terms %v, want %v", got, want)
	}
	if e := a.log.at(3); string(e.Data) != "e3.3" {
		t.Fatalf("index 3 holds %q, want the leader's entry", e.Data)
	}
}

// TestCoreAppendTruncatedConfigurationIsForgotten: a configuration entry
// dropped by a truncation stops being the configuration in use.
func TestCoreAppendTruncatedConfigurationIsForgotten(t *testing.T) {
	a := testCore(t, "a", names3)
	// Leader b of term 2 appends a configuration without c.
	conf := Entry{Index: 1, Term: 2, Type: EntryConfig,
		Data: encodeMembership(newMembership(Peer{Name: "a", Addr: "a"}, []Peer{{Name: "b", Addr: "b"}}))}
	a.step(appendMsg("b", 2, 0, 0, 0, []Entry{conf}))
	a.takeReady()
	if _, ok := a.self.find("c"); ok {
		t.Fatal("setup: c is still in the configuration in use")
	}
	// Leader c of term 3 never had it. To a, c is an outsider now: a
	// follows it only once it has stopped hearing from b.
	for i := 0; i < a.cfg.electionMin; i++ {
		a.tick()
	}
	a.takeReady()
	a.step(appendMsg("c", 3, 0, 0, 0, entries(1, 3)))
	a.takeReady()
	if _, ok := a.self.find("c"); !ok || len(a.self.Voters) != 3 {
		t.Fatalf("after the truncation the configuration is %+v, want a, b, c", a.self.Voters)
	}
}

// TestCoreAppendIgnoresDuplicates: an old append delivered again, or late,
// holds entries the log already has: nothing is truncated.
func TestCoreAppendIgnoresDuplicates(t *testing.T) {
	a := testCore(t, "a", names3)
	followerWithLog(t, a, 0, []uint64{1, 1, 1, 2, 2}, 0)
	want := logTerms(a)
	for _, m := range []Message{
		appendMsg("b", 2, 0, 0, 0, entries(1, 1, 1)),    // the first two again
		appendMsg("b", 2, 2, 1, 0, entries(3, 1)),       // a late one in the middle
		appendMsg("b", 2, 3, 1, 0, entries(4, 2, 2)),    // the tail again
		appendMsg("b", 2, 1, 1, 0, entries(2, 1, 1, 2)), // overlapping
	} {
		a.step(m)
		r := onlyMsg(t, a.takeReady().Messages, MsgAppResp, "b")
		last := m.PrevIndex + uint64(len(m.Entries))
		if r.Reject || r.Match != last || r.LastIndex != 5 {
			t.Fatalf("append prev %d +%d answered %s, want match %d, last 5", m.PrevIndex, len(m.Entries), dumpMsgs([]Message{r}), last)
		}
		if got := logTerms(a); !slices.Equal(got, want) {
			t.Fatalf("append prev %d +%d changed the log to %v, want %v", m.PrevIndex, len(m.Entries), got, want)
		}
	}
}

// TestCoreAppendCommitIndex: a follower commits min(leaderCommit, index of
// the last new entry), and never goes back.
func TestCoreAppendCommitIndex(t *testing.T) {
	cases := []struct {
		name                string
		commit              uint64 // before
		prevIndex, prevTerm uint64
		ents                []uint64
		leaderCommit        uint64
		want                uint64
	}{
		// The entries after 2 are not known to match the leader's.
		{"heartbeat below the end of the log", 0, 2, 1, nil, 5, 2},
		{"new entry replaces the tail", 0, 2, 1, []uint64{2}, 5, 3},
		{"leader commit below last new", 0, 5, 1, nil, 3, 3},
		{"whole log matches", 0, 4, 1, []uint64{1}, 9, 5},
		{"never backwards", 3, 5, 1, nil, 2, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := testCore(t, "a", names3)
			followerWithLog(t, a, 0, []uint64{1, 1, 1, 1, 1}, tc.commit)
			a.step(appendMsg("c", 2, tc.prevIndex, tc.prevTerm, tc.leaderCommit, entries(tc.prevIndex+1, tc.ents...)))
			rd := a.takeReady()
			if r := onlyMsg(t, rd.Messages, MsgAppResp, "c"); r.Reject {
				t.Fatalf("append refused: %s", dumpMsgs([]Message{r}))
			}
			if a.commit != tc.want {
				t.Fatalf("commit %d, want %d", a.commit, tc.want)
			}
			if tc.want > tc.commit && (len(rd.Committed) != int(tc.want-tc.commit) || rd.Committed[len(rd.Committed)-1].Index != tc.want) {
				t.Fatalf("handed out %d entries for applying, want %d up to %d", len(rd.Committed), tc.want-tc.commit, tc.want)
			}
		})
	}
}

// TestCoreFastBackoff: after one refusal the leader's next index for the
// follower jumps over the whole conflicting term (§5.3's optimisation), and
// the logs then agree within a few round trips, not one per entry.
func TestCoreFastBackoff(t *testing.T) {
	cases := []struct {
		name        string
		leaderLog   []uint64 // entries sent to a in term 3; a then leads term 4
		followerLog []uint64 // b's log
		wantNext    uint64   // a's next for b after b's first refusal
	}{
		// b's 50 entries of term 2 that a never had: back to index 11.
		{"follower term unknown to the leader", concatTerms(repeatTerm(1, 10), repeatTerm(3, 50)), concatTerms(repeatTerm(1, 10), repeatTerm(2, 50)), 11},
		// a has 20 entries of term 2: the logs agree up to the last of them.
		{"leader has the conflicting term", concatTerms(repeatTerm(1, 10), repeatTerm(2, 20), repeatTerm(3, 30)), concatTerms(repeatTerm(1, 10), repeatTerm(2, 50)), 31},
		// b's log is shorter: where it ends.
		{"follower log shorter", concatTerms(repeatTerm(1, 10), repeatTerm(3, 50)), repeatTerm(1, 10), 11},
		// b's log is longer, with a conflicting term below.
		{"follower log longer", concatTerms(repeatTerm(1, 10), repeatTerm(3, 50)), concatTerms(repeatTerm(1, 10), repeatTerm(2, 80)), 11},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := testCore(t, "a", names3)
			b := testCore(t, "b", names3)
			c := testCore(t, "c", names3)
			a.step(appendMsg("c", 3, 0, 0, 10, entries(1, tc.leaderLog...)))
			a.takeReady()
			b.step(appendMsg("c", 2, 0, 0, 10, entries(1, tc.followerLog...)))
			b.takeReady()
			elect(t, a, "c", "b")
			out := a.takeReady().Messages
			first := onlyMsg(t, out, MsgApp, "b")
			b.step(first)
			rej := onlyMsg(t, b.takeReady().Messages, MsgAppResp, "a")
			if !rej.Reject {
				t.Fatalf("b accepted %s", dumpMsgs([]Message{first}))
			}
			a.step(rej)
			if pr := a.prs["b"]; pr.next != tc.wantNext {
				t.Fatalf("after one refusal (hint %d/%d) next is %d, want %d", rej.HintIndex, rej.HintTerm, pr.next, tc.wantNext)
			}
			// Let them converge; count a's appends to b.
			net := connect(t, a, b, c)
			net.collect("a")
			apps := 1 + net.deliverCounting(func(m Message) bool { return m.Type == MsgApp && m.To == "b" })
			if !slices.Equal(logTerms(a), logTerms(b)) {
				t.Fatalf("logs differ after converging: a %v, b %v", logTerms(a), logTerms(b))
			}
			if apps > 4 {
				t.Fatalf("%d appends to bring b's log in line, want at most 4", apps)
			}
		})
	}
}

// TestCoreFastBackoffNet: two servers with 50 divergent entries each
// converge within a few appends on the network harness.
func TestCoreFastBackoffNet(t *testing.T) {
	n := newCluster(t, 11, names3)
	a := n.forceLeader("a")
	n.settle(50)
	for i := 0; i < 5; i++ {
		a.propose(normal([]byte(fmt.Sprint("base", i))))
	}
	n.collect("a")
	n.deliverAll()
	// a, cut off, takes 50 entries that never commit.
	n.isolate("a")
	for i := 0; i < 50; i++ {
		a.propose(normal([]byte(fmt.Sprint("lost", i))))
	}
	n.collect("a")
	// c leads a new term with b and commits 50 others at the same indexes;
	// then b takes over, so that its first append to a lies far above the
	// point where the logs part.
	c := n.forceLeader("c")
	for i := 0; i < 50; i++ {
		c.propose(normal([]byte(fmt.Sprint("kept", i))))
	}
	n.collect("c")
	n.deliverAll()
	b := n.forceLeader("b")
	if b.commit != b.log.lastIndex() || a.log.lastIndex() < b.log.lastIndex()-5 {
		t.Fatalf("setup: b commit %d last %d, a last %d", b.commit, b.log.lastIndex(), a.log.lastIndex())
	}
	n.healAll()
	apps := 0
	for tick := 0; tick < 20 && !slices.Equal(logTerms(a), logTerms(b)); tick++ {
		apps += n.tickCounting(func(m Message) bool { return m.Type == MsgApp && m.From == "b" && m.To == "a" })
	}
	if !slices.Equal(logTerms(a), logTerms(b)) {
		t.Fatalf("a's log never agreed with b's")
	}
	t.Logf("b needed %d appends to bring a's %d divergent entries in line", apps, 50)
	if apps > 6 {
		t.Fatalf("b needed %d appends to bring a's log in line, want at most 6", apps)
	}
	n.tickAll(5)
	got := normalData(n.appliedAgree())
	if len(got) != 55 || got[54] != "kept49" {
		t.Fatalf("applied %d commands (last %q), want base0-4 and kept0-49", len(got), got[len(got)-1])
	}
}

// TestCoreMalformedAppendsAreDropped: appends no leader sends (gaps,
// entries of a later term than the message, index 0, an overwrite of a
// committed entry) change nothing and do not crash the server.
func TestCoreMalformedAppendsAreDropped(t *testing.T) {
	a := testCore(t, "a", names3)
	followerWithLog(t, a, 2, []uint64{1, 2}, 1)
	before := logTerms(a)
	for _, m := range []Message{
		appendMsg("b", 2, 0, 0, 1, []Entry{{Index: 2, Term: 2}}),                      // a gap after PrevIndex 0
		appendMsg("b", 2, 2, 2, 1, []Entry{{Index: 3, Term: 5}}),                      // a term above the message's
		appendMsg("b", 2, 0, 0, 1, []Entry{{Index: 0, Term: 1}}),                      // index 0
		appendMsg("b", 2, 2, 2, 1, []Entry{{Index: 3, Term: 2}, {Index: 4, Term: 1}}), // terms going down
		appendMsg("b", 3, 0, 0, 1, []Entry{{Index: 1, Term: 3}}),                      // rewrites committed index 1: skipped as committed
	} {
		a.step(m)
		a.takeReady()
		if got := logTerms(a); !slices.Equal(got, before) || a.commit != 1 {
			t.Fatalf("after %s the log is %v commit %d, want %v commit 1", dumpMsgs([]Message{m}), got, a.commit, before)
		}
	}
}

// TestCoreResendsAfterLostAppends: a follower in the replicate state whose
// appends were lost (a broken connection) makes no progress while the
// leader's heartbeats, sent at the point known to match, all succeed. After
// a few heartbeats without progress the leader resends from the match
// point.
func TestCoreResendsAfterLostAppends(t *testing.T) {
	a := leaderOfThree(t)
	a.step(ackMsg("c", a.term, a.log.lastIndex(), 0))
	a.takeReady()
	idx, _, _ := a.propose(normal([]byte("x")))
	a.takeReady() // the appends carrying idx are lost
	resent := -1
	for tick := 0; tick < 10*a.cfg.heartbeat && resent < 0; tick++ {
		a.tick()
		for _, m := range msgsOf(a.takeReady().Messages, MsgApp, "b") {
			if len(m.Entries) > 0 && m.Entries[0].Index <= idx && idx <= m.Entries[len(m.Entries)-1].Index {
				resent = tick
			}
			// b answers the heartbeats: alive, but its log is where it was.
			a.step(ackMsg("b", a.term, m.PrevIndex, m.Seq))
		}
	}
	if resent < 0 {
		t.Fatalf("index %d was never sent to b again in %d ticks", idx, 10*a.cfg.heartbeat)
	}
	if resent < a.cfg.heartbeat {
		t.Fatalf("index %d resent after %d ticks: before a single heartbeat showed no progress", idx, resent)
	}
}

// TestCoreAckBeyondLogIgnored: an acknowledgement of entries the leader
// never had is forged; counting it would commit an entry no follower holds.
func TestCoreAckBeyondLogIgnored(t *testing.T) {
	a := leaderOfThree(t)
	match := a.prs["b"].match
	a.step(ackMsg("b", a.term, a.log.lastIndex()+1<<40, 1))
	a.takeReady()
	if a.prs["b"].match != match {
		t.Fatalf("b's match is %d after a forged ack, want %d", a.prs["b"].match, match)
	}
	idx, _, _ := a.propose(normal([]byte("x")))
	a.takeReady()
	if a.commit >= idx {
		t.Fatalf("commit %d reached the new entry %d with no follower holding it", a.commit, idx)
	}
}

// TestCoreProposeTakesOnlyCommands: a leader appends commands, of either
// kind, and refuses to be handed the entries only it may write (a no-op, a
// configuration), which would bypass the membership rules.
func TestCoreProposeTakesOnlyCommands(t *testing.T) {
	a := leaderOfThree(t)
	last := a.log.lastIndex()
	for _, typ := range []EntryType{EntryNoop, EntryConfig} {
		_, _, err := a.propose([]Entry{{Type: typ, Data: []byte("x")}})
		require.ErrorIs(t, err, ErrProposedType)
	}
	require.Equal(t, last, a.log.lastIndex(), "nothing appended")
	first, _, err := a.propose([]Entry{{Type: EntryNormal, Data: []byte("n")}, {Type: EntrySession, Data: []byte("s")}})
	require.NoError(t, err)
	require.Equal(t, last+1, first)
	require.Equal(t, EntrySession, a.log.at(first+1).Type)
}

// TestCoreProgressShowsEachFollower: the leader reports, per follower, the
// match index, how it replicates, and how many ticks ago it last answered,
// so that a dead member can be told from a live one; a follower reports
// nothing.
func TestCoreProgressShowsEachFollower(t *testing.T) {
	a := leaderOfThree(t)
	a.step(ackMsg("b", a.term, a.log.lastIndex(), 0))
	for range 3 {
		a.tick()
	}
	ps := a.progressList()
	require.Len(t, ps, 2)
	b, c := ps[0], ps[1]
	require.Equal(t, "b", b.Name)
	require.Equal(t, a.log.lastIndex(), b.Match)
	require.Equal(t, ProgressReplicate, b.State)
	require.True(t, b.Heard)
	require.Equal(t, uint64(3), b.SinceHeard)
	require.Equal(t, "c", c.Name)
	require.False(t, c.Heard, "c never answered")
	require.Equal(t, ProgressProbe, c.State)

	f := testCore(t, "b", names3)
	require.Nil(t, f.progressList())
}
