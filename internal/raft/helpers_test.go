package raft

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// Helpers of the rule tests (election_test.go, replication_test.go, …):
// cores built and driven by hand, the messages they are stepped with, and
// what to look at in their output. The network that connects cores is in
// network_test.go; the simulator's own helpers are in sim_*_test.go.

// testCoreConfig is the configuration of the tests' cores: name in the
// bootstrap cluster peers (none: a server waiting to be added) as
// incarnation inc, heartbeat 2 ticks, election timeouts 10 to 20 ticks drawn
// from rng, autoRejoin on.
func testCoreConfig(name string, peers []string, inc uint64, rng *rand.Rand) coreConfig {
	var initial []Peer
	for _, p := range peers {
		initial = append(initial, Peer{Name: p, Addr: p})
	}
	return coreConfig{
		name: name, addr: name, inc: inc, initial: initial,
		heartbeat: 2, electionMin: 10, electionMax: 20,
		rand: rng.IntN, autoRejoin: true,
	}
}

// names3 and names5 are the usual clusters of the rule tests; incOf is the
// incarnation of each server in them (testCore).
var (
	names3 = []string{"a", "b", "c"}
	names5 = []string{"a", "b", "c", "d", "e"}
	incOf  = map[string]uint64{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}
)

// testCore builds a core named name in the bootstrap cluster peers, with the
// incarnation incOf[name] and a fixed random source, and throws away what
// newCore produced.
func testCore(t testing.TB, name string, peers []string, opts ...func(*coreConfig)) *core {
	t.Helper()
	cfg := testCoreConfig(name, peers, incOf[name], rand.New(rand.NewPCG(7, uint64(len(name)))))
	for _, o := range opts {
		o(&cfg)
	}
	c := newCore(cfg)
	{
		// Most rules are about a cluster past its bootstrap: its first
		// leader bound every voter's incarnation.
		bound := c.configs[0].m
		for _, v := range bound.Voters {
			if v.Inc == 0 {
				v.Inc = incOf[v.Name]
				bound = bound.with(v)
			}
		}
		c.configs[0].m = bound
		c.applyConfig()
	}
	c.takeReady()
	return c
}

// Options of testCore and newCluster.

func withMinMajority(n int) func(*coreConfig) { return func(c *coreConfig) { c.minMajority = n } }
func withoutAutoRejoin(c *coreConfig)         { c.autoRejoin = false }
func withInc(inc uint64) func(*coreConfig)    { return func(c *coreConfig) { c.inc = inc } }

// entries returns entries of the given terms at indexes first, first+1, …
func entries(first uint64, terms ...uint64) []Entry {
	es := make([]Entry, len(terms))
	for i, t := range terms {
		idx := first + uint64(i)
		es[i] = Entry{Index: idx, Term: t, Type: EntryNormal, Data: []byte(fmt.Sprintf("e%d.%d", t, idx))}
	}
	return es
}

// repeatTerm returns term n times, to build long logs: repeatTerm(1, 10).
func repeatTerm(term uint64, n int) []uint64 {
	ts := make([]uint64, n)
	for i := range ts {
		ts[i] = term
	}
	return ts
}

