package exraft_test

// Linearizability under faults: real servers on loopback TCP, a nemesis that
// cuts links, partitions the cluster, stops and restarts servers, forces
// elections and changes the membership, and concurrent clients whose history
// is checked with porcupine against a sequential key-value model.
//
// This file also holds the fault-injection harness that scenarios_test.go
// uses: chaosNet (a network with per-link cuts and optional flakiness) and
// chaosCluster (servers that can be stopped and started again as new
// incarnations on the same address).
//
// The nemesis draws its choices from a seed that every test logs; set
// EXRAFT_CHAOS_SEED to replay the same choices (timing still varies).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/exraft/exraft"
)

// ---------------------------------------------------------------------------
// chaosNet: a network with directed links that can be cut one by one

// chaosLink is the direction from -> to: the connections from dials to to.
// Servers send protocol messages only on connections they dialed (replies
// travel on the other direction's connections), so cutting from -> to drops
// exactly the messages from sends to to.
type chaosLink struct{ from, to string }

var (
	errChaosCut  = errors.New("chaosNet: link cut")
	errChaosDrop = errors.New("chaosNet: connection dropped")
)

// chaosNet enforces cuts on the dialing side: a cut link refuses new dials
// and closes its connections, which closes the accepted end too. Client
// connections (exraft.Client) do not go through it and are never cut.
type chaosNet struct {
	mu     sync.Mutex
	byAddr map[string]string // listen address -> server name
	names  []string
	cut    map[chaosLink]bool
	conns  map[*chaosConn]struct{}

	// Flakiness, for an unreliable network: each Write on a connection is
	// delayed by up to maxDelay with probability delayPer1000/1000, and the
	// connection is closed instead with probability dropPer1000/1000.
	flaky        atomic.Bool
	delayPer1000 int
	dropPer1000  int
	maxDelay     time.Duration
}

func newChaosNet() *chaosNet {
	return &chaosNet{
		byAddr: map[string]string{},
		cut:    map[chaosLink]bool{},
		conns:  map[*chaosConn]struct{}{},
	}
}

// makeFlaky turns on random delays and dropped connections.
func (n *chaosNet) makeFlaky(delayPer1000, dropPer1000 int, maxDelay time.Duration) {
	n.mu.Lock()
	n.delayPer1000, n.dropPer1000, n.maxDelay = delayPer1000, dropPer1000, maxDelay
	n.mu.Unlock()
	n.flaky.Store(true)
}

// register names the server that listens on addr.
func (n *chaosNet) register(name, addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.byAddr[addr]; !ok {
		n.names = append(n.names, name)
	}
	n.byAddr[addr] = name
}

// dialer returns the Config.Dial of server from.
func (n *chaosNet) dialer(from string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		n.mu.Lock()
		link := chaosLink{from, n.byAddr[addr]}
		blocked := n.cut[link]
		n.mu.Unlock()
		if blocked {
			return nil, fmt.Errorf("dial %s -> %s: %w", link.from, link.to, errChaosCut)
		}
		var d net.Dialer
		raw, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		c := &chaosConn{Conn: raw, n: n, link: link}
		n.mu.Lock()
		if n.cut[link] {
			n.mu.Unlock()
			_ = raw.Close()
			return nil, fmt.Errorf("dial %s -> %s: %w", link.from, link.to, errChaosCut)
		}
		n.conns[c] = struct{}{}
		n.mu.Unlock()
		return c, nil
	}
}

type chaosConn struct {
	net.Conn
	n    *chaosNet
	link chaosLink
	once sync.Once
}

func (c *chaosConn) isCut() bool {
	c.n.mu.Lock()
	defer c.n.mu.Unlock()
	return c.n.cut[c.link]
}

func (c *chaosConn) Read(p []byte) (int, error) {
	if c.isCut() {
		_ = c.Close()
		return 0, errChaosCut
	}
	return c.Conn.Read(p)
}

func (c *chaosConn) Write(p []byte) (int, error) {
	if c.isCut() {
		_ = c.Close()
		return 0, errChaosCut
	}
	if c.n.flaky.Load() {
		c.n.mu.Lock()
		drop, delay, maxDelay := c.n.dropPer1000, c.n.delayPer1000, c.n.maxDelay
		c.n.mu.Unlock()
		switch r := rand.IntN(1000); {
		case r < drop:
			_ = c.Close()
			return 0, errChaosDrop
		case r < drop+delay && maxDelay > 0:
			time.Sleep(rand.N(maxDelay)) // injected latency, not a wait
		}
	}
	return c.Conn.Write(p)
}

func (c *chaosConn) Close() error {
	c.once.Do(func() {
		c.n.mu.Lock()
		delete(c.n.conns, c)
		c.n.mu.Unlock()
	})
	return c.Conn.Close()
}

// setCut cuts or heals the given directed links and closes the connections
// of every link it cuts.
func (n *chaosNet) setCut(cut bool, links ...chaosLink) {
	var toClose []*chaosConn
	n.mu.Lock()
	for _, l := range links {
		if l.from == l.to {
			continue
		}
		if !cut {
			delete(n.cut, l)
			continue
		}
		n.cut[l] = true
		for c := range n.conns {
			if c.link == l {
				toClose = append(toClose, c)
			}
		}
	}
	n.mu.Unlock()
	for _, c := range toClose {
		_ = c.Close()
	}
}

// cutBoth cuts the link between a and b in both directions.
func (n *chaosNet) cutBoth(a, b string) { n.setCut(true, chaosLink{a, b}, chaosLink{b, a}) }

// cutOneWay drops what from sends to to; to can still send to from.
func (n *chaosNet) cutOneWay(from, to string) { n.setCut(true, chaosLink{from, to}) }

