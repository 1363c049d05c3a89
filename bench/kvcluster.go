package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/exraft/exraft"
)

// The snapshot modes (soak.go, addserver.go, snapp99.go) measure what a
// user does: a key-value state machine that allocates (snapkv.go), a
// context with a deadline on every call, 16-byte commands, 3 servers in
// one process on loopback TCP.

// callTimeout is the deadline of every Write and AddServer the modes make.
const callTimeout = 5 * time.Second

// kvOptions configures a cluster of the snapshot modes.
type kvOptions struct {
	keys      int  // the keys writes spread over
	snapshots bool // the state machine is a Snapshotter
	threshold int  // Config.SnapshotThreshold; 0: the default
	trailing  int  // Config.TrailingLogs; 0: the default
	// leaderOnly: only the first server, made the leader, takes
	// snapshots; the others' threshold is out of reach.
	leaderOnly bool
}

// never is a SnapshotThreshold that no run reaches.
const never = 1 << 40

// kvCluster is a running cluster of snapKV state machines.
type kvCluster struct {
	opts    kvOptions
	servers []*exraft.Server
	sms     []*snapKV
	stats   *snapStats
	leader  atomic.Pointer[exraft.Server]
}

func (o kvOptions) config(name string) exraft.Config {
	return exraft.Config{Name: name, SnapshotThreshold: o.threshold, TrailingLogs: o.trailing}
}

func (o kvOptions) stateMachine(stats *snapStats) (exraft.StateMachine, *snapKV) {
	kv := newSnapKV(o.keys, stats)
	if !o.snapshots {
		return plainKV{kv}, kv
	}
	return kv, kv
}