// concatTerms joins lists of terms: concatTerms(repeatTerm(1, 5), []uint64{2}).
func concatTerms(parts ...[]uint64) []uint64 {
	var out []uint64
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// msgFrom returns a message of type typ from the server name (with its
// incOf incarnation) in term.
func msgFrom(typ MessageType, name string, term uint64) Message {
	return Message{Type: typ, From: name, FromInc: incOf[name], FromAddr: name, Term: term}
}

// appendMsg is an append from the leader name.
func appendMsg(name string, term, prevIndex, prevTerm, commit uint64, es []Entry) Message {
	m := msgFrom(MsgApp, name, term)
	m.PrevIndex, m.PrevTerm, m.Commit, m.Entries = prevIndex, prevTerm, commit, es
	return m
}

// voteMsg is a vote (or pre-vote) request from name for term.
func voteMsg(typ MessageType, name string, term, lastIndex, lastTerm uint64) Message {
	m := msgFrom(typ, name, term)
	m.LastIndex, m.LastTerm = lastIndex, lastTerm
	return m
}

// ackMsg is a successful append response from name.
func ackMsg(name string, term, match, seq uint64) Message {
	m := msgFrom(MsgAppResp, name, term)
	m.Match, m.LastIndex, m.Seq = match, match, seq
	return m
}

// followerWithLog makes c hold entries of the given terms (sent by the
// leader "b" in the highest of them, or in term if larger) with commit.
func followerWithLog(t testing.TB, c *core, term uint64, terms []uint64, commit uint64) {
	t.Helper()
	for _, x := range terms {
		term = max(term, x)
	}
	c.step(appendMsg("b", term, 0, 0, commit, entries(1, terms...)))
	rd := c.takeReady()
	if len(rd.Messages) != 1 || rd.Messages[0].Reject || c.log.lastIndex() != uint64(len(terms)) {
		t.Fatalf("setting up %s's log: %+v, last %d", c.cfg.name, rd.Messages, c.log.lastIndex())
	}
}

// elect makes c campaign (forced, so that no lease stands in the way) and
// win with the votes of the servers in voters, granted in that order.
func elect(t testing.TB, c *core, voters ...string) {
	t.Helper()
	if err := c.triggerElection(); err != nil {
		t.Fatalf("triggerElection on %s: %v", c.cfg.name, err)
	}
	for _, v := range voters {
		c.step(msgFrom(MsgVoteResp, v, c.term))
	}
	if c.role != Leader {
		t.Fatalf("%s is %v after the votes of %v, want leader", c.cfg.name, c.role, voters)
	}
}

// msgsOf returns the messages of type typ (to to, unless to is "").
func msgsOf(ms []Message, typ MessageType, to string) []Message {
	var out []Message
	for _, m := range ms {
		if m.Type == typ && (to == "" || m.To == to) {
			out = append(out, m)
		}
	}
	return out
}

// onlyMsg returns the one message of type typ to to, failing otherwise.
func onlyMsg(t testing.TB, ms []Message, typ MessageType, to string) Message {
	t.Helper()
	got := msgsOf(ms, typ, to)
	if len(got) != 1 {
		t.Fatalf("want one %v to %q, got %d in %s", typ, to, len(got), dumpMsgs(ms))
	}
	return got[0]
}

// dumpMsgs shows messages for a failure report.
func dumpMsgs(ms []Message) string {
	s := "["
	for i, m := range ms {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%v(%s->%s t%d rej=%v prev=%d/%d n=%d match=%d hint=%d/%d seq=%d)",
			m.Type, m.From, m.To, m.Term, m.Reject, m.PrevIndex, m.PrevTerm, len(m.Entries), m.Match, m.HintIndex, m.HintTerm, m.Seq)
	}
	return s + "]"
}

// logTerms lists the terms of c's log, index 1 first.
func logTerms(c *core) []uint64 {
	ts := make([]uint64, c.log.lastIndex())
	for i := range ts {
		ts[i], _ = c.log.term(uint64(i + 1))
	}
	return ts
}

// allBound reports whether m names an incarnation of every voter.
func allBound(m membership) bool {
	for _, v := range m.Voters {
		if v.Inc == 0 {
			return false
		}
	}
	return true
}

// normalData returns the data of the normal entries of es.
func normalData(es []Entry) []string {
	var out []string
	for _, e := range es {
		if e.Type == EntryNormal {
			out = append(out, string(e.Data))
		}
	}
	return out
}

// voterNames lists the voters of m: "[a b c]".
func voterNames(m membership) string {
	var names []string
	for _, v := range m.Voters {
		names = append(names, v.Name)
	}
	return fmt.Sprint(names)
}

