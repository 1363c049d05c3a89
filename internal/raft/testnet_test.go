package raft

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// testNet connects cores in memory and delivers their messages in order,
// for tests that drive the protocol step by step.
type testNet struct {
	t     testing.TB
	cores map[string]*core
	names []string
	cut   map[[2]string]bool // directed links that drop messages
	queue []Message
	apps  map[string][]Entry // what each core handed out for applying
	reads map[string][]ReadState
	rng   *rand.Rand
}

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

func newTestNet(t testing.TB, seed uint64, names ...string) *testNet {
	n := &testNet{t: t, cores: map[string]*core{}, cut: map[[2]string]bool{},
		apps: map[string][]Entry{}, reads: map[string][]ReadState{}, rng: rand.New(rand.NewPCG(seed, seed))}
	for i, name := range names {
		n.add(name, testCoreConfig(name, names, uint64(i+1)*1000+seed, n.rng))
	}
	return n
}

func (n *testNet) add(name string, cfg coreConfig) *core {
	c := newCore(cfg)
	if _, ok := n.cores[name]; !ok {
		n.names = append(n.names, name)
	}
	n.cores[name] = c
	n.apps[name] = nil
	n.collect(name)
	return c
}

func (n *testNet) collect(name string) {
	c := n.cores[name]
	if c == nil {
		return
	}
	rd := c.takeReady()
	n.apps[name] = append(n.apps[name], rd.Committed...)
	n.reads[name] = append(n.reads[name], rd.Reads...)
	for _, m := range rd.Messages {
		if !n.cut[[2]string{name, m.To}] {
			n.queue = append(n.queue, m)
		}
	}
}

// deliverAll delivers messages until none are left (bounded).
func (n *testNet) deliverAll() { n.deliverCounting(func(Message) bool { return false }) }

// deliverCounting is deliverAll that also counts the delivered messages
// count reports true for.
func (n *testNet) deliverCounting(count func(Message) bool) int {
	k := 0
	for i := 0; len(n.queue) > 0 && i < 100000; i++ {
		m := n.queue[0]
		n.queue = n.queue[1:]
		c := n.cores[m.To]
		if c == nil || n.cut[[2]string{m.From, m.To}] {
			continue
		}
		if count(m) {
			k++
		}
		c.step(m)
		n.collect(m.To)
	}
	return k
}

func (n *testNet) tickAll(ticks int) {
	for i := 0; i < ticks; i++ {
		for _, name := range n.names {
			if c := n.cores[name]; c != nil {
				c.tick()
				n.collect(name)
			}
		}
		n.deliverAll()
	}
}

func (n *testNet) leader() *core {
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

func (n *testNet) isolate(name string) {
	for _, o := range n.names {
		if o != name {
			n.cut[[2]string{name, o}] = true
			n.cut[[2]string{o, name}] = true
		}
	}
}

func (n *testNet) heal() { n.cut = map[[2]string]bool{} }

func TestCoreElectsAndCommits(t *testing.T) {
	n := newTestNet(t, 1, "a", "b", "c")
	n.tickAll(50)
	l := n.leader()
	if l == nil {
		t.Fatal("no leader after 50 ticks")
	}
	for i := 0; i < 10; i++ {
		if _, _, err := l.propose([][]byte{[]byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	n.deliverAll()
	n.tickAll(5)
	for _, name := range n.names {
		var got []string
		for _, e := range n.apps[name] {
			if e.Type == EntryNormal {
				got = append(got, string(e.Data))
			}
		}
		if len(got) != 10 {
			t.Fatalf("%s applied %v", name, got)
		}
	}
}
