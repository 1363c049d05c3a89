package main

import (
	"context"
	"flag"
	"fmt"
	"sync/atomic"
	"time"
)

var (
	snapP99For   = flag.Duration("snapp99", 20*time.Second, "snapp99 section: writers for this long while snapshots are taken, then while some are sent")
	bigKeys      = flag.Int("bigkeys", 1_000_000, "keys of the -snapp99 state (every one written once first)")
	p99Threshold = flag.Int("p99threshold", 262_144, "SnapshotThreshold of the -snapp99 cluster: large enough that snapshots leave quiet spells between them")
	p99Adds      = flag.Int("p99adds", 3, "servers added (and removed again) one after the other in the -snapp99 mode, each sent a snapshot")
	p99Single    = flag.Bool("p99single", false, "with -snapp99: only the leader takes snapshots (the others' threshold is out of reach), as if each server had processors of its own rather than all three encoding at once on the same ones")
)

// The classes of a write in the p99 mode: what went on when it started.
const (
	classSteady  = iota // no snapshot being taken or sent
	classTaking         // some server is between Snapshot and the end of its WriteTo
	classSending        // a new server is being sent the leader's snapshot
)

var classNames = [nClasses]string{"steady (no snapshot in progress)", "while a snapshot is taken", "while a snapshot is sent"}

type transfer struct {
	sent, add time.Duration // until restored on the new server; until AddServer returned
}

type p99Result struct {
	fillTime  time.Duration
	hists     [nClasses]histogram
	elapsed   time.Duration
	failed    int64
	lastErr   any
	transfers []transfer
	taken     int64
	capture   time.Duration // mean
	write     time.Duration // mean WriteTo
	writeMax  time.Duration
	snapBytes int64
	restore   time.Duration // mean Restore on the servers added
	self      float64       // processors used while writing, by this process
	others    float64       // and by all others
}

// runSnapP99 fills a cluster with every key, then runs writers for d with
// snapshots taken every o.threshold entries, then adds (and removes) adds
// servers one after the other, each caught up by snapshot, while the
// writers go on. Each write is classified by what goes on when it starts.
func runSnapP99(o kvOptions, writers int, d time.Duration, adds int) (p99Result, error) {
	var r p99Result
	c, err := startKV(o)
	if err != nil {
		return r, err
	}
	defer c.stop()
	start := time.Now()
	if err := fill(c, writers); err != nil {
		return r, err
	}
	r.fillTime = time.Since(start)
	var sending atomic.Bool
	classify := func() int {
		switch {
		case sending.Load():
			return classSending
		case c.stats.inProgress.Load() > 0:
			return classTaking
		}
		return classSteady
	}
	l := startLoad(c, writers, classify)
	start = time.Now()
	cpu0 := sampleCPU()
	time.Sleep(d)
	for i := 0; i < adds; i++ {
		t, err := addAndRemove(c, fmt.Sprintf("new%d", i), &sending)
		if err != nil {
			l.halt()
			return r, err
		}
		r.transfers = append(r.transfers, t)
		time.Sleep(time.Second)
	}
	l.halt()
	r.elapsed = time.Since(start)
	r.self, r.others = cpuUse(cpu0, sampleCPU())
	r.hists, r.failed, r.lastErr = l.hists, l.failed.Load(), l.lastErr.Load()
	st := c.stats
	r.taken = st.taken.Load()
	if r.taken > 0 {
		r.capture = time.Duration(st.captureNs.Load() / r.taken)
		r.write = time.Duration(st.writeNs.Load() / r.taken)
	}
	r.writeMax, r.snapBytes = time.Duration(st.writeMaxNs.Load()), st.bytes.Load()
	if n := st.restored.Load(); n > 0 {
		r.restore = time.Duration(st.restoreNs.Load() / n)
	}
	if err := c.settle(time.Minute); err != nil {
		return r, err
	}
	return r, sameState(c.servers)
}