func (n *chaosNet) healBoth(a, b string) { n.setCut(false, chaosLink{a, b}, chaosLink{b, a}) }

// isolate cuts every link of name, both ways.
func (n *chaosNet) isolate(name string) {
	n.mu.Lock()
	var links []chaosLink
	for _, o := range n.names {
		links = append(links, chaosLink{name, o}, chaosLink{o, name})
	}
	n.mu.Unlock()
	n.setCut(true, links...)
}

// heal restores every link of name, both ways.
func (n *chaosNet) heal(name string) {
	n.mu.Lock()
	var links []chaosLink
	for _, o := range n.names {
		links = append(links, chaosLink{name, o}, chaosLink{o, name})
	}
	n.mu.Unlock()
	n.setCut(false, links...)
}

// partition makes groups: every link within a group works, every link
// between two groups is cut. A server in no group is isolated.
func (n *chaosNet) partition(groups ...[]string) {
	group := map[string]int{}
	for i, g := range groups {
		for _, name := range g {
			group[name] = i + 1
		}
	}
	n.mu.Lock()
	var cut, healed []chaosLink
	for _, a := range n.names {
		for _, b := range n.names {
			if a == b {
				continue
			}
			if group[a] != 0 && group[a] == group[b] {
				healed = append(healed, chaosLink{a, b})
			} else {
				cut = append(cut, chaosLink{a, b})
			}
		}
	}
	n.mu.Unlock()
	n.setCut(false, healed...)
	n.setCut(true, cut...)
}

// healAll restores every link.
func (n *chaosNet) healAll() {
	n.mu.Lock()
	n.cut = map[chaosLink]bool{}
	n.mu.Unlock()
}

// cutLinks lists the directed links that are cut, sorted.
func (n *chaosNet) cutLinks() []chaosLink {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]chaosLink, 0, len(n.cut))
	for l := range n.cut {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].from != out[j].from {
			return out[i].from < out[j].from
		}
		return out[i].to < out[j].to
	})
	return out
}

// ---------------------------------------------------------------------------
// chaosCluster: servers that can be stopped and started again

type chaosNode struct {
	name, addr string
	srv        *exraft.Server // the current incarnation
	kv         *kvSM          // its state machine
	down       bool           // stopped and not started again
}

// chaosCluster is a cluster on a chaosNet whose servers n1..nN all start
// from the same InitialConfig. A server started again keeps its name,
// address and InitialConfig but starts blank, as a new incarnation.
type chaosCluster struct {
	net   *chaosNet
	peers []exraft.Peer
	order []string // names, sorted

	mu    sync.Mutex
	nodes map[string]*chaosNode

	closeOnce sync.Once
	closed    chan struct{} // closed when the test ends: background work stops
}

func newChaosCluster(t testing.TB, n int, cn *chaosNet) *chaosCluster {
	t.Helper()
	c := &chaosCluster{net: cn, nodes: map[string]*chaosNode{}, closed: make(chan struct{})}
	lis := make([]net.Listener, n)
	for i := range n {
		lis[i] = listen(t)
		p := exraft.Peer{Name: fmt.Sprintf("n%d", i+1), Addr: lis[i].Addr().String()}
		c.peers = append(c.peers, p)
		c.order = append(c.order, p.Name)
		c.nodes[p.Name] = &chaosNode{name: p.Name, addr: p.Addr, down: true}
		cn.register(p.Name, p.Addr)
	}
	sort.Strings(c.order)
	t.Cleanup(c.stopAll)
	for i, p := range c.peers {
		if err := c.boot(c.nodes[p.Name], lis[i]); err != nil {
			t.Fatalf("StartServer(%s): %v", p.Name, err)
		}
	}
	return c
}

// boot starts a blank server for node on l.
func (c *chaosCluster) boot(node *chaosNode, l net.Listener) error {
	kv := newKV()
	cfg := fastConfig(node.name)
	cfg.Listener = l
	cfg.Dial = c.net.dialer(node.name)
	cfg.InitialConfig = append([]exraft.Peer(nil), c.peers...)
	if chaosDebugLog != nil {
		cfg.Logger = chaosDebugLog
	}
	s, err := exraft.StartServer(kv, cfg)
	if err != nil {
		_ = l.Close()
		return err
	}
	if s.Addr() != node.addr {
		_ = s.Stop()
		return fmt.Errorf("%s started on %s, want %s", node.name, s.Addr(), node.addr)
	}
	c.mu.Lock()
	node.srv, node.kv, node.down = s, kv, false
	c.mu.Unlock()
	return nil
}

func (c *chaosCluster) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

func (c *chaosCluster) stopAll() {
	c.closeOnce.Do(func() { close(c.closed) })
	c.mu.Lock()
	var ss []*exraft.Server
	for _, node := range c.nodes {
		if node.srv != nil {
			ss = append(ss, node.srv)
		}
	}
	c.mu.Unlock()
	for _, s := range ss {
		_ = exraft.StopServer(s)
	}
}

func (c *chaosCluster) names() []string { return append([]string(nil), c.order...) }

func (c *chaosCluster) node(name string) *chaosNode {
	n := c.nodes[name]
	if n == nil {
		panic("chaosCluster: no server named " + name)
	}
	return n
}

// server returns the current incarnation of name (possibly stopped).
func (c *chaosCluster) server(name string) *exraft.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.node(name).srv
}

func (c *chaosCluster) kvOf(name string) *kvSM {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.node(name).kv
}

func (c *chaosCluster) addrOf(name string) string { return c.node(name).addr }

func (c *chaosCluster) peerOf(name string) exraft.Peer {
	return exraft.Peer{Name: name, Addr: c.node(name).addr}
}

