package raft

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// network connects cores in memory and carries their messages, with the
// faults the tests inject: links cut one way or both, servers isolated,
// taken down or restarted as new incarnations, and messages dropped by a
// filter, delivered in any order, duplicated, or shed when too many are in
// flight. The rule tests and the simulator share it.
//
// The rule tests deliver everything in flight, oldest first, and every
// message that causes (deliverAll, deliverCounting, deliverDropping), and
// tick with or without delivering (tickAll, tickCounting, tickEach, tick).
// The simulator's schedule makes every choice itself, with its seeded
// generator (which message to deliver, drop or duplicate), and the network
// carries it out (deliverAt, drop, duplicate): a seed replays the same way
// whatever the network does with a choice.
type network struct {
	t        testing.TB // nil in the simulator, which calls nothing that fails
	rng      *rand.Rand // the cores' random source (newCluster, addJoiner); picks what a full network sheds
	cores    map[string]*core
	names    []string      // every server ever added, in order
	cuts     map[link]bool // links that lose messages
	inFlight []Message     // sent and not delivered yet, oldest first

	// applied and reads record, for each server, the entries its core
	// handed out for applying and the reads it released (since it last
	// started), unless output is set.
	applied map[string][]Entry
	reads   map[string][]ReadState

	// What the simulator changes.

	// lateCut: a cut link loses a message only when it would be delivered
	// over it, so a message sent while a link is cut still arrives if the
	// link heals first. Otherwise a cut link also loses what is sent over
	// it while it is cut.
	lateCut bool
	// capacity, if not 0, is how many messages may be in flight: sending
	// one more first sheds one chosen by rng.
	capacity int
	// output, if set, takes a core's output other than its messages in
	// place of applied and reads.
	output func(name string, rd Ready)
	// onDeliver, if set, hears of each message just before it is delivered,
	// and onStepped just after its receiver took it in; onLose of each
	// message lost, with the reason.
	onDeliver func(m Message)
	onStepped func(m Message)
	onLose    func(m Message, why string)
	// admit, if set, decides whether a message that could be delivered is;
	// the simulator loses a snapshot's header whose bytes its sender no
	// longer holds, as a real transfer would fail.
	admit func(m Message) bool
}

// link is a directed link between two servers.
type link struct{ from, to string }

// maxDeliveries bounds one deliverAll: past it the messages never stop.
const maxDeliveries = 100000

func newNetwork(t testing.TB, rng *rand.Rand) *network {
	return &network{t: t, rng: rng, cores: map[string]*core{}, cuts: map[link]bool{},
		applied: map[string][]Entry{}, reads: map[string][]ReadState{}}
}

// newCluster starts the servers names as a bootstrap cluster, with cores
// built from testCoreConfig changed by opts, the incarnation of the i-th
// name (i+1)*1000+seed, and random sources drawn from seed.
func newCluster(t testing.TB, seed uint64, names []string, opts ...func(*coreConfig)) *network {
	n := newNetwork(t, rand.New(rand.NewPCG(seed, seed)))
	for i, name := range names {
		cfg := testCoreConfig(name, names, uint64(i+1)*1000+seed, n.rng)
		for _, o := range opts {
			o(&cfg)
		}
		n.start(name, cfg)
	}
	return n
}

// connect puts cores built by the test (testCore) on a network, each under
// its name, without taking their output.
func connect(t testing.TB, cores ...*core) *network {
	n := newNetwork(t, rand.New(rand.NewPCG(0, 0)))
	for _, c := range cores {
		n.put(c.cfg.name, c)
	}
	return n
}

// ---- servers ----------------------------------------------------------------

// start starts name's server from cfg, replacing the core that ran before
// (a restart: a new incarnation), and takes its first output.
func (n *network) start(name string, cfg coreConfig) *core {
	c := newCore(cfg)
	n.put(name, c)
	n.collect(name)
	return c
}

// put makes c name's core, replacing the one that ran before, without
// taking its output. What the old one handed out is forgotten.
func (n *network) put(name string, c *core) {
	if _, ok := n.cores[name]; !ok {
		n.names = append(n.names, name)
	}
	n.cores[name] = c
	n.applied[name] = nil
	n.reads[name] = nil
}

// stop takes name's server down: messages to it are lost until it starts
// again.
func (n *network) stop(name string) { n.cores[name] = nil }

// addJoiner starts a server that has no configuration and MinMajority 2,
// so that it waits to be added (as StartServer does for a server that
// joins).
func (n *network) addJoiner(name string, inc uint64) *core {
	cfg := testCoreConfig(name, nil, inc, n.rng)
	cfg.minMajority = 2
	return n.start(name, cfg)
}

