package main

import (
	"flag"
	"fmt"
	"runtime"
	"time"

	"github.com/exraft/exraft"
)

var (
	soakFor      = flag.Duration("soak", time.Minute, "soak section: writers against a key-value state machine with snapshots for this long (2m in the README)")
	soakPlainFor = flag.Duration("soakplain", 0, "soak section: then the same load without a Snapshotter for this long (20s in the README), to contrast its heap growth (the heap grows fast)")
	kvKeys       = flag.Int("keys", 100_000, "keys that the writes of -soak and -addserver spread over")
)

// soakResult is what a soak measured.
type soakResult struct {
	d           time.Duration
	quarters    []float64 // writes/s in each quarter of the run
	ratio       float64   // the last quarter's over the first's
	liveAt      []uint64  // the live heap the last GC found, at the end of each quarter
	self        []float64 // processors this process used in each quarter
	others      []float64 // and all other processes (-1: unknown)
	perCPU      []float64 // writes per CPU-second of this process, in each quarter
	ok, failed  int64
	lastErr     any
	p50, p99    time.Duration
	heapBefore  uint64 // heap in use after a forced GC, before the writers start
	heapAfter   uint64 // and after they stop, with the cluster still running
	liveBefore  uint64 // the same, heap allocated (live) rather than spans in use
	liveAfter   uint64
	rss         uint64
	status      []exraft.Status
	taken       int64 // snapshots written, all servers
	captureMean time.Duration
	writeMean   time.Duration
	writeMax    time.Duration
	snapBytes   int64
}

// runSoak runs writers against a fresh cluster for d, and measures it.
func runSoak(o kvOptions, writers int, d time.Duration) (soakResult, error) {
	c, err := startKV(o)
	if err != nil {
		return soakResult{}, err
	}
	defer c.stop()
	r := soakResult{d: d}
	r.heapBefore, r.liveBefore = heapAfterGC()
	l := startLoad(c, writers, nil)
	start := time.Now()
	at := []time.Duration{0}
	counts := []int64{0}
	cpu := []cpuSample{sampleCPU()}
	for q := 1; q <= 4; q++ {
		time.Sleep(time.Until(start.Add(d * time.Duration(q) / 4)))
		counts = append(counts, l.ok.Load())
		at = append(at, time.Since(start))
		cpu = append(cpu, sampleCPU())
		r.liveAt = append(r.liveAt, liveHeap())
		self, others := cpuUse(cpu[q-1], cpu[q])
		r.self, r.others = append(r.self, self), append(r.others, others)
		r.perCPU = append(r.perCPU, float64(counts[q]-counts[q-1])/(self*(at[q]-at[q-1]).Seconds()))
	}
	l.halt()
	r.quarters, r.ratio = intervalRates(at, counts)
	r.ok, r.failed, r.lastErr = l.ok.Load(), l.failed.Load(), l.lastErr.Load()
	r.p50, r.p99 = l.hists[0].quantile(0.5), l.hists[0].quantile(0.99)
	if err := c.settle(30 * time.Second); err != nil {
		return r, err
	}
	r.heapAfter, r.liveAfter = heapAfterGC()
	r.rss = rssBytes()
	for _, s := range c.servers {
		r.status = append(r.status, s.Status())
	}
	st := c.stats
	r.taken = st.taken.Load()
	if r.taken > 0 {
		r.captureMean = time.Duration(st.captureNs.Load() / r.taken)
		r.writeMean = time.Duration(st.writeNs.Load() / r.taken)
	}
	r.writeMax, r.snapBytes = time.Duration(st.writeMaxNs.Load()), st.bytes.Load()
	return r, sameState(c.servers)
}

// intervalRates returns the rate in each interval between two samples of
// a counter (taken at times at, from the start), and the last interval's
// rate over the first's.
func intervalRates(at []time.Duration, counts []int64) (rates []float64, ratio float64) {
	for i := 1; i < len(at) && i < len(counts); i++ {
		rate := 0.0
		if dt := (at[i] - at[i-1]).Seconds(); dt > 0 {
			rate = float64(counts[i]-counts[i-1]) / dt
		}
		rates = append(rates, rate)
	}
	if len(rates) > 0 && rates[0] > 0 {
		ratio = rates[len(rates)-1] / rates[0]
	}
	return rates, ratio
}

