package testkit

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft"
)

// Options shape a Cluster. The zero value is a cluster of KVs with
// FastConfig, dialing plain TCP.
type Options struct {
	// Net, if not nil, carries every connection a server dials, so that
	// the test can inject faults.
	Net *Net
	// NewSM builds the state machine of server i around kv, the KV that
	// Cluster.KV returns for it; by default the state machine is kv.
	NewSM func(i int, kv *KV) exraft.StateMachine
	// Configure changes server i's Config last, before every start of it.
	Configure func(i int, cfg *exraft.Config)
}

// Cluster is servers raft1..raftN started from the same InitialConfig, on
// listeners opened first so that every address is known. A server stopped
// and started again keeps its name, address and InitialConfig but starts
// blank, as a new incarnation (docs/design.md §2), as a restarted process
// would.
type Cluster struct {
	opts  Options
	peers []exraft.Peer
	order []string // names, in the order of peers

	mu    sync.Mutex
	nodes map[string]*node

	closeOnce sync.Once
	closed    chan struct{} // closed when the test ends: background work stops
}

type node struct {
	index      int
	name, addr string
	srv        *exraft.Server // the current incarnation
	kv         *KV            // its state machine's KV
	down       bool           // stopped and not started again
}

// StartCluster starts n servers and stops them all when the test ends.
func StartCluster(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	c := &Cluster{opts: opts, nodes: map[string]*node{}, closed: make(chan struct{})}
	lis := make([]net.Listener, n)
	for i := range n {
		lis[i] = Listen(t)
		p := exraft.Peer{Name: fmt.Sprintf("raft%d", i+1), Addr: lis[i].Addr().String()}
		c.peers = append(c.peers, p)
		c.order = append(c.order, p.Name)
		c.nodes[p.Name] = &node{index: i, name: p.Name, addr: p.Addr, down: true}
	}
	t.Cleanup(c.stopAll)
	for i, p := range c.peers {
		require.NoError(t, c.boot(c.nodes[p.Name], lis[i]))
	}
	return c
}

// debugLog, when EXRAFT_CHAOS_DEBUG names a file, receives the debug logs
// of every server a Cluster starts: the way to see what the servers did in
// a failing run of a fault-injection test.
var debugLog = func() *slog.Logger {
	path := os.Getenv("EXRAFT_CHAOS_DEBUG")
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		panic(err)
	}
	return slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
}()

// boot starts a blank server for nd on l.
func (c *Cluster) boot(nd *node, l net.Listener) error {
	kv := NewKV()
	var sm exraft.StateMachine = kv
	if c.opts.NewSM != nil {
		sm = c.opts.NewSM(nd.index, kv)
	}
	cfg := FastConfig(nd.name)
	cfg.Listener = l
	cfg.InitialConfig = append([]exraft.Peer(nil), c.peers...)
	if debugLog != nil {
		cfg.Logger = debugLog
	}
	if c.opts.Net != nil {
		c.opts.Net.Attach(&cfg)
	}
	if c.opts.Configure != nil {
		c.opts.Configure(nd.index, &cfg)
	}
	s, err := exraft.StartServer(sm, cfg)
	if err != nil {
		_ = l.Close()
		return fmt.Errorf("StartServer(%s): %w", nd.name, err)
	}
	if s.Name() != nd.name || s.Addr() != nd.addr {
		_ = s.Stop()
		return fmt.Errorf("%s started as %s at %s, want the listener's address %s", nd.name, s.Name(), s.Addr(), nd.addr)
	}
	c.mu.Lock()
	nd.srv, nd.kv, nd.down = s, kv, false
	c.mu.Unlock()
	return nil
}

func (c *Cluster) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

func (c *Cluster) stopAll() {
	c.closeOnce.Do(func() { close(c.closed) })
	c.mu.Lock()
	var ss []*exraft.Server
	for _, nd := range c.nodes {
		if nd.srv != nil {
			ss = append(ss, nd.srv)
		}
	}
	c.mu.Unlock()
	for _, s := range ss {
		_ = exraft.StopServer(s)
	}
}

func (c *Cluster) node(name string) *node {
	nd := c.nodes[name]
	if nd == nil {
		panic("testkit.Cluster: no server named " + name)
	}
	return nd
}

// Stop stops name; it stays down until Start.
func (c *Cluster) Stop(name string) error {
	c.mu.Lock()
	nd := c.node(name)
	s := nd.srv
	nd.down = true
	c.mu.Unlock()
	if err := exraft.StopServer(s); err != nil {
		return fmt.Errorf("StopServer(%s): %w", name, err)
	}
	return nil
}

// Start starts name again, blank, on its old address.
func (c *Cluster) Start(name string) error {
	nd := c.node(name)
	var l net.Listener
	var err error
	// The old listener is closed, but the port may take a moment to be
	// free again.
	if !PollUntil(WaitShort, func() bool { l, err = net.Listen("tcp", nd.addr); return err == nil }) {
		return fmt.Errorf("listen again on %s for %s: %w", nd.addr, name, err)
	}
	return c.boot(nd, l)
}

// Restart stops name and starts it again blank.
func (c *Cluster) Restart(name string) error {
	if err := c.Stop(name); err != nil {
		return err
	}
	return c.Start(name)
}