// leader is the leader of the highest term among the cores up, or nil.
func (n *network) leader() *core {
	var l *core
	for _, name := range n.names {
		c := n.cores[name]
		if c != nil && c.role == Leader {
			if l == nil || c.term > l.term {
				l = c
			}
		}
	}
	return l
}

// ---- links ------------------------------------------------------------------

// cutOneWay cuts the link from from to to.
func (n *network) cutOneWay(from, to string) { n.cuts[link{from, to}] = true }

// cut cuts the links between x and y in both directions.
func (n *network) cut(x, y string) {
	n.cutOneWay(x, y)
	n.cutOneWay(y, x)
}

// heal restores the links between x and y in both directions.
func (n *network) heal(x, y string) {
	delete(n.cuts, link{x, y})
	delete(n.cuts, link{y, x})
}

// healAll restores every link.
func (n *network) healAll() { n.cuts = map[link]bool{} }

// isolate cuts name off from every other server added so far.
func (n *network) isolate(name string) {
	for _, o := range n.names {
		if o != name {
			n.cut(name, o)
		}
	}
}

// cutLinks lists the cut links, "a->b", sorted.
func (n *network) cutLinks() []string {
	var out []string
	for l := range n.cuts {
		out = append(out, l.from+"->"+l.to)
	}
	slices.Sort(out)
	return out
}

// ---- sending and delivering ---------------------------------------------------

// collect takes name's output: its messages are sent, the rest recorded
// (or handed to output).
func (n *network) collect(name string) {
	c := n.cores[name]
	if c == nil {
		return
	}
	rd := c.takeReady()
	n.send(rd.Messages...)
	if n.output != nil {
		n.output(name, rd)
		return
	}
	n.applied[name] = append(n.applied[name], rd.Committed...)
	n.reads[name] = append(n.reads[name], rd.Reads...)
}

// send puts ms in flight.
func (n *network) send(ms ...Message) {
	for _, m := range ms {
		if !n.lateCut && n.cuts[link{m.From, m.To}] {
			continue
		}
		if n.capacity > 0 && len(n.inFlight) >= n.capacity {
			i := n.rng.IntN(len(n.inFlight))
			n.lose(n.inFlight[i], "(network full)")
			n.inFlight[i] = n.inFlight[len(n.inFlight)-1]
			n.inFlight = n.inFlight[:len(n.inFlight)-1]
		}
		n.inFlight = append(n.inFlight, m)
	}
}

func (n *network) lose(m Message, why string) {
	if n.onLose != nil {
		n.onLose(m, why)
	}
}

// take takes the i-th message in flight off the network.
func (n *network) take(i int) Message {
	m := n.inFlight[i]
	copy(n.inFlight[i:], n.inFlight[i+1:])
	n.inFlight = n.inFlight[:len(n.inFlight)-1]
	return m
}

// arrives reports whether m can be delivered: its receiver is up, its link
// is not cut and drop (if not nil) lets it through. A message that cannot
// is lost.
func (n *network) arrives(m Message, drop func(Message) bool) bool {
	switch {
	case n.cores[m.To] == nil:
		n.lose(m, "(no such server up)")
	case n.cuts[link{m.From, m.To}]:
		n.lose(m, "(link cut)")
	case drop != nil && drop(m):
		n.lose(m, "(filtered)")
	case n.admit != nil && !n.admit(m):
		n.lose(m, "(not admitted)")
	default:
		return true
	}
	return false
}

// hand steps m's receiver with m and takes its output.
func (n *network) hand(m Message) {
	if n.onDeliver != nil {
		n.onDeliver(m)
	}
	n.cores[m.To].step(m)
	if n.onStepped != nil {
		n.onStepped(m)
	}
	n.collect(m.To)
}

// deliverAt delivers the i-th message in flight (or loses it).
func (n *network) deliverAt(i int) {
	if m := n.take(i); n.arrives(m, nil) {
		n.hand(m)
	}
}

// drop loses the i-th message in flight.
func (n *network) drop(i int) { n.lose(n.take(i), "") }

// duplicate sends the i-th message in flight again.
func (n *network) duplicate(i int) { n.inFlight = append(n.inFlight, n.inFlight[i]) }

// deliverAll delivers the messages in flight, oldest first, and every
// message they cause, until none is left.
func (n *network) deliverAll() { n.deliverFiltered(nil, nil) }

// deliverCounting is deliverAll that returns how many of the messages it
// delivers count reports true for.
func (n *network) deliverCounting(count func(Message) bool) int {
	return n.deliverFiltered(nil, count)
}