func startKV(o kvOptions) (*kvCluster, error) {
	c := &kvCluster{opts: o, stats: new(snapStats)}
	var lns []net.Listener
	var peers []exraft.Peer
	for i := 0; i < 3; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		peers = append(peers, exraft.Peer{Name: fmt.Sprintf("kv%d", i), Addr: ln.Addr().String()})
	}
	for i := range peers {
		sm, kv := o.stateMachine(c.stats)
		cfg := o.config(peers[i].Name)
		if o.leaderOnly && i > 0 {
			cfg.SnapshotThreshold = never
		}
		cfg.Listener, cfg.InitialConfig = lns[i], peers
		s, err := exraft.StartServer(sm, cfg)
		if err != nil {
			c.stop()
			return nil, err
		}
		c.servers = append(c.servers, s)
		c.sms = append(c.sms, kv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.findLeader(ctx); err != nil {
		c.stop()
		return nil, err
	}
	if o.leaderOnly && c.leader.Load() != c.servers[0] {
		if err := c.lead(ctx, 0); err != nil {
			c.stop()
			return nil, err
		}
	}
	return c, nil
}

func (c *kvCluster) stop() {
	for _, s := range c.servers {
		s.Stop()
	}
}

// findLeader waits until a server knows a leader and remembers it.
func (c *kvCluster) findLeader(ctx context.Context) error {
	p, err := c.servers[0].AwaitLeader(ctx)
	if err != nil {
		return err
	}
	for _, s := range c.servers {
		if s.Name() == p.Name {
			c.leader.Store(s)
			return nil
		}
	}
	return fmt.Errorf("the leader %v is not one of the cluster's servers", p)
}

// lead makes server i the leader.
func (c *kvCluster) lead(ctx context.Context, i int) error {
	for c.leader.Load() != c.servers[i] {
		if err := c.servers[i].TriggerElection(ctx); err != nil {
			return err
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("%s did not become the leader: %w", c.servers[i].Name(), ctx.Err())
		}
		if err := c.findLeader(ctx); err != nil {
			return err
		}
	}
	return nil
}

// write proposes cmd at the leader with a deadline of callTimeout, and
// once more at the new leader if leadership moved.
func (c *kvCluster) write(cmd []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	_, err := c.leader.Load().Write(ctx, cmd)
	if errors.Is(err, exraft.ErrNotLeader) {
		if err = c.findLeader(ctx); err == nil {
			_, err = c.leader.Load().Write(ctx, cmd)
		}
	}
	return err
}

// settle waits (up to d) until every server has applied what the leader
// committed.
func (c *kvCluster) settle(d time.Duration) error {
	commit := c.leader.Load().Status().CommitIndex
	deadline := time.Now().Add(d)
	for _, s := range c.servers {
		for s.Status().AppliedIndex < commit {
			if time.Now().After(deadline) {
				return fmt.Errorf("%s applied %d of %d entries after %v", s.Name(), s.Status().AppliedIndex, commit, d)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}

// checksums asks every server for the checksum of its state.
func checksums(servers []*exraft.Server) ([]uint64, error) {
	var sums []uint64
	for _, s := range servers {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		b, err := s.ReadDirty(ctx, []byte("sum"))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Name(), err)
		}
		sums = append(sums, binary.LittleEndian.Uint64(b))
	}
	return sums, nil
}

// sameState checks, once every server applied everything, that they hold
// the same state.
func sameState(servers []*exraft.Server) error {
	sums, err := checksums(servers)
	if err != nil {
		return err
	}
	for i := range sums {
		if sums[i] != sums[0] {
			return fmt.Errorf("the servers' states differ: checksums %x", sums)
		}
	}
	return nil
}

// newJoiner starts a server that waits to be added (MinMajority 2, no
// InitialConfig), with a state machine like the cluster's.
func (c *kvCluster) newJoiner(name string) (*exraft.Server, error) {
	sm, _ := c.opts.stateMachine(c.stats)
	cfg := c.opts.config(name)
	if c.opts.leaderOnly {
		cfg.SnapshotThreshold = never
	}
	cfg.Addr, cfg.MinMajority = "127.0.0.1:0", 2
	return exraft.StartServer(sm, cfg)
}

// ---- load ----

// load is writers proposing random keys, each Write with its own
// deadline, until halted. classify, if set, sorts each write into one of
// nClasses by what goes on when it starts; each class has a histogram.
type load struct {
	c        *kvCluster
	classify func() int
	ok       atomic.Int64
	failed   atomic.Int64
	lastErr  atomic.Value // error
	stopping atomic.Bool
	wg       sync.WaitGroup
	mu       sync.Mutex
	hists    [nClasses]histogram
}

const nClasses = 3

func startLoad(c *kvCluster, writers int, classify func() int) *load {
	l := &load{c: c, classify: classify}
	for w := 0; w < writers; w++ {
		l.wg.Add(1)
		go l.writer(w)
	}
	return l
}

func (l *load) writer(w int) {
	defer l.wg.Done()
	hs := new([nClasses]histogram)
	r := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
	keys := uint64(l.c.opts.keys)
	cmd := make([]byte, 0, 16)
	for seq := uint64(0); !l.stopping.Load(); seq++ {
		class := 0
		if l.classify != nil {
			class = l.classify()
		}
		cmd = kvCommand(cmd, r.Uint64N(keys), uint64(w)<<40|seq)
		t := time.Now()
		err := l.c.write(cmd)
		hs[class].record(time.Since(t))
		if err != nil {
			l.failed.Add(1)
			l.lastErr.Store(err)
			continue
		}
		l.ok.Add(1)
	}
	l.mu.Lock()
	for i := range hs {
		l.hists[i].add(&hs[i])
	}
	l.mu.Unlock()
}

// halt stops the writers and waits for them.
func (l *load) halt() {
	l.stopping.Store(true)
	l.wg.Wait()
}

func gomaxprocs() int { return runtime.GOMAXPROCS(0) }

// fill writes every key once, so that the state holds all of them.
func fill(c *kvCluster, writers int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := make([]byte, 0, 16)
			for k := next.Add(1) - 1; k < int64(c.opts.keys); k = next.Add(1) - 1 {
				if err := c.write(kvCommand(cmd, uint64(k), uint64(k))); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		return fmt.Errorf("filling %d keys: %w", c.opts.keys, err)
	}
	return nil
}

// ---- memory ----

// heapAfterGC forces a collection and returns the heap in use.
func heapAfterGC() (inuse, live uint64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.HeapAlloc
}

var liveHeapSample = []metrics.Sample{{Name: "/gc/heap/live:bytes"}}

// liveHeap is the heap that the last collection found live, read without
// forcing one.
func liveHeap() uint64 {
	metrics.Read(liveHeapSample)
	if liveHeapSample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return liveHeapSample[0].Value.Uint64()
}

// rssBytes is the process's resident set (VmRSS), 0 where /proc has none.
func rssBytes() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
