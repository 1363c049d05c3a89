package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// roundSpec is one round: a fresh cluster, clients, a nemesis, checks.
type roundSpec struct {
	seed        uint64
	servers     int
	workers     int
	keys        int
	netns       bool
	cycles      int           // at least this many cycles of faults
	duration    time.Duration // and until this much time has passed
	pace        pacing
	threshold   int // SnapshotThreshold: tiny, so that catch-up goes through InstallSnapshot
	trailing    int
	dirtyReads  bool // the broken client path: ReadDirty on a lagging follower
	bin         string
	logf        func(format string, args ...any)
	leaderBound time.Duration // a leader within this after the final heal
}

// roundReport is what a round did and found.
type roundReport struct {
	dir       string // kept when something was found
	mode      string
	elapsed   time.Duration
	writesOK  int64
	writesUnk int64
	readsOK   int64
	failedOps int64
	nemesis   nemesisStats
	healed    time.Duration // from the final heal to a whole cluster
	verdict   verdict
	problems  []string // everything wrong, checks and harness alike
}

// runRound runs one round. The returned report's problems are what went
// wrong; an error means the round could not run at all.
func runRound(spec roundSpec) (*roundReport, error) {
	began := time.Now()
	dir, err := os.MkdirTemp("", fmt.Sprintf("chaos-%d-", spec.seed))
	if err != nil {
		return nil, err
	}
	r := &roundReport{dir: dir, mode: "loopback"}
	if spec.netns {
		r.mode = "netns"
	}
	c, err := startCluster(clusterSpec{servers: spec.servers, netns: spec.netns, bin: spec.bin, dir: dir,
		threshold: spec.threshold, trailing: spec.trailing, logf: spec.logf})
	stopCluster := onExit(func() {
		if c != nil {
			c.stop()
		}
	})
	defer stopCluster()
	if err != nil {
		return nil, fmt.Errorf("starting the cluster (logs in %s): %w", dir, err)
	}
	spec.logf("round %d: %d servers (%s) at %s; logs in %s", spec.seed, spec.servers, r.mode, strings.Join(c.addrs, " "), dir)

	h := newHistory(spec.workers)
	clientsCtx, stopClients := context.WithCancel(context.Background())
	clientsDone := make(chan struct{})
	keys := make([]string, spec.keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	dirty := r.startFaultless(c, spec)
	go func() {
		defer close(clientsDone)
		runWorkers(clientsCtx, spec.workers, spec.seed, fmt.Sprint(spec.seed), h, keys, c.addrs, dirty)
	}()
	defer func() { stopClients(); <-clientsDone }()

	r.runFaults(c, spec)
	r.finalHeal(c, spec)
	stopClients()
	<-clientsDone
	end := h.now()
	r.check(c, spec, h, end)
	r.problems = append(r.problems, c.unexpectedDeaths()...)
	r.writesOK, r.writesUnk, r.readsOK = h.counts.writesOK.Load(), h.counts.writesUnknown.Load(), h.counts.readsOK.Load()
	r.failedOps = h.counts.writesFailed.Load() + h.counts.readsFailed.Load()
	r.elapsed = time.Since(began)
	if len(r.problems) > 0 {
		r.dumpAll(c, spec)
	}
	stopCluster()
	r.keepOrClean(spec)
	return r, nil
}

// startFaultless sets up the broken client path, when asked: one follower
// kept a few hundred milliseconds behind by latency on its proxy, and its
// own address for the dirty reads, so that they see stale values.
func (r *roundReport) startFaultless(c *cluster, spec roundSpec) []string {
	if !spec.dirtyReads {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l := c.currentLeader(ctx)
	f := (l + 1) % len(c.names)
	if err := c.px.toxic(f, "latency", "upstream", `{"latency":300,"jitter":50}`); err != nil {
		r.problems = append(r.problems, err.Error())
	}
	spec.logf("dirty reads: ReadDirty at %s, a follower kept ~300ms behind", c.names[f])
	return []string{c.listen[f]}
}

// runFaults runs the nemesis, or, for the dirty-read round, just lets the
// clients run for the round's duration.
func (r *roundReport) runFaults(c *cluster, spec roundSpec) {
	if spec.dirtyReads {
		time.Sleep(spec.duration) // the schedule: the clients run meanwhile
		return
	}
	n := newNemesis(c, spec.seed, spec.pace)
	err := n.run(context.Background(), spec.cycles, time.Now().Add(spec.duration))
	r.nemesis = n.stats
	if err != nil {
		r.problems = append(r.problems, "nemesis: "+err.Error())
	}
}

// finalHeal removes every fault and times how long the cluster takes to be
// whole again.
func (r *roundReport) finalHeal(c *cluster, spec roundSpec) {
	c.px.clearToxics()
	if c.net != nil {
		_ = c.net.healAll()
	}
	healed := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), spec.leaderBound)
	defer cancel()
	if _, err := c.awaitHealthy(ctx); err != nil {
		r.problems = append(r.problems, fmt.Sprintf("no healthy leader within %v of the final heal: %v", spec.leaderBound, err))
	}
	r.healed = time.Since(healed)
}

