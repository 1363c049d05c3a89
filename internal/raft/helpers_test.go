package raft

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// Helpers of the rule tests (election_test.go, replication_test.go, …).
// Every name starts with "cr" (core rules) so that it cannot clash with the
// simulator's, which start with "sim".

// crNames3 is the usual three-server cluster of the unit tests; the
// incarnation of each server in crIncs.
var (
	crNames3 = []string{"a", "b", "c"}
	crNames5 = []string{"a", "b", "c", "d", "e"}
	crIncs   = map[string]uint64{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}
)

// crCore builds a core named name in the bootstrap cluster peers, with the
// incarnation crIncs[name] and a fixed random source, and throws away what
// newCore produced.
func crCore(t testing.TB, name string, peers []string, opts ...func(*coreConfig)) *core {
	t.Helper()
	cfg := testCoreConfig(name, peers, crIncs[name], rand.New(rand.NewPCG(7, uint64(len(name)))))
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
				v.Inc = crIncs[v.Name]
				bound = bound.with(v)
			}
		}
		c.configs[0].m = bound
		c.applyConfig()
	}
	c.takeReady()
	return c
}

func crMinMajority(n int) func(*coreConfig) { return func(c *coreConfig) { c.minMajority = n } }
func crNoAutoRejoin(c *coreConfig)          { c.autoRejoin = false }
func crInc(inc uint64) func(*coreConfig)    { return func(c *coreConfig) { c.inc = inc } }

// crEnts returns entries of the given terms at indexes first, first+1, …
func crEnts(first uint64, terms ...uint64) []Entry {
	es := make([]Entry, len(terms))
	for i, t := range terms {
		idx := first + uint64(i)
		es[i] = Entry{Index: idx, Term: t, Type: EntryNormal, Data: []byte(fmt.Sprintf("e%d.%d", t, idx))}
	}
	return es
}

// crRepeat returns term n times, to build long logs: crRepeat(1, 10).
func crRepeat(term uint64, n int) []uint64 {
	ts := make([]uint64, n)
	for i := range ts {
		ts[i] = term
	}
	return ts
}