func (c *chaosCluster) isDown(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.node(name).down
}

// live returns the running servers, by name.
func (c *chaosCluster) live() []*exraft.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*exraft.Server
	for _, name := range c.order {
		if n := c.nodes[name]; !n.down {
			out = append(out, n.srv)
		}
	}
	return out
}

// stopNode stops name; it stays down until startNode.
func (c *chaosCluster) stopNode(name string) error {
	c.mu.Lock()
	n := c.node(name)
	s := n.srv
	n.down = true
	c.mu.Unlock()
	if err := exraft.StopServer(s); err != nil {
		return fmt.Errorf("StopServer(%s): %w", name, err)
	}
	return nil
}

// startNode starts name again, blank, on its old address.
func (c *chaosCluster) startNode(name string) error {
	n := c.node(name)
	deadline := time.Now().Add(waitShort)
	for {
		l, err := net.Listen("tcp", n.addr)
		if err == nil {
			return c.boot(n, l)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("listen again on %s for %s: %w", n.addr, name, err)
		}
		time.Sleep(10 * time.Millisecond) // the port is still held: poll until free
	}
}

// leader returns a running server that reports itself leader, the one of
// the highest term if there are several, or nil.
func (c *chaosCluster) leader() *exraft.Server {
	var best *exraft.Server
	var bestTerm uint64
	for _, s := range c.live() {
		if st := s.Status(); st.Role == exraft.Leader && (best == nil || st.Term > bestTerm) {
			best, bestTerm = s, st.Term
		}
	}
	return best
}

// leaderWithin waits up to d for a leader, without failing the test.
func (c *chaosCluster) leaderWithin(d time.Duration) *exraft.Server {
	var l *exraft.Server
	exraft.PollUntil(d, func() bool {
		l = c.leader()
		return l != nil || c.isClosed()
	})
	return l
}

// describe summarizes every server's status, for failure messages.
func (c *chaosCluster) describe() string {
	var b strings.Builder
	for _, name := range c.order {
		if c.isDown(name) {
			fmt.Fprintf(&b, "[%s down] ", name)
			continue
		}
		st := c.server(name).Status()
		fmt.Fprintf(&b, "[%s %v t%d lead=%q commit=%d last=%d applied=%d members=%v learners=%v] ",
			name, st.Role, st.Term, st.Leader.Name, st.CommitIndex, st.LastIndex, st.AppliedIndex, memberNames(st.Members), memberNames(st.Learners))
	}
	if cut := c.net.cutLinks(); len(cut) > 0 {
		fmt.Fprintf(&b, "cut: %v", cut)
	}
	return b.String()
}

// maxCommit is the highest commit index among the running servers.
func (c *chaosCluster) maxCommit() uint64 {
	var m uint64
	for _, s := range c.live() {
		m = max(m, s.Status().CommitIndex)
	}
	return m
}

// caughtUp reports whether every server runs, is a voter of the leader's
// configuration, nothing is being caught up or left uncommitted, and every
// server follows the leader and has applied all that it committed.
func (c *chaosCluster) caughtUp() error {
	l := c.leader()
	if l == nil {
		return errors.New("no leader")
	}
	ls := l.Status()
	if len(ls.Learners) > 0 {
		return fmt.Errorf("leader %s is catching up %v", ls.Name, ls.Learners)
	}
	if got := memberNames(ls.Members); !sameStrings(got, c.order) {
		return fmt.Errorf("leader %s has members %v, want %v", ls.Name, got, c.order)
	}
	if ls.LastIndex != ls.CommitIndex {
		return fmt.Errorf("leader %s: last index %d, commit index %d", ls.Name, ls.LastIndex, ls.CommitIndex)
	}
	live := c.live()
	if len(live) != len(c.order) {
		return fmt.Errorf("only %v run", names(live))
	}
	for _, s := range live {
		st := s.Status()
		if st.Term != ls.Term || st.Leader.Name != ls.Name || st.CommitIndex != ls.CommitIndex || st.AppliedIndex != ls.CommitIndex {
			return fmt.Errorf("%s: term %d leader %q commit %d applied %d; leader %s: term %d commit %d",
				st.Name, st.Term, st.Leader.Name, st.CommitIndex, st.AppliedIndex, ls.Name, ls.Term, ls.CommitIndex)
		}
	}
	return nil
}

func (c *chaosCluster) awaitCaughtUp(t testing.TB, timeout time.Duration) {
	t.Helper()
	var why error
	eventually(t, timeout, func() bool {
		why = c.caughtUp()
		return why == nil
	}, "the cluster to catch up (last: %v)", lastErr{&why})
}

// settle waits until a first leader has bound every server's incarnation:
// two writes, each replicated to everyone.
func (c *chaosCluster) settle(t testing.TB) {
	t.Helper()
	for i := range 2 {
		writeAny(t, c.live(), fmt.Sprintf("set settle %d", i))
		c.awaitCaughtUp(t, waitLong)
	}
}