// deliverDropping is deliverAll that loses the messages drop reports true
// for.
func (n *network) deliverDropping(drop func(Message) bool) { n.deliverFiltered(drop, nil) }

func (n *network) deliverFiltered(drop, count func(Message) bool) int {
	n.t.Helper()
	k := 0
	for i := 0; len(n.inFlight) > 0; i++ {
		if i >= maxDeliveries {
			n.t.Fatalf("messages never stop: %d delivered, %d in flight", i, len(n.inFlight))
		}
		m := n.take(0)
		if !n.arrives(m, drop) {
			continue
		}
		if count != nil && count(m) {
			k++
		}
		n.hand(m)
	}
	return k
}

// ---- ticking ------------------------------------------------------------------

// tick ticks name's core times times, sending what it sends after each
// tick without delivering it.
func (n *network) tick(name string, times int) {
	for i := 0; i < times; i++ {
		n.cores[name].tick()
		n.collect(name)
	}
}

// tickEach ticks every core up once, in the order the servers were added,
// without delivering.
func (n *network) tickEach() {
	for _, name := range n.names {
		if n.cores[name] != nil {
			n.tick(name, 1)
		}
	}
}

// tickAll ticks every core up and delivers everything, ticks times over.
func (n *network) tickAll(ticks int) {
	for i := 0; i < ticks; i++ {
		n.tickEach()
		n.deliverAll()
	}
}

// tickCounting ticks every core up once and delivers everything, counting
// the delivered messages count reports true for.
func (n *network) tickCounting(count func(Message) bool) int {
	n.tickEach()
	return n.deliverCounting(count)
}

// ---- driving a cluster and checking it ------------------------------------------

// forceLeader makes name campaign at once (TriggerElection) and delivers
// everything; it fails unless name ends as the leader.
func (n *network) forceLeader(name string) *core {
	n.t.Helper()
	c := n.cores[name]
	require.NoError(n.t, c.triggerElection(), "triggerElection on %s", name)
	n.collect(name)
	n.deliverAll()
	require.Equal(n.t, Leader, c.role, "%s after a forced election", name)
	return c
}

// settle ticks the network until the leader has committed its whole log,
// every voter's incarnation is bound in a committed configuration and every
// core knows the commit index (or fails after max ticks).
func (n *network) settle(max int) *core {
	n.t.Helper()
	for i := 0; i < max; i++ {
		if l := n.leader(); l != nil && l.commit == l.log.lastIndex() && l.term > 0 {
			if lt, _ := l.log.term(l.commit); lt == l.term && allBound(l.committedConfig()) {
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
	n.t.Fatalf("the cluster did not settle in %d ticks", max)
	return nil
}

// requireOneLeaderPerTerm fails if two cores are leaders of the same term.
func (n *network) requireOneLeaderPerTerm() {
	n.t.Helper()
	seen := map[uint64]string{}
	for _, name := range n.names {
		c := n.cores[name]
		if c == nil || c.role != Leader {
			continue
		}
		if o, ok := seen[c.term]; ok {
			n.t.Fatalf("two leaders in term %d: %s and %s", c.term, o, name)
		}
		seen[c.term] = name
	}
}

// appliedAgree fails unless what the cores handed out for applying agrees
// index by index (State Machine Safety), and returns the longest.
func (n *network) appliedAgree() []Entry {
	n.t.Helper()
	var longest []Entry
	from := ""
	for _, name := range n.names {
		es := n.applied[name]
		for i := range es {
			if i < len(longest) {
				a, b := longest[i], es[i]
				if a.Index != b.Index || a.Term != b.Term || a.Type != b.Type || string(a.Data) != string(b.Data) {
					n.t.Fatalf("applied entries differ at position %d: %s has %d/%d, %s has %d/%d",
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

// TestCoreElectsAndCommits: on a network, three servers elect a leader by
// themselves and commit what it is given, everywhere.
func TestCoreElectsAndCommits(t *testing.T) {
	n := newCluster(t, 1, names3)
	n.tickAll(50)
	l := n.leader()
	require.NotNil(t, l, "no leader after 50 ticks")
	for i := 0; i < 10; i++ {
		_, _, err := l.propose(normal([]byte(fmt.Sprint(i))))
		require.NoError(t, err)
	}
	n.deliverAll()
	n.tickAll(5)
	for _, name := range n.names {
		require.Len(t, normalData(n.applied[name]), 10, "%s applied %v", name, normalData(n.applied[name]))
	}
}