func soakMode() {
	o := kvOptions{keys: *kvKeys, snapshots: true}
	fmt.Printf("soak: %d writers for %v, a %d-key map with a Snapshotter, default SnapshotThreshold (16384) and TrailingLogs (4096), 16-byte commands, %v deadline per Write, 3 servers on loopback TCP, GOMAXPROCS=%d\n",
		*writers, *soakFor, o.keys, callTimeout, gomaxprocs())
	r, err := runSoak(o, *writers, *soakFor)
	check(err)
	for i, q := range r.quarters {
		fmt.Printf("  quarter %d: %9.0f writes/s   live heap at its end %6.1f MiB   CPU: this process %.2f, other processes %s (of %d processors); %.0f writes per CPU-second\n",
			i+1, q, mib(r.liveAt[i]), r.self[i], others(r.others[i]), runtime.NumCPU(), r.perCPU[i])
	}
	fmt.Printf("  last/first quarter: %.2f (target >= 0.8); in writes per CPU-second of this process, %.2f\n", r.ratio, r.perCPU[3]/r.perCPU[0])
	fmt.Printf("  writes: %d, p50 %v, p99 %v; %s\n", r.ok, r.p50, r.p99, failures(r.failed, r.lastErr))
	fmt.Printf("  heap in use after a forced GC at the end: %.1f MiB (target <= 256 MiB; %.1f MiB allocated), %.1f MiB before the writers started; RSS %.1f MiB\n",
		mib(r.heapAfter), mib(r.liveAfter), mib(r.heapBefore), mib(r.rss))
	fmt.Printf("  snapshots written: %d over the 3 servers (Snapshot %v on average, WriteTo %v on average, %v at most, %.1f MiB the latest)\n",
		r.taken, r.captureMean, r.writeMean, r.writeMax, mib(uint64(r.snapBytes)))
	for _, s := range r.status {
		fmt.Printf("  %s (%s): SnapshotIndex %d, FirstIndex %d, LastIndex %d: %d entries retained\n",
			s.Name, s.Role, s.SnapshotIndex, s.FirstIndex, s.LastIndex, s.LastIndex-s.FirstIndex+1)
	}
	record("soak", "writes/s, last quarter / first", r.ratio, "x", atLeast(0.8), r.quarters...)
	record("soak", "heap in use after a forced GC at the end", mib(r.heapAfter), "MiB", atMost(256))
	record("soak", "writes failed", float64(r.failed), "", atMost(0))
	growth := (float64(r.liveAfter) - float64(r.liveBefore)) / r.d.Seconds()
	fmt.Printf("  heap growth: %.2f MiB/s (allocated heap after forced GCs, end minus start, over the run)\n", growth/(1<<20))
	if *soakPlainFor <= 0 {
		return
	}
	fmt.Printf("\nthe same load for %v without a Snapshotter (the whole log is kept):\n", *soakPlainFor)
	o.snapshots = false
	p, err := runSoak(o, *writers, *soakPlainFor)
	check(err)
	fmt.Printf("  %.0f writes/s (quarters:", float64(p.ok)/p.d.Seconds())
	for _, q := range p.quarters {
		fmt.Printf(" %.0f", q)
	}
	fmt.Printf("; other processes used %s, %s, %s and %s processors), %s\n",
		others(p.others[0]), others(p.others[1]), others(p.others[2]), others(p.others[3]), failures(p.failed, p.lastErr))
	pg := (float64(p.liveAfter) - float64(p.liveBefore)) / p.d.Seconds()
	s := p.status[0]
	fmt.Printf("  heap growth: %.1f MiB/s (%.1f MiB allocated after a forced GC at the end, %.1f MiB at the start; in use %.1f MiB); %d entries retained per server, %.0f bytes of heap each over 3 servers\n",
		pg/(1<<20), mib(p.liveAfter), mib(p.liveBefore), mib(p.heapAfter), s.LastIndex-s.FirstIndex+1,
		(float64(p.liveAfter)-float64(p.liveBefore))/float64(s.LastIndex-s.FirstIndex+1)/3)
	fmt.Printf("  with snapshots: %.2f MiB/s over %v; at %.1f MiB/s, 256 MiB last %.0f s\n", growth/(1<<20), r.d, pg/(1<<20), 256/(pg/(1<<20)))
}

func others(v float64) string {
	if v < 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.2f", v)
}

func failures(n int64, last any) string {
	if n == 0 {
		return "no write failed"
	}
	return fmt.Sprintf("%d writes failed, the last with: %v", n, last)
}