// awaitConverged heals the network, commits one more write, waits until
// every server has applied everything, and checks that all of them hold the
// same state and applied the same commands in the same order. It returns the
// leader and that common history.
func (c *chaosCluster) awaitConverged(t testing.TB, tag string) (*exraft.Server, []string) {
	t.Helper()
	c.net.healAll()
	for _, name := range c.order {
		if c.isDown(name) {
			t.Fatalf("awaitConverged: %s is down", name)
		}
	}
	writeAny(t, c.live(), "set converged "+tag)
	c.awaitCaughtUp(t, waitLong)
	live := c.live()
	ref := live[0]
	dump := dirty(ref, "dump")
	hist := c.kvOf(ref.Name()).history()
	for _, s := range live[1:] {
		if h := c.kvOf(s.Name()).history(); !sameStrings(h, hist) {
			t.Fatalf("after convergence %s and %s applied different commands: %s\nstatus: %s",
				ref.Name(), s.Name(), historyDiff(hist, h), c.describe())
		}
		if d := dirty(s, "dump"); d != dump {
			t.Fatalf("after convergence ReadDirty(dump) differs:\n%s:\n%s\n%s:\n%s\nstatus: %s", ref.Name(), dump, s.Name(), d, c.describe())
		}
	}
	for _, s := range live {
		if kv := c.kvOf(s.Name()); kv.overlap.Load() {
			t.Fatalf("%s: the state machine was called concurrently", s.Name())
		}
	}
	l := c.leader()
	if l == nil {
		t.Fatalf("no leader after convergence")
	}
	return l, hist
}

// historyDiff describes where two applied histories first differ.
func historyDiff(a, b []string) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	at := func(h []string) string {
		if i < len(h) {
			return strconv.Quote(h[i])
		}
		return "<end>"
	}
	return fmt.Sprintf("lengths %d and %d, first difference at %d: %s vs %s", len(a), len(b), i, at(a), at(b))
}

// rejoinWatch follows, in the background, a server started again until its
// new incarnation is a voter. First it waits up to autoWait for the leader
// to re-admit the server on its own (auto-rejoin), as far as Status shows:
// Status does not show incarnations, so this only approximates it (the
// server caught up past what was committed when it came back, so a leader
// heard from the new incarnation; then that leader catches nobody up and
// the server has committed all the leader had appended, which includes the
// re-admitting configuration entry). Then it confirms with AddServer of the
// same Peer, which returns once the configured incarnation is the running
// one, re-admitting it if that had not happened yet.
type rejoinWatch struct {
	name     string
	auto     bool // re-admitted on its own, as far as Status shows
	err      error
	finished chan struct{}
}

func (c *chaosCluster) watchRejoin(name string, commit uint64, autoWait time.Duration) *rejoinWatch {
	w := &rejoinWatch{name: name, finished: make(chan struct{})}
	go func() {
		defer close(w.finished)
		w.auto = c.awaitAutoRejoin(name, commit, autoWait)
		w.err = c.addMember(name, waitLong)
	}()
	return w
}

// done reports, without blocking, whether the watch has finished.
func (w *rejoinWatch) done() bool {
	select {
	case <-w.finished:
		return true
	default:
		return false
	}
}

// wait waits for the watch and returns AddServer's error.
func (w *rejoinWatch) wait() error {
	<-w.finished
	return w.err
}

// awaitAutoRejoin: see rejoinWatch.
func (c *chaosCluster) awaitAutoRejoin(name string, commit uint64, timeout time.Duration) bool {
	var target, term uint64
	var leader string
	deadline := time.Now().Add(timeout)
	for ; time.Now().Before(deadline) && !c.isClosed(); time.Sleep(pollInterval) { // polling under a deadline
		if c.isDown(name) {
			continue
		}
		xs := c.server(name).Status()
		if xs.AppliedIndex < commit {
			continue
		}
		l := c.leader()
		if l == nil {
			target = 0
			continue
		}
		ls := l.Status()
		if containsPeerName(ls.Learners, name) || !containsPeerName(ls.Members, name) {
			target = 0
			continue
		}
		if target == 0 || leader != ls.Name || term != ls.Term {
			target, leader, term = ls.LastIndex, ls.Name, ls.Term
			continue
		}
		if xs.Term == ls.Term && xs.Leader.Name == ls.Name && xs.CommitIndex >= target {
			return true
		}
	}
	return false
}

func containsPeerName(ps []exraft.Peer, name string) bool {
	for _, p := range ps {
		if p.Name == name {
			return true
		}
	}
	return false
}

// removeMember removes name from the configuration through whichever server
// leads, retrying while leadership moves.
func (c *chaosCluster) removeMember(name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) && !c.isClosed() {
		l := c.leaderWithin(time.Until(deadline))
		if l == nil {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := l.RemoveServer(ctx, name)
		cancel()
		switch {
		case err == nil, errors.Is(err, exraft.ErrUnknownServer):
			if !containsPeerName(l.Status().Members, name) {
				return nil
			}
		case errors.Is(err, exraft.ErrNotLeader), errors.Is(err, exraft.ErrLeadershipLost),
			errors.Is(err, exraft.ErrStopped), errors.Is(err, context.DeadlineExceeded):
		default:
			return fmt.Errorf("RemoveServer(%s) on %s: %w", name, l.Name(), err)
		}
		last = err
		time.Sleep(20 * time.Millisecond) // backoff before asking the next leader
	}
	return fmt.Errorf("RemoveServer(%s) did not commit within %v (last error: %v)", name, timeout, last)
}

// addMember adds name (at its address) through whichever server leads,
// retrying while leadership moves.
func (c *chaosCluster) addMember(name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) && !c.isClosed() {
		l := c.leaderWithin(time.Until(deadline))
		if l == nil {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := l.AddServer(ctx, c.peerOf(name))
		cancel()
		switch {
		case err == nil:
			if containsPeerName(l.Status().Members, name) {
				return nil
			}
		case errors.Is(err, exraft.ErrNotLeader), errors.Is(err, exraft.ErrLeadershipLost),
			errors.Is(err, exraft.ErrStopped), errors.Is(err, context.DeadlineExceeded):
		default:
			return fmt.Errorf("AddServer(%s) on %s: %w", name, l.Name(), err)
		}
		last = err
		time.Sleep(20 * time.Millisecond) // backoff before asking the next leader
	}
	return fmt.Errorf("AddServer(%s) did not commit within %v (last error: %v)", name, timeout, last)
}

