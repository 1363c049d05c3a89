package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/exraft/exraft"
)

var addWrites = flag.Int("addserver", 5_000_000, "addserver section: fill a cluster with this many writes, then time AddServer of a 4th server")

const (
	// maxFill bounds the filling of the AddServer mode: it measures with
	// what it has by then.
	maxFill = 20 * time.Minute
	// addTimeout bounds AddServer in the AddServer and p99 modes: long
	// enough to measure a slow one rather than fail it.
	addTimeout = 2 * time.Minute
)

// addResult is what the AddServer mode measured.
type addResult struct {
	writes   int64 // writes acknowledged, the fill's included
	failed   int64
	lastErr  any
	fillTime time.Duration
	before   exraft.Status // the leader's, before AddServer
	add      time.Duration // AddServer, until it returned
	restored time.Duration // until the new server's SnapshotIndex > 0; 0: never seen
	joined   exraft.Status // the new server's, once every server applied everything
	snapSize int64
	restore  time.Duration // the new server's Restore
	self     float64       // processors used while filling, by this process
	others   float64       // and by all others
}

// runAddServer writes every key once and then random keys until target
// writes were acknowledged, stops the writers, and adds a 4th server.
func runAddServer(o kvOptions, writers int, target int64) (addResult, error) {
	c, err := startKV(o)
	if err != nil {
		return addResult{}, err
	}
	defer c.stop()
	var r addResult
	start, cpu0 := time.Now(), sampleCPU()
	if err := fill(c, writers); err != nil {
		return r, err
	}
	l := startLoad(c, writers, nil)
	for int64(o.keys)+l.ok.Load() < target && time.Since(start) < maxFill {
		time.Sleep(10 * time.Millisecond)
	}
	l.halt()
	r.fillTime = time.Since(start)
	r.self, r.others = cpuUse(cpu0, sampleCPU())
	r.writes, r.failed, r.lastErr = int64(o.keys)+l.ok.Load(), l.failed.Load(), l.lastErr.Load()
	if err := c.settle(time.Minute); err != nil {
		return r, err
	}
	leader := c.leader.Load()
	r.before = leader.Status()

	n, err := c.newJoiner("kv3")
	if err != nil {
		return r, err
	}
	defer n.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), addTimeout)
	defer cancel()
	restored := watchRestore(n)
	t := time.Now()
	err = leader.AddServer(ctx, n.Peer())
	r.add = time.Since(t)
	if err != nil {
		return r, fmt.Errorf("AddServer after %v: %w", r.add, err)
	}
	if at := <-restored; !at.IsZero() {
		r.restored = at.Sub(t)
	}
	c.servers = append(c.servers, n)
	if err := c.settle(time.Minute); err != nil {
		return r, err
	}
	r.joined = n.Status()
	r.snapSize = c.stats.bytes.Load()
	r.restore = time.Duration(c.stats.restoreNs.Load())
	return r, sameState(c.servers)
}

// watchRestore reports when s first has a snapshot (it restored the one
// the leader sent), or the zero time if that takes longer than addTimeout.
func watchRestore(s *exraft.Server) <-chan time.Time {
	ch := make(chan time.Time, 1)
	go func() {
		deadline := time.Now().Add(addTimeout)
		for time.Now().Before(deadline) {
			if s.Status().SnapshotIndex > 0 {
				ch <- time.Now()
				return
			}
			time.Sleep(500 * time.Microsecond)
		}
		ch <- time.Time{}
	}()
	return ch
}

func addServerMode() {
	o := kvOptions{keys: *kvKeys, snapshots: true}
	fmt.Printf("AddServer: %d writers fill a cluster with %d writes over %d keys (%v deadline per Write; a key-value map with a Snapshotter, default SnapshotThreshold and TrailingLogs), then a 4th server (MinMajority 2, no InitialConfig) is added with the writers stopped, GOMAXPROCS=%d\n",
		*writers, *addWrites, o.keys, callTimeout, gomaxprocs())
	r, err := runAddServer(o, *writers, int64(*addWrites))
	check(err)
	fmt.Printf("  fill: %d writes in %v (%.0f/s; CPU: this process %.2f, other processes %s); %s\n", r.writes, r.fillTime.Round(time.Millisecond),
		float64(r.writes)/r.fillTime.Seconds(), r.self, others(r.others), failures(r.failed, r.lastErr))
	b := r.before
	fmt.Printf("  leader before: AppliedIndex %d, SnapshotIndex %d, FirstIndex %d (%d entries retained); latest snapshot %.1f MiB\n",
		b.AppliedIndex, b.SnapshotIndex, b.FirstIndex, b.LastIndex-b.FirstIndex+1, mib(uint64(r.snapSize)))
	restored := "not seen"
	if r.restored > 0 {
		restored = r.restored.Round(time.Millisecond).String()
	}
	recordDuration("addserver", "AddServer of a 4th server", r.add, "ms", atMost(3000))
	fmt.Printf("  AddServer returned after %v (target <= 3s); the new server had restored the snapshot after %s (its Restore took %v)\n",
		r.add.Round(time.Millisecond), restored, r.restore.Round(time.Millisecond))
	j := r.joined
	fmt.Printf("  new server: SnapshotIndex %d, FirstIndex %d, AppliedIndex %d; all 4 servers hold the same state\n", j.SnapshotIndex, j.FirstIndex, j.AppliedIndex)
}