// leaderOfFive makes "a" the leader of term 3 in a five-server cluster, with a
// log that holds an entry of term 2 at index 2 that no one committed: log
// terms [1 2 3 3] (a no-op and the configuration binding b and c).
func leaderOfFive(t *testing.T) *core {
	t.Helper()
	a := testCore(t, "a", names5)
	a.step(appendMsg("b", 2, 0, 0, 1, entries(1, 1, 2)))
	a.takeReady()
	elect(t, a, "b", "c")
	if got, want := logTerms(a), []uint64{1, 2, 3}; !slices.Equal(got, want) || a.term != 3 || a.commit != 1 {
		t.Fatalf("setup: leader log %v commit %d term %d, want %v commit 1 term 3", got, a.commit, a.term, want)
	}
	a.takeReady()
	return a
}

// requireNoopFirst fails unless the first entry of every term in c's log is a
// no-op (every term's leader opened it with one).
func requireNoopFirst(t testing.TB, c *core) {
	t.Helper()
	for i := uint64(1); i <= c.log.lastIndex(); i++ {
		prev, _ := c.log.term(i - 1)
		if e := c.log.at(i); e.Term != prev && e.Type != EntryNoop {
			t.Fatalf("%s: the first entry of term %d (index %d) is of type %d, not a no-op", c.cfg.name, e.Term, i, e.Type)
		}
	}
}

// leaderOfThree makes "a" the leader of term 2 in a three-server cluster with
// its no-op and configuration committed (b acknowledged them).
func leaderOfThree(t *testing.T) *core {
	t.Helper()
	a := testCore(t, "a", names3)
	elect(t, a, "b")
	a.step(ackMsg("b", a.term, a.log.lastIndex(), 0))
	if a.commit != a.log.lastIndex() {
		t.Fatalf("setup: commit %d, last %d", a.commit, a.log.lastIndex())
	}
	a.takeReady()
	return a
}

// boundConfig is a configuration entry naming the servers with their
// incOf incarnations (or inc[name] when given).
func boundConfig(index, term uint64, names []string, inc map[string]uint64) Entry {
	var m membership
	for _, name := range names {
		i, ok := inc[name]
		if !ok {
			i = incOf[name]
		}
		m = m.with(member{Name: name, Addr: name, Inc: i})
	}
	return Entry{Index: index, Term: term, Type: EntryConfig, Data: encodeMembership(m)}
}

// boundFollower gives c the log [no-op, bound configuration of names] of
// term 1, committed, from the leader b (a when c is b).
func boundFollower(t testing.TB, c *core, names []string) {
	t.Helper()
	leader := "b"
	if c.cfg.name == leader {
		leader = "a"
	}
	c.step(appendMsg(leader, 1, 0, 0, 2, []Entry{{Index: 1, Term: 1, Type: EntryNoop}, boundConfig(2, 1, names, nil)}))
	c.takeReady()
	if !allBound(c.self) || c.commit != 2 {
		t.Fatalf("setup: configuration %+v commit %d", c.self.Voters, c.commit)
	}
}

// fuzzInput reads the input of a fuzz target (FuzzLog, FuzzCoreStep); past
// its end it reads zeros.
type fuzzInput struct {
	b []byte
	i int
}

func (r *fuzzInput) more() bool { return r.i < len(r.b) }

func (r *fuzzInput) byte() byte {
	if r.i >= len(r.b) {
		return 0
	}
	r.i++
	return r.b[r.i-1]
}

func (r *fuzzInput) uint64() uint64 {
	var v uint64
	for i := 0; i < 8; i++ {
		v = v<<8 | uint64(r.byte())
	}
	return v
}

// normal is the entries of plain commands, to propose.
func normal(cmds ...[]byte) []Entry {
	es := make([]Entry, len(cmds))
	for i, d := range cmds {
		es[i] = Entry{Type: EntryNormal, Data: d}
	}
	return es
}