// chaosDebugLog, when EXRAFT_CHAOS_DEBUG names a file, receives the debug
// logs of every server the chaos harness starts.
var chaosDebugLog = func() *slog.Logger {
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

// chaosSeed returns the seed of the test's random choices and logs it.
func chaosSeed(t testing.TB) uint64 {
	t.Helper()
	if s := os.Getenv("EXRAFT_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("EXRAFT_CHAOS_SEED=%q: %v", s, err)
		}
		t.Logf("seed %d (from EXRAFT_CHAOS_SEED)", v)
		return v
	}
	v := uint64(time.Now().UnixNano())
	t.Logf("seed %d (set EXRAFT_CHAOS_SEED=%d to replay the random choices)", v, v)
	return v
}

// chaosPause sleeps for a random time in [lo, hi) milliseconds, or until ctx
// ends: the pacing of a nemesis, not a wait for a condition.
func chaosPause(ctx context.Context, rng *rand.Rand, lo, hi int) {
	d := time.Duration(lo+rng.IntN(hi-lo)) * time.Millisecond
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// chaosLog records what a nemesis did, with times, and prints it if the test
// fails.
type chaosLog struct {
	start time.Time
	mu    sync.Mutex
	lines []string
}

func newChaosLog(t testing.TB) *chaosLog {
	l := &chaosLog{start: time.Now()}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("EXRAFT_CHAOS_LOG") != "" {
			l.mu.Lock()
			defer l.mu.Unlock()
			t.Logf("nemesis schedule:\n%s", strings.Join(l.lines, "\n"))
		}
	})
	return l
}

func (l *chaosLog) note(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf("%8.3fs  ", time.Since(l.start).Seconds())+fmt.Sprintf(format, args...))
}

func (l *chaosLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

// ---------------------------------------------------------------------------
// The key-value model and the history

const (
	linClients      = 6
	linKeys         = 5
	linOpTimeout    = time.Second
	linNemesisTime  = 8 * time.Second
	linCheckTimeout = 30 * time.Second
	linMinWrites    = 200
	linMinReads     = 50
)

type linInput struct {
	put      bool
	key, val string
}

// linOutput: for a put, the previous value ("" for none); for a get, the
// value. unknown: a put whose outcome the client could not learn.
type linOutput struct {
	val     string
	unknown bool
}

// linModel is a register per key. A put returns the value it replaced; one
// with an unknown outcome is accepted whether or not it took effect, because
// it is recorded as returning at the end of the history, where it can be
// linearized after everything that observed its absence.
var linModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(linInput).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(string), input.(linInput), output.(linOutput)
		if in.put {
			if out.unknown || out.val == st {
				return true, in.val
			}
			return false, st
		}
		return out.val == st, st
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		switch {
		case !in.put:
			return fmt.Sprintf("get(%s) -> %q", in.key, out.val)
		case out.unknown:
			return fmt.Sprintf("put(%s, %s) -> unknown", in.key, in.val)
		}
		return fmt.Sprintf("put(%s, %s) -> was %q", in.key, in.val, out.val)
	},
	DescribeState: func(state any) string { return strconv.Quote(state.(string)) },
}

type linOp struct {
	client    int // porcupine's ClientId
	in        linInput
	out       linOutput
	call, ret int64
}

// linRun is one run: the cluster, the clients and the history they record.
type linRun struct {
	c      *chaosCluster
	start  time.Time
	keys   []string
	nextID atomic.Int64

	mu  sync.Mutex
	ops []linOp

	writesOK, writesUnknown, writesFailed atomic.Int64
	readsOK, readsFailed                  atomic.Int64
}

func (r *linRun) now() int64 { return int64(time.Since(r.start)) }

func (r *linRun) record(op linOp) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

type linOutcome int

const (
	linOK      linOutcome = iota
	linFailed             // certainly had no effect
	linUnknown            // may or may not have taken effect
)

// linClient issues one operation at a time, following redirects.
type linClient struct {
	r      *linRun
	index  int // unique across the run; names the values it writes
	id     int // porcupine ClientId: a new one after each unknown outcome
	rng    *rand.Rand
	remote *exraft.Client // nil: call the Server methods in-process
	target string
	seq    int
}

func (cl *linClient) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		cl.one()
	}
}

func (cl *linClient) one() {
	r := cl.r
	in := linInput{put: cl.rng.IntN(2) == 0, key: r.keys[cl.rng.IntN(len(r.keys))]}
	payload := "get " + in.key
	if in.put {
		cl.seq++
		in.val = fmt.Sprintf("c%d.%d", cl.index, cl.seq)
		payload = "set " + in.key + " " + in.val
	}
	call := r.now()
	res, outcome := cl.execute(in.put, []byte(payload))
	ret := r.now()
	op := linOp{client: cl.id, in: in, call: call, ret: ret}
	switch {
	case outcome == linOK && in.put:
		op.out.val = string(res)
		if op.out.val == "ok" { // kvSM's answer when the key had no value
			op.out.val = ""
		}
		r.writesOK.Add(1)
	case outcome == linOK:
		op.out.val = string(res)
		r.readsOK.Add(1)
	case in.put && outcome == linUnknown:
		op.out.unknown = true
		op.ret = -1 // set to the end of the history once it is known
		r.writesUnknown.Add(1)
		// Like a crashed process, the client goes on under a new identity:
		// its unknown operation stays pending until the end.
		cl.id = int(r.nextID.Add(1) - 1)
	case in.put:
		r.writesFailed.Add(1)
		return // certainly not applied: leave it out
	default:
		r.readsFailed.Add(1)
		return // a failed read tells nothing
	}
	r.record(op)
}

