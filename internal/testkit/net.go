package testkit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/exraft/exraft"
)

// Link is the direction From -> To: the connections From dials to To.
// Servers send protocol messages only on connections they dialed (replies
// travel on the other direction's connections), so cutting From -> To drops
// exactly what From sends to To, and a one-way cut is possible.
type Link struct{ From, To string }

var (
	errCut  = errors.New("testkit.Net: link cut")
	errDrop = errors.New("testkit.Net: connection dropped")
)

// Net is a loopback TCP network that injects faults between servers: links
// cut one way or both, servers isolated, partitions into groups, and
// flakiness (delayed writes, dropped connections). It acts on the dialing
// side only: a server gets it as its Config.Dial, a cut link refuses new
// dials and closes its connections, which closes the accepted ends too.
// Clients (exraft.Client, exraft.Write...) dial on their own and are never
// cut: a test can always ask any server what it thinks.
type Net struct {
	mu     sync.Mutex
	byAddr map[string]string // listen address -> server name
	names  []string          // every server registered, in order
	cut    map[Link]bool
	conns  map[*conn]struct{}

	// Each Write on a connection is delayed by up to maxDelay with
	// probability delayPer1000/1000, or the connection is closed instead
	// with probability dropPer1000/1000.
	flaky        atomic.Bool
	delayPer1000 int
	dropPer1000  int
	maxDelay     time.Duration

	// silent: cuts lose what crosses them instead of closing connections
	// (see MakeSilent).
	silent atomic.Bool
}

// NewNet returns a network with every link working.
func NewNet() *Net {
	return &Net{byAddr: map[string]string{}, cut: map[Link]bool{}, conns: map[*conn]struct{}{}}
}

// register names the server that listens on addr: dials to addr are on the
// link to name. A server restarted on its old address registers again.
func (n *Net) register(name, addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.byAddr[addr]; !ok {
		n.names = append(n.names, name)
	}
	n.byAddr[addr] = name
}

// Attach puts a server on the network: it registers cfg.Name at the address
// of cfg.Listener and dials through the network.
func (n *Net) Attach(cfg *exraft.Config) {
	n.register(cfg.Name, cfg.Listener.Addr().String())
	cfg.Dial = n.Dialer(cfg.Name)
}

// Dialer returns the Config.Dial of server from.
func (n *Net) Dialer(from string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		n.mu.Lock()
		link := Link{from, n.byAddr[addr]}
		blocked := n.cut[link]
		n.mu.Unlock()
		if blocked {
			if n.silent.Load() {
				<-ctx.Done() // no answer, as no packet comes back
			}
			return nil, fmt.Errorf("dial %s -> %s: %w", link.From, link.To, errCut)
		}
		var d net.Dialer
		raw, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		c := &conn{Conn: raw, n: n, link: link}
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.cut[link] { // cut while dialing
			_ = raw.Close()
			return nil, fmt.Errorf("dial %s -> %s: %w", link.From, link.To, errCut)
		}
		n.conns[c] = struct{}{}
		return c, nil
	}
}

// MakeFlaky turns on random delays and dropped connections.
func (n *Net) MakeFlaky(delayPer1000, dropPer1000 int, maxDelay time.Duration) {
	n.mu.Lock()
	n.delayPer1000, n.dropPer1000, n.maxDelay = delayPer1000, dropPer1000, maxDelay
	n.mu.Unlock()
	n.flaky.Store(true)
}

// MakeSilent makes every later cut silent, as a network that drops packets
// rather than refusing them: a connection on a cut link stays open, what
// is written on it vanishes and nothing more arrives, and it stays so after
// the link heals, as one whose packets were lost beyond TCP's retries; a
// dial over a cut link hangs until its context ends. Only new connections
// work again after a heal, so a server must notice the silence and redial.
func (n *Net) MakeSilent() { n.silent.Store(true) }

// MakeReliable turns flakiness off; cut links stay cut.
func (n *Net) MakeReliable() { n.flaky.Store(false) }

// Cut cuts the link between a and b both ways.
func (n *Net) Cut(a, b string) { n.set(true, Link{a, b}, Link{b, a}) }

// CutOneWay drops what from sends to to; to can still send to from.
func (n *Net) CutOneWay(from, to string) { n.set(true, Link{from, to}) }