// addAndRemove adds a new server, with sending set from the start of
// AddServer until the new server has restored a snapshot, then removes it.
func addAndRemove(c *kvCluster, name string, sending *atomic.Bool) (transfer, error) {
	var t transfer
	n, err := c.newJoiner(name)
	if err != nil {
		return t, err
	}
	defer n.Stop()
	leader := c.leader.Load()
	ctx, cancel := context.WithTimeout(context.Background(), addTimeout)
	defer cancel()
	done := make(chan error, 1)
	sending.Store(true)
	begin := time.Now()
	go func() { done <- leader.AddServer(ctx, n.Peer()) }()
	var addErr error
	added := false
	for n.Status().SnapshotIndex == 0 && time.Since(begin) < addTimeout {
		select {
		case addErr = <-done:
			added = true
			t.add = time.Since(begin)
		default:
		}
		if added {
			break // AddServer ended before any restore: no transfer
		}
		time.Sleep(500 * time.Microsecond)
	}
	t.sent = time.Since(begin)
	sending.Store(false)
	if !added {
		addErr = <-done
		t.add = time.Since(begin)
	}
	if addErr != nil {
		return t, fmt.Errorf("AddServer of %s after %v: %w", name, t.add, addErr)
	}
	if n.Status().SnapshotIndex == 0 {
		return t, fmt.Errorf("%s was caught up without a snapshot: the leader's log still reaches back to its start", name)
	}
	rctx, rcancel := context.WithTimeout(context.Background(), callTimeout)
	defer rcancel()
	if err := leader.RemoveServer(rctx, name); err != nil {
		return t, fmt.Errorf("RemoveServer %s: %w", name, err)
	}
	return t, nil
}

func snapP99Mode() {
	o := kvOptions{keys: *bigKeys, snapshots: true, threshold: *p99Threshold, leaderOnly: *p99Single}
	who := "every server"
	if o.leaderOnly {
		who = "the leader alone"
	}
	fmt.Printf("write latency around snapshots: %d writers, a %d-key map with a Snapshotter (SnapshotThreshold %d on %s, default TrailingLogs), 16-byte commands, %v deadline per Write, 3 servers on loopback TCP, GOMAXPROCS=%d\n",
		*writers, o.keys, o.threshold, who, callTimeout, gomaxprocs())
	r, err := runSnapP99(o, *writers, *snapP99For, *p99Adds)
	check(err)
	fmt.Printf("  fill: %d keys written in %v\n", o.keys, r.fillTime.Round(time.Millisecond))
	fmt.Printf("  snapshots written: %d over the 3 servers (Snapshot %v on average, WriteTo %v on average, %v at most, %.1f MiB the latest)\n",
		r.taken, r.capture, r.write, r.writeMax, mib(uint64(r.snapBytes)))
	for i, t := range r.transfers {
		fmt.Printf("  added server %d: restored the snapshot after %v, AddServer returned after %v\n", i, t.sent.Round(time.Millisecond), t.add.Round(time.Millisecond))
	}
	if len(r.transfers) > 0 {
		fmt.Printf("  (Restore took %v on average of each transfer's time, on the new server: in this process)\n", r.restore.Round(time.Millisecond))
	}
	fmt.Printf("  %v of writes (CPU: this process %.2f, other processes %s), %s:\n", r.elapsed.Round(time.Millisecond), r.self, others(r.others), failures(r.failed, r.lastErr))
	base := r.hists[classSteady].quantile(0.99)
	for i := range r.hists {
		h := &r.hists[i]
		ratio := ""
		if i != classSteady && base > 0 && h.n > 0 {
			v := float64(h.quantile(0.99)) / float64(base)
			ratio = fmt.Sprintf("  p99 %.2fx steady (target <= 2)", v)
			record("snapp99", "write p99 "+classNames[i]+" / steady", v, "x", atMost(2))
		}
		fmt.Printf("  %-34s %9d writes  p50 %10v  p99 %10v%s\n", classNames[i], h.n, h.quantile(0.5), h.quantile(0.99), ratio)
	}
}