func (cl *linClient) call(ctx context.Context, put bool, payload []byte) ([]byte, error) {
	if cl.remote != nil {
		addr := cl.r.c.addrOf(cl.target)
		if put {
			return cl.remote.Write(ctx, addr, payload)
		}
		return cl.remote.Read(ctx, addr, payload)
	}
	s := cl.r.c.server(cl.target)
	if put {
		return s.Write(ctx, payload)
	}
	return s.Read(ctx, payload)
}

// execute runs one operation until it succeeds, fails for certain, or its
// outcome can no longer be known.
func (cl *linClient) execute(put bool, payload []byte) ([]byte, linOutcome) {
	ctx, cancel := context.WithTimeout(context.Background(), linOpTimeout)
	defer cancel()
	redirects := 0
	for {
		if cl.r.c.isDown(cl.target) {
			cl.retarget() // a stopped server answers nothing but ErrStopped
		}
		res, err := cl.call(ctx, put, payload)
		if err == nil {
			return res, linOK
		}
		var redirect *exraft.RedirectError
		switch {
		case errors.As(err, &redirect) && redirect.Leader.Name != cl.target && redirects < 3 && cl.r.c.nodes[redirect.Leader.Name] != nil:
			redirects++
			cl.target = redirect.Leader.Name
			continue
		case errors.Is(err, exraft.ErrNotLeader), linNotSent(err):
			// Nothing was proposed: no leader known, a stale redirect, or
			// the server could not be reached. Try another after a backoff.
			redirects = 0
			cl.retarget()
			if !linBackoff(ctx, cl.rng) {
				return nil, linFailed
			}
			continue
		}
		cl.retarget()
		if !put {
			return nil, linFailed
		}
		// ErrLeadershipLost, ErrStopped, a deadline or a broken connection:
		// the write may have been appended and may still commit.
		return nil, linUnknown
	}
}

// retarget picks another running server at random.
func (cl *linClient) retarget() {
	names := cl.r.c.order
	for range 2 * len(names) {
		if cl.target = names[cl.rng.IntN(len(names))]; !cl.r.c.isDown(cl.target) {
			return
		}
	}
}

