package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/exraft/exraft"
)

var (
	healTrials = flag.Int("heal", 5, "heal section: trials of each kind of partition")
	cutFor     = flag.Duration("cutfor", 2*time.Second, "heal section: how long a follower stays cut off")
)

// The heal section times how soon a leader reaches a follower again after
// a silent partition: one that drops packets rather than refusing them, so
// that no connection fails, every call on it just goes unanswered. TCP
// itself would resume such a connection only at its next retransmission,
// seconds later as its back-off grows; here a connection that was cut
// never carries anything again, the worst case, so that the figure is the
// time the leader takes to give up on it and dial anew. Each trial is a
// fresh 3-server cluster with the default timeouts and a writer at the
// leader throughout; the time runs from the heal until the follower has
// applied everything the leader had committed at the heal.
var healKinds = []struct {
	name     string
	restarts bool // the follower restarts blank while cut off
}{
	{"follower cut off", false},
	{"follower cut off, restarted blank meanwhile", true},
}

func healMode() {
	fmt.Printf("heal: 3 servers in one process, default timeouts, a follower cut off silently for %v (every connection to and from it drops everything, for good), %d trials of each; the time from the heal until the follower has applied what the leader had committed\n",
		*cutFor, *healTrials)
	fmt.Printf("%-48s %8s %8s %8s\n", "partition", "p50", "max", "target")
	for _, k := range healKinds {
		var ds []time.Duration
		for range *healTrials {
			d, err := healTrial(k.restarts)
			check(err)
			ds = append(ds, d)
		}
		slices.Sort(ds)
		p50, worst := ds[len(ds)/2], ds[len(ds)-1]
		fmt.Printf("%-48s %8v %8v  max<=2s\n", k.name, p50.Round(time.Millisecond), worst.Round(time.Millisecond))
		recordDuration("heal", k.name+", p50", p50, "ms", nil)
		recordDuration("heal", k.name+", max", worst, "ms", atMost(2000))
	}
}

func healTrial(restarts bool) (time.Duration, error) {
	sn := &silentNet{cut: map[string]bool{}}
	c, err := startSilent(sn)
	if err != nil {
		return 0, err
	}
	defer c.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leader, follower, err := leaderAndNext(ctx, c.servers)
	if err != nil {
		return 0, err
	}
	w := startWriter(leader)
	defer w.halt()
	sn.cutOff(follower.Addr())
	if restarts {
		if err := c.restartBlank(follower); err != nil {
			return 0, err
		}
	}
	time.Sleep(*cutFor) // the partition itself, not a wait for a condition
	if err := w.failed(); err != nil {
		return 0, fmt.Errorf("a write with a follower cut off: %w", err)
	}
	commit := leader.Status().CommitIndex
	back := c.byName(follower.Name())
	if got := back.Status().AppliedIndex; got >= commit {
		return 0, fmt.Errorf("%s applied index %d while cut off, the leader's commit being %d: the cut let entries through", follower.Name(), got, commit)
	}
	sn.heal(follower.Addr())
	start := time.Now()
	if _, err := back.WaitStatus(ctx, func(st exraft.Status) bool { return st.AppliedIndex >= commit }); err != nil {
		return 0, fmt.Errorf("waiting for %s to apply index %d after the heal: %w (it has %d)", follower.Name(), commit, err, back.Status().AppliedIndex)
	}
	return time.Since(start), nil
}

// silentCluster is a 3-server cluster whose connections go through a
// silentNet.
type silentCluster struct {
	mu      sync.Mutex
	servers []*exraft.Server
	peers   []exraft.Peer
	dial    func(from string) func(context.Context, string) (net.Conn, error)
}

func startSilent(sn *silentNet) (*silentCluster, error) {
	c := &silentCluster{dial: sn.dialer}
	var lns []net.Listener
	for i := range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		c.peers = append(c.peers, exraft.Peer{Name: fmt.Sprintf("h%d", i), Addr: ln.Addr().String()})
	}
	for i, p := range c.peers {
		s, err := exraft.StartServer(&counter{}, c.config(p, lns[i]))
		if err != nil {
			c.stop()
			return nil, err
		}
		c.servers = append(c.servers, s)
	}
	return c, nil
}

func (c *silentCluster) config(p exraft.Peer, ln net.Listener) exraft.Config {
	return exraft.Config{Name: p.Name, Listener: ln, InitialConfig: c.peers, Dial: c.dial(p.Addr)}
}

// restartBlank stops s and starts a server with its name and address and
// nothing else: a process restarted with its memory lost.
func (c *silentCluster) restartBlank(s *exraft.Server) error {
	if err := s.Stop(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.Addr())
	if err != nil {
		return fmt.Errorf("listening again on %s: %w", s.Addr(), err)
	}
	blank, err := exraft.StartServer(&counter{}, c.config(exraft.Peer{Name: s.Name(), Addr: s.Addr()}, ln))
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.servers {
		if c.servers[i] == s {
			c.servers[i] = blank
		}
	}
	return nil
}

func (c *silentCluster) byName(name string) *exraft.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.servers {
		if s.Name() == name {
			return s
		}
	}
	return nil
}

func (c *silentCluster) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.servers {
		s.Stop()
	}
}

// silentNet is the network of a silentCluster: each server dials through
// it, and it can cut an address off.
type silentNet struct {
	mu    sync.Mutex
	cut   map[string]bool // addresses cut off now
	conns []*silentConn
}

// dialer is the Config.Dial of the server at from.
func (sn *silentNet) dialer(from string) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, to string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", to)
		if err != nil {
			return nil, err
		}
		c := &silentConn{Conn: conn, from: from, to: to}
		sn.mu.Lock()
		defer sn.mu.Unlock()
		c.dead.Store(sn.cut[from] || sn.cut[to])
		sn.conns = append(sn.conns, c)
		return c, nil
	}
}

// cutOff silences every connection to and from addr, and every one made
// until heal.
func (sn *silentNet) cutOff(addr string) {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	sn.cut[addr] = true
	for _, c := range sn.conns {
		if c.from == addr || c.to == addr {
			c.dead.Store(true)
		}
	}
}

// heal lets new connections through again; the silenced ones stay silent.
func (sn *silentNet) heal(addr string) {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	sn.cut[addr] = false
}

// silentConn is a dialed connection that, once dead, drops what either
// side sends without an error, as a network that loses packets would. The
// dialing side alone is wrapped: the accepting side then hears nothing,
// and what it sends is dropped here.
type silentConn struct {
	net.Conn
	from, to string
	dead     atomic.Bool
}

func (c *silentConn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if err != nil || !c.dead.Load() {
			return n, err
		}
	}
}

func (c *silentConn) Write(p []byte) (int, error) {
	if c.dead.Load() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// writer writes at the leader, one write after another, until halted.
type writer struct {
	stopc chan struct{}
	done  chan struct{}
	err   atomic.Value
}

func startWriter(s *exraft.Server) *writer {
	w := &writer{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		cmd := make([]byte, 16)
		for {
			select {
			case <-w.stopc:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			_, err := s.Write(ctx, cmd)
			cancel()
			if err != nil {
				w.err.Store(err)
				return
			}
		}
	}()
	return w
}

func (w *writer) failed() error {
	err, _ := w.err.Load().(error)
	return err
}

func (w *writer) halt() {
	close(w.stopc)
	<-w.done
}