func crCat(parts ...[]uint64) []uint64 {
	var out []uint64
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// crFrom returns a message of type typ from the server name (with its
// crIncs incarnation) in term.
func crFrom(typ MessageType, name string, term uint64) Message {
	return Message{Type: typ, From: name, FromInc: crIncs[name], FromAddr: name, Term: term}
}

// crApp is an append from the leader name.
func crApp(name string, term, prevIndex, prevTerm, commit uint64, es []Entry) Message {
	m := crFrom(MsgApp, name, term)
	m.PrevIndex, m.PrevTerm, m.Commit, m.Entries = prevIndex, prevTerm, commit, es
	return m
}

// crVote is a vote (or pre-vote) request from name for term.
func crVote(typ MessageType, name string, term, lastIndex, lastTerm uint64) Message {
	m := crFrom(typ, name, term)
	m.LastIndex, m.LastTerm = lastIndex, lastTerm
	return m
}

// crAck is a successful append response from name.
func crAck(name string, term, match, seq uint64) Message {
	m := crFrom(MsgAppResp, name, term)
	m.Match, m.LastIndex, m.Seq = match, match, seq
	return m
}

// crFollowerWithLog makes c hold entries of the given terms (sent by the
// leader "b" in the highest of them, or in term if larger) with commit.
func crFollowerWithLog(t testing.TB, c *core, term uint64, terms []uint64, commit uint64) {
	t.Helper()
	for _, x := range terms {
		term = max(term, x)
	}
	c.step(crApp("b", term, 0, 0, commit, crEnts(1, terms...)))
	rd := c.takeReady()
	if len(rd.Messages) != 1 || rd.Messages[0].Reject || c.log.lastIndex() != uint64(len(terms)) {
		t.Fatalf("setting up %s's log: %+v, last %d", c.cfg.name, rd.Messages, c.log.lastIndex())
	}
}

// crElect makes c campaign (forced, so that no lease stands in the way) and
// win with the votes of the servers in voters, granted in that order.
func crElect(t testing.TB, c *core, voters ...string) {
	t.Helper()
	if err := c.triggerElection(); err != nil {
		t.Fatalf("triggerElection on %s: %v", c.cfg.name, err)
	}
	for _, v := range voters {
		c.step(crFrom(MsgVoteResp, v, c.term))
	}
	if c.role != Leader {
		t.Fatalf("%s is %v after the votes of %v, want leader", c.cfg.name, c.role, voters)
	}
}

// crMsgs returns the messages of type typ (to to, unless to is "").
func crMsgs(ms []Message, typ MessageType, to string) []Message {
	var out []Message
	for _, m := range ms {
		if m.Type == typ && (to == "" || m.To == to) {
			out = append(out, m)
		}
	}
	return out
}

// crOnly returns the one message of type typ to to, failing otherwise.
func crOnly(t testing.TB, ms []Message, typ MessageType, to string) Message {
	t.Helper()
	got := crMsgs(ms, typ, to)
	if len(got) != 1 {
		t.Fatalf("want one %v to %q, got %d in %s", typ, to, len(got), crDump(ms))
	}
	return got[0]
}

func crDump(ms []Message) string {
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

func crLogTerms(c *core) []uint64 {
	ts := make([]uint64, c.log.lastIndex())
	for i := range ts {
		ts[i], _ = c.log.term(uint64(i + 1))
	}
	return ts
}

func crEqualTerms(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// crPump delivers msgs among cores, and every message they cause, until
// nothing is left, dropping messages that drop reports true. It returns
// how many delivered messages count reports true for.
func crPump(t testing.TB, cores map[string]*core, msgs []Message, drop, count func(Message) bool) int {
	t.Helper()
	n := 0
	for i := 0; len(msgs) > 0; i++ {
		if i > 100000 {
			t.Fatal("crPump: messages never stop")
		}
		m := msgs[0]
		msgs = msgs[1:]
		c := cores[m.To]
		if c == nil || (drop != nil && drop(m)) {
			continue
		}
		if count != nil && count(m) {
			n++
		}
		c.step(m)
		msgs = append(msgs, c.takeReady().Messages...)
	}
	return n
}

// ---- testNet helpers (testnet_test.go) ---------------------------------------

// crNet builds a testNet whose cores are built from testCoreConfig changed
// by opts.
func crNet(t testing.TB, seed uint64, names []string, opts ...func(*coreConfig)) *testNet {
	n := newTestNet(t, seed)
	for i, name := range names {
		cfg := testCoreConfig(name, names, uint64(i+1)*1000+seed, n.rng)
		for _, o := range opts {
			o(&cfg)
		}
		n.add(name, cfg)
	}
	return n
}

// crForceLeader makes name campaign at once (TriggerElection) and delivers
// everything; it fails unless name ends as the leader.
func crForceLeader(t testing.TB, n *testNet, name string) *core {
	t.Helper()
	c := n.cores[name]
	if err := c.triggerElection(); err != nil {
		t.Fatalf("triggerElection on %s: %v", name, err)
	}
	n.collect(name)
	n.deliverAll()
	if c.role != Leader {
		t.Fatalf("%s is %v after a forced election, want leader", name, c.role)
	}
	return c
}

// crSettle ticks the network until the leader has committed its whole log,
// every voter's incarnation is bound in a committed configuration and every
// core knows the commit index (or fails after max ticks).
func crSettle(t testing.TB, n *testNet, max int) *core {
	t.Helper()
	for i := 0; i < max; i++ {
		if l := n.leader(); l != nil && l.commit == l.log.lastIndex() && l.term > 0 {
			if lt, _ := l.log.term(l.commit); lt == l.term && crAllBound(l.committedConfig()) {
				done := true
				for _, name := range n.names {
					if c := n.cores[name]; c != nil && c.commit != l.commit {
						done = false
					}
				}
				if done {
					return l
				}
			}
		}
		n.tickAll(1)
	}
	t.Fatalf("the cluster did not settle in %d ticks", max)
	return nil
}

func crAllBound(m membership) bool {
	for _, v := range m.Voters {
		if v.Inc == 0 {
			return false
		}
	}
	return true
}

// crTickCounting ticks every core once and delivers everything, counting
// the delivered messages count reports true for.
func crTickCounting(n *testNet, count func(Message) bool) int {
	for _, name := range n.names {
		if c := n.cores[name]; c != nil {
			c.tick()
			n.collect(name)
		}
	}
	return n.deliverCounting(count)
}

// crConnect restores the links between x and y in both directions.
func crConnect(n *testNet, x, y string) {
	delete(n.cut, [2]string{x, y})
	delete(n.cut, [2]string{y, x})
}

// crCut cuts the links between x and y in both directions.
func crCut(n *testNet, x, y string) {
	n.cut[[2]string{x, y}] = true
	n.cut[[2]string{y, x}] = true
}

// crLeadersByTerm fails if two cores are leaders of the same term.
func crLeadersByTerm(t testing.TB, n *testNet) {
	t.Helper()
	seen := map[uint64]string{}
	for _, name := range n.names {
		c := n.cores[name]
		if c == nil || c.role != Leader {
			continue
		}
		if o, ok := seen[c.term]; ok {
			t.Fatalf("two leaders in term %d: %s and %s", c.term, o, name)
		}
		seen[c.term] = name
	}
}

// crAppliedAgree fails unless what the cores handed out for applying agrees
// index by index (State Machine Safety), and returns the longest.
func crAppliedAgree(t testing.TB, n *testNet) []Entry {
	t.Helper()
	var longest []Entry
	from := ""
	for _, name := range n.names {
		es := n.apps[name]
		for i := range es {
			if i < len(longest) {
				a, b := longest[i], es[i]
				if a.Index != b.Index || a.Term != b.Term || a.Type != b.Type || string(a.Data) != string(b.Data) {
					t.Fatalf("applied entries differ at position %d: %s has %d/%d, %s has %d/%d",
						i, from, a.Index, a.Term, name, b.Index, b.Term)
				}
			}
		}
		if len(es) > len(longest) {
			longest, from = es, name
		}
	}
	return longest
}

// crNormal returns the data of the normal entries of es.
func crNormal(es []Entry) []string {
	var out []string
	for _, e := range es {
		if e.Type == EntryNormal {
			out = append(out, string(e.Data))
		}
	}
	return out
}

// crTickOne ticks one core k times, collecting what it sends (the network
// drops it if the core is cut off).
func crTickOne(n *testNet, name string, k int) {
	for i := 0; i < k; i++ {
		n.cores[name].tick()
		n.collect(name)
	}
}

// crVoterNames lists the voters of m: "[a b c]".
func crVoterNames(m membership) string {
	var names []string
	for _, v := range m.Voters {
		names = append(names, v.Name)
	}
	return fmt.Sprint(names)
}

// crLeader5 makes "a" the leader of term 3 in a five-server cluster, with a
// log that holds an entry of term 2 at index 2 that no one committed: log
// terms [1 2 3 3] (a no-op and the configuration binding b and c).
func crLeader5(t *testing.T) *core {
	t.Helper()
	a := crCore(t, "a", crNames5)
	a.step(crApp("b", 2, 0, 0, 1, crEnts(1, 1, 2)))
	a.takeReady()
	crElect(t, a, "b", "c")
	if got, want := crLogTerms(a), []uint64{1, 2, 3}; !crEqualTerms(got, want) || a.term != 3 || a.commit != 1 {
		t.Fatalf("setup: leader log %v commit %d term %d, want %v commit 1 term 3", got, a.commit, a.term, want)
	}
	a.takeReady()
	return a
}

// crNoopFirst fails unless the first entry of every term in c's log is a
// no-op (every term's leader opened it with one).
func crNoopFirst(t testing.TB, c *core) {
	t.Helper()
	for i := uint64(1); i <= c.log.lastIndex(); i++ {
		prev, _ := c.log.term(i - 1)
		if e := c.log.at(i); e.Term != prev && e.Type != EntryNoop {
			t.Fatalf("%s: the first entry of term %d (index %d) is of type %d, not a no-op", c.cfg.name, e.Term, i, e.Type)
		}
	}
}

// crLeader3 makes "a" the leader of term 2 in a three-server cluster with
// its no-op and configuration committed (b acknowledged them).
func crLeader3(t *testing.T) *core {
	t.Helper()
	a := crCore(t, "a", crNames3)
	crElect(t, a, "b")
	a.step(crAck("b", a.term, a.log.lastIndex(), 0))
	if a.commit != a.log.lastIndex() {
		t.Fatalf("setup: commit %d, last %d", a.commit, a.log.lastIndex())
	}
	a.takeReady()
	return a
}

// crJoiner adds to the network a server that starts with no configuration
// and MinMajority 2, so that it waits to be added (as StartServer does for a
// server that joins).
func crJoiner(n *testNet, name string, inc uint64) *core {
	cfg := testCoreConfig(name, nil, inc, n.rng)
	cfg.minMajority = 2
	return n.add(name, cfg)
}

// crBoundConfig is a configuration entry naming the servers with their
// crIncs incarnations (or inc[name] when given).
func crBoundConfig(index, term uint64, names []string, inc map[string]uint64) Entry {
	var m membership
	for _, name := range names {
		i, ok := inc[name]
		if !ok {
			i = crIncs[name]
		}
		m = m.with(member{Name: name, Addr: name, Inc: i})
	}
	return Entry{Index: index, Term: term, Type: EntryConfig, Data: encodeMembership(m)}
}

// crBoundFollower gives c the log [no-op, bound configuration of names] of
// term 1, committed, from the leader b (a when c is b).
func crBoundFollower(t testing.TB, c *core, names []string) {
	t.Helper()
	leader := "b"
	if c.cfg.name == leader {
		leader = "a"
	}
	c.step(crApp(leader, 1, 0, 0, 2, []Entry{{Index: 1, Term: 1, Type: EntryNoop}, crBoundConfig(2, 1, names, nil)}))
	c.takeReady()
	if !crAllBound(c.self) || c.commit != 2 {
		t.Fatalf("setup: configuration %+v commit %d", c.self.Voters, c.commit)
	}
}