// check waits for the servers to agree on one state, then checks the
// history against it.
func (r *roundReport) check(c *cluster, spec roundSpec, h *history, end int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	final, err := c.converge(ctx)
	if err != nil {
		r.problems = append(r.problems, err.Error())
		return
	}
	r.verdict = checkHistory(h.snapshot(), final, end, r.dir)
	r.problems = append(r.problems, r.verdict.problems...)
	switch r.verdict.linearizable {
	case porcupine.Illegal:
		r.problems = append(r.problems, "history is not linearizable: see "+r.verdict.visualization)
	case porcupine.Unknown:
		spec.logf("porcupine could not decide within %v: no violation found, none ruled out", checkTimeout)
	}
}

// dumpAll has every server print its goroutines into its log, for the
// report: one that does not answer a status call, and one that answers
// from a view that no longer moves (a server whose driver is stuck still
// answers Status from what it last published), alike.
func (r *roundReport) dumpAll(c *cluster, spec roundSpec) {
	sts := c.statuses(context.Background())
	for i, st := range sts {
		if st == nil {
			spec.logf("%s does not answer (%v): its goroutines go to its log", c.names[i], c.lastStatusErr(i))
		}
	}
	spec.logf("the round found problems: every server's goroutines go to its log")
	var wg sync.WaitGroup
	for i := range c.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.procs[i].dumpGoroutines(5 * time.Second)
		}()
	}
	wg.Wait()
}

// keepOrClean removes the round's folder when nothing was found, and
// otherwise writes a summary into it and says where it is.
func (r *roundReport) keepOrClean(spec roundSpec) {
	if len(r.problems) == 0 {
		_ = os.RemoveAll(r.dir)
		r.dir = ""
		return
	}
	summary := fmt.Sprintf("seed %d (%s)\n%s\n", spec.seed, r.mode, strings.Join(r.problems, "\n"))
	_ = os.WriteFile(filepath.Join(r.dir, "problems.txt"), []byte(summary), 0o644)
	spec.logf("round %d found problems; history visualization (if any) and the servers' logs are in %s", spec.seed, r.dir)
}

// String is the round's figures on a few lines.
func (r *roundReport) String() string {
	return fmt.Sprintf("%s round in %v: %d operations checked (%d writes acknowledged, %d unknown (%d found applied, %d not), %d reads, %d failed); faults %v; %d restarts caught up through InstallSnapshot; slowest heal %v; whole %v after the final heal; porcupine: %v",
		r.mode, r.elapsed.Round(time.Second), r.verdict.ops, r.writesOK, r.writesUnk, r.verdict.pendingApplied, r.verdict.pendingDropped,
		r.readsOK, r.failedOps, r.nemesis.faults, r.nemesis.snapshotCatch, r.nemesis.slowestHeal.Round(time.Millisecond),
		r.healed.Round(time.Millisecond), r.verdict.linearizable)
}