// linNotSent reports errors that mean the request never reached a server.
func linNotSent(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// linBackoff waits a little before the next try; false when ctx ends first.
func linBackoff(ctx context.Context, rng *rand.Rand) bool {
	t := time.NewTimer(time.Duration(10+rng.IntN(30)) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// check verifies the final applied log against the clients' history, then
// checks the history for linearizability.
func (r *linRun) check(t *testing.T, final []string, end int64) {
	t.Helper()
	isKey := map[string]bool{}
	for _, k := range r.keys {
		isKey[k] = true
	}
	// Replay the applied log: which value each applied write replaced.
	replaced := map[string]string{} // value -> the value it replaced
	state := map[string]string{}
	for _, cmd := range final {
		parts := strings.SplitN(cmd, " ", 3)
		if len(parts) != 3 || parts[0] != "set" || !isKey[parts[1]] {
			continue
		}
		if _, dup := replaced[parts[2]]; dup {
			t.Errorf("%q was applied twice", cmd)
		}
		replaced[parts[2]] = state[parts[1]]
		state[parts[1]] = parts[2]
	}

	r.mu.Lock()
	ops := append([]linOp(nil), r.ops...)
	r.mu.Unlock()
	history := make([]porcupine.Operation, 0, len(ops))
	pending, dropped := 0, 0
	for _, op := range ops {
		if op.in.put {
			prev, applied := replaced[op.in.val]
			switch {
			case op.out.unknown && !applied:
				dropped++ // never applied anywhere: as if never sent
				continue
			case op.out.unknown:
				pending++
				op.ret = end
			case !applied:
				t.Errorf("acknowledged write %s=%s (client %d, returned at %v) is missing from the final log",
					op.in.key, op.in.val, op.client, time.Duration(op.ret))
			case prev != op.out.val:
				t.Errorf("write %s=%s returned previous value %q, but the log applied it over %q",
					op.in.key, op.in.val, op.out.val, prev)
			}
		}
		history = append(history, porcupine.Operation{
			ClientId: op.client, Input: op.in, Output: op.out, Call: op.call, Return: op.ret,
		})
	}
	t.Logf("history: %d operations; writes: %d acknowledged, %d failed, %d unknown (%d applied, %d not); reads: %d, %d failed",
		len(history), r.writesOK.Load(), r.writesFailed.Load(), r.writesUnknown.Load(), pending, dropped, r.readsOK.Load(), r.readsFailed.Load())

	began := time.Now()
	res, info := porcupine.CheckOperationsVerbose(linModel, history, linCheckTimeout)
	t.Logf("porcupine: %s in %v", res, time.Since(began).Round(time.Millisecond))
	switch res {
	case porcupine.Illegal:
		f, err := os.CreateTemp("", "exraft-"+strings.ReplaceAll(t.Name(), "/", "_")+"-*.html")
		if err != nil {
			t.Fatalf("history is not linearizable (and creating the visualisation failed: %v)", err)
		}
		path := f.Name()
		_ = f.Close()
		if err := porcupine.VisualizePath(linModel, info, path); err != nil {
			t.Fatalf("history is not linearizable (and writing the visualisation to %s failed: %v)", path, err)
		}
		t.Fatalf("history is not linearizable; visualisation: %s", path)
	case porcupine.Unknown:
		t.Logf("porcupine could not decide within %v; treating as no violation found", linCheckTimeout)
	}
}

// linNemesis injects faults until ctx ends, then returns with the cluster
// whole again (every server running and a member), though possibly with
// links cut. An error means the harness could not do what it meant to.
type linNemesis func(ctx context.Context, rng *rand.Rand, c *chaosCluster, log *chaosLog) error

// runLinearizable runs clients against a fresh cluster of n servers while
// nemesis runs, then checks convergence and the history.
func runLinearizable(t *testing.T, n int, nemesis linNemesis) {
	seed := chaosSeed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	cn := newChaosNet()
	c := newChaosCluster(t, n, cn)
	c.settle(t)
	log := newChaosLog(t)

	r := &linRun{c: c, start: time.Now()}
	for i := range linKeys {
		r.keys = append(r.keys, fmt.Sprintf("k%d", i))
	}
	r.nextID.Store(linClients)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var remotes []*exraft.Client
	for i := range linClients {
		cl := &linClient{
			r: r, index: i, id: i,
			rng:    rand.New(rand.NewPCG(seed+uint64(i)+1, uint64(i))),
			target: c.order[i%len(c.order)],
		}
		if i%2 == 1 { // half of the clients go over the wire
			cl.remote = &exraft.Client{}
			remotes = append(remotes, cl.remote)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl.run(stop)
		}()
	}
	defer func() {
		for _, rc := range remotes {
			_ = rc.Close()
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), linNemesisTime)
	nemErr := nemesis(ctx, rng, c, log)
	cancel()
	cn.flaky.Store(false)
	cn.healAll()
	log.note("nemesis done; network healed")
	close(stop)
	wg.Wait()
	end := r.now() + 1
	if nemErr != nil {
		t.Fatalf("nemesis: %v", nemErr)
	}
	t.Logf("nemesis: %d actions", log.len())

	leader, final := c.awaitConverged(t, t.Name())
	t.Logf("converged at term %d, commit index %d", leader.Status().Term, leader.Status().CommitIndex)
	// The final leader answers a linearizable read of every key with what
	// the log says.
	want := map[string]string{}
	for _, cmd := range final {
		if parts := strings.SplitN(cmd, " ", 3); len(parts) == 3 {
			want[parts[1]] = parts[2]
		}
	}
	for _, k := range r.keys {
		if got := mustRead(t, leader, "get "+k); got != want[k] {
			t.Fatalf("Read(get %s) on the final leader %s = %q, the applied log says %q", k, leader.Name(), got, want[k])
		}
	}
	if w, rd := r.writesOK.Load(), r.readsOK.Load(); w < linMinWrites || rd < linMinReads {
		t.Fatalf("too little got through to mean anything: %d writes and %d reads succeeded, want at least %d and %d",
			w, rd, linMinWrites, linMinReads)
	}
	r.check(t, final, end)
}

// ---------------------------------------------------------------------------
// The tests

// TestLinearizablePartitions: single links cut (both ways or one way),
// majority/minority partitions and an isolated leader, healed in between, on
// a network that also delays writes a little and drops a connection now and
// then.
func TestLinearizablePartitions(t *testing.T) {
	runLinearizable(t, 5, func(ctx context.Context, rng *rand.Rand, c *chaosCluster, log *chaosLog) error {
		c.net.makeFlaky(100, 2, 3*time.Millisecond)
		names := c.names()
		pair := func() (string, string) {
			p := rng.Perm(len(names))
			return names[p[0]], names[p[1]]
		}
		for ctx.Err() == nil {
			for range 1 + rng.IntN(3) {
				switch k := rng.IntN(10); {
				case k < 3:
					a, b := pair()
					c.net.cutBoth(a, b)
					log.note("cut %s<->%s", a, b)
				case k < 4:
					a, b := pair()
					c.net.cutOneWay(a, b)
					log.note("cut %s->%s", a, b)
				case k < 5:
					if cut := c.net.cutLinks(); len(cut) > 0 {
						l := cut[rng.IntN(len(cut))]
						c.net.healBoth(l.from, l.to)
						log.note("heal %s<->%s", l.from, l.to)
					}
				case k < 7:
					// Half the time the leader is on the minority side.
					p := rng.Perm(len(names))
					if l := c.leader(); l != nil && rng.IntN(2) == 0 {
						for i, j := range p {
							if names[j] == l.Name() {
								p[0], p[i] = p[i], p[0]
							}
						}
					}
					small := 1 + rng.IntN(len(names)/2)
					var minority, majority []string
					for i, j := range p {
						if i < small {
							minority = append(minority, names[j])
						} else {
							majority = append(majority, names[j])
						}
					}
					c.net.partition(majority, minority)
					log.note("partition %v | %v", majority, minority)
				default:
					if l := c.leader(); l != nil {
						c.net.isolate(l.Name())
						log.note("isolate leader %s", l.Name())
					}
				}
				chaosPause(ctx, rng, 150, 700)
			}
			c.net.healAll()
			log.note("heal all")
			chaosPause(ctx, rng, 200, 600)
		}
		return nil
	})
}

// TestLinearizableRestarts: servers, the leader among them, stop and start
// again blank on the same address, one at a time; the leader re-admits each
// as a new incarnation before the next one goes.
func TestLinearizableRestarts(t *testing.T) {
	runLinearizable(t, 5, func(ctx context.Context, rng *rand.Rand, c *chaosCluster, log *chaosLog) error {
		names := c.names()
		for ctx.Err() == nil {
			name := names[rng.IntN(len(names))]
			if l := c.leader(); l != nil && rng.IntN(100) < 40 {
				name = l.Name()
			}
			commit := c.maxCommit()
			if err := c.stopNode(name); err != nil {
				return err
			}
			log.note("stop %s", name)
			time.Sleep(time.Duration(50+rng.IntN(350)) * time.Millisecond) // pacing: stay down a while
			if err := c.startNode(name); err != nil {
				return err
			}
			log.note("start %s again (blank)", name)
			w := c.watchRejoin(name, commit, waitShort)
			if err := w.wait(); err != nil {
				return fmt.Errorf("%s after its restart: %w", name, err)
			}
			if !w.auto {
				return fmt.Errorf("the leader did not re-admit %s on its own within %v after its restart", name, waitShort)
			}
			log.note("%s re-admitted", name)
			chaosPause(ctx, rng, 100, 500)
		}
		return nil
	})
}

// TestLinearizableChurn: storms of forced elections on followers, and
// members removed (the leader too, sometimes) and added back, either as
// they are or restarted blank.
func TestLinearizableChurn(t *testing.T) {
	runLinearizable(t, 5, func(ctx context.Context, rng *rand.Rand, c *chaosCluster, log *chaosLog) error {
		names := c.names()
		for ctx.Err() == nil {
			if rng.IntN(2) == 0 {
				for range 1 + rng.IntN(3) {
					s := c.server(names[rng.IntN(len(names))])
					if s.Status().Role == exraft.Leader {
						continue
					}
					tctx, cancel := context.WithTimeout(context.Background(), time.Second)
					err := s.TriggerElection(tctx)
					cancel()
					log.note("TriggerElection on %s: %v", s.Name(), err)
					chaosPause(ctx, rng, 1, 60)
				}
			} else {
				l := c.leaderWithin(5 * time.Second)
				if l == nil {
					log.note("no leader for 5s")
					continue
				}
				name := l.Name()
				if rng.IntN(100) >= 20 {
					for _, x := range rng.Perm(len(names)) {
						if names[x] != name {
							name = names[x]
							break
						}
					}
				}
				if err := c.removeMember(name, waitLong); err != nil {
					return err
				}
				log.note("removed %s (leader was %s)", name, l.Name())
				time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond) // pacing
				if rng.IntN(2) == 0 {
					if err := c.stopNode(name); err != nil {
						return err
					}
					if err := c.startNode(name); err != nil {
						return err
					}
					log.note("restarted %s blank", name)
				}
				if err := c.addMember(name, waitLong); err != nil {
					return err
				}
				log.note("added %s back", name)
			}
			chaosPause(ctx, rng, 200, 500)
		}
		return nil
	})
}

// TestLinearizableModel checks the checker: the model accepts histories that
// are linearizable (unknown writes that took effect or did not) and rejects
// stale reads, lost writes and wrong previous values, so that the tests above
// cannot pass vacuously.
func TestLinearizableModel(t *testing.T) {
	const end = 1000
	put := func(client int, key, val, prev string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: linInput{put: true, key: key, val: val},
			Output: linOutput{val: prev}, Call: call, Return: ret}
	}
	maybe := func(client int, key, val string, call int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: linInput{put: true, key: key, val: val},
			Output: linOutput{unknown: true}, Call: call, Return: end}
	}
	get := func(client int, key, val string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: linInput{key: key},
			Output: linOutput{val: val}, Call: call, Return: ret}
	}
	for _, tc := range []struct {
		name    string
		history []porcupine.Operation
		want    porcupine.CheckResult
	}{
		{"sequential", []porcupine.Operation{
			put(0, "k", "a", "", 0, 10), get(1, "k", "a", 11, 20), put(0, "k", "b", "a", 21, 30), get(1, "k", "b", 31, 40),
		}, porcupine.Ok},
		{"concurrent writes", []porcupine.Operation{
			put(0, "k", "a", "b", 0, 10), put(1, "k", "b", "", 0, 10), get(2, "k", "a", 11, 20),
		}, porcupine.Ok},
		{"unknown write took effect", []porcupine.Operation{
			put(0, "k", "a", "", 0, 10), maybe(1, "k", "b", 11), get(2, "k", "b", 50, 60), put(0, "k", "c", "b", 61, 70),
		}, porcupine.Ok},
		{"unknown write did not take effect", []porcupine.Operation{
			put(0, "k", "a", "", 0, 10), maybe(1, "k", "b", 11), get(2, "k", "a", 50, 60), put(0, "k", "c", "a", 61, 70),
		}, porcupine.Ok},
		{"keys are independent", []porcupine.Operation{
			put(0, "k", "a", "", 0, 10), put(1, "j", "b", "", 0, 10), get(2, "k", "a", 11, 20), get(2, "j", "b", 21, 30),
		}, porcupine.Ok},
		{"stale read", []porcupine.Operation{
			put(0, "k", "a", "", 0, 10), put(0, "k", "b", "a", 11, 20), get(1, "k", "a", 21, 30),
		}, porcupine.Illegal},
		{"lost write", []porcupine.Operation{
			put(0, "k", "a", "", 0, 10), get(1, "k", "", 11, 20),
		}, porcupine.Illegal},
		{"wrong previous value", []porcupine.Operation{
			put(0, "k", "a", "", 0, 10), put(1, "k", "b", "", 11, 20),
		}, porcupine.Illegal},
		{"value from nowhere", []porcupine.Operation{
			put(0, "k", "a", "", 0, 10), get(1, "k", "z", 11, 20),
		}, porcupine.Illegal},
		{"unknown write seen, then unseen", []porcupine.Operation{
			maybe(0, "k", "a", 0), get(1, "k", "a", 10, 20), get(1, "k", "", 21, 30),
		}, porcupine.Illegal},
	} {
		if got := porcupine.CheckOperationsTimeout(linModel, tc.history, 10*time.Second); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