// Mend restores the link between a and b both ways.
func (n *Net) Mend(a, b string) { n.set(false, Link{a, b}, Link{b, a}) }

// Isolate cuts every link of name, both ways.
func (n *Net) Isolate(name string) { n.set(true, n.linksOf(name)...) }

// Heal restores every link of name, both ways.
func (n *Net) Heal(name string) { n.set(false, n.linksOf(name)...) }

// HealAll restores every link.
func (n *Net) HealAll() {
	n.mu.Lock()
	n.cut = map[Link]bool{}
	n.mu.Unlock()
}

// Partition makes groups: every link within a group works, every link
// between two groups is cut. A server in no group is isolated.
func (n *Net) Partition(groups ...[]string) {
	group := map[string]int{}
	for i, g := range groups {
		for _, name := range g {
			group[name] = i + 1
		}
	}
	n.mu.Lock()
	var cut, mended []Link
	for _, a := range n.names {
		for _, b := range n.names {
			switch {
			case a == b:
			case group[a] != 0 && group[a] == group[b]:
				mended = append(mended, Link{a, b})
			default:
				cut = append(cut, Link{a, b})
			}
		}
	}
	n.mu.Unlock()
	n.set(false, mended...)
	n.set(true, cut...)
}

// CutLinks lists the links that are cut, sorted, for failure messages and
// for a nemesis that heals one of them.
func (n *Net) CutLinks() []Link {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Link, 0, len(n.cut))
	for l := range n.cut {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].From != out[j].From {
			return out[i].From < out[j].From
		}
		return out[i].To < out[j].To
	})
	return out
}

func (n *Net) linksOf(name string) []Link {
	n.mu.Lock()
	defer n.mu.Unlock()
	var links []Link
	for _, o := range n.names {
		links = append(links, Link{name, o}, Link{o, name})
	}
	return links
}

// set cuts or restores links, and closes the connections of every link it
// cuts so that nothing already in flight gets through.
func (n *Net) set(cut bool, links ...Link) {
	var toClose []*conn
	n.mu.Lock()
	for _, l := range links {
		switch {
		case l.From == l.To:
		case !cut:
			delete(n.cut, l)
		default:
			n.cut[l] = true
			for c := range n.conns {
				switch {
				case c.link != l:
				case n.silent.Load():
					c.holed.Store(true)
				default:
					toClose = append(toClose, c)
				}
			}
		}
	}
	n.mu.Unlock()
	for _, c := range toClose {
		_ = c.Close()
	}
}

// conn is a connection dialed through a Net; it checks its link on every
// Read and Write.
type conn struct {
	net.Conn
	n     *Net
	link  Link
	once  sync.Once
	holed atomic.Bool // cut silently: nothing crosses it any more
}

func (c *conn) isCut() bool {
	c.n.mu.Lock()
	defer c.n.mu.Unlock()
	return c.n.cut[c.link]
}

func (c *conn) Read(p []byte) (int, error) {
	for {
		if !c.holed.Load() && c.isCut() {
			_ = c.Close()
			return 0, errCut
		}
		n, err := c.Conn.Read(p)
		if err != nil || !c.holed.Load() {
			return n, err
		}
		// Lost on the way: wait for more, which is lost too, until the
		// connection is closed.
	}
}

func (c *conn) Write(p []byte) (int, error) {
	if c.holed.Load() {
		return len(p), nil // vanishes
	}
	if c.isCut() {
		_ = c.Close()
		return 0, errCut
	}
	if c.n.flaky.Load() {
		c.n.mu.Lock()
		drop, delay, maxDelay := c.n.dropPer1000, c.n.delayPer1000, c.n.maxDelay
		c.n.mu.Unlock()
		switch r := rand.IntN(1000); {
		case r < drop:
			_ = c.Close()
			return 0, errDrop
		case r < drop+delay && maxDelay > 0:
			time.Sleep(rand.N(maxDelay)) // injected latency, not a wait
		}
	}
	return c.Conn.Write(p)
}

func (c *conn) Close() error {
	c.once.Do(func() {
		c.n.mu.Lock()
		delete(c.n.conns, c)
		c.n.mu.Unlock()
	})
	return c.Conn.Close()
}
