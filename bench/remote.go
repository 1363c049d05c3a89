package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/exraft/exraft"
)

var (
	remoteMode = flag.Bool("remote", false, "run the remote section alone (see -only): writes through an exraft.Client by address, and through an exraft.Session, against Server.Write in process, each with a deadline")
	profileWay = flag.String("profileway", "Client", "with -child exraft/remote and -cpuprofile: the way whose concurrent writes are profiled, in a run of their own after the measurement")
)

// The remote mode measures what a client pays over a caller in the
// leader's process: the same writes, each with a deadline of callTimeout
// as users call, in process, through one exraft.Client by address, and
// through one exraft.Session on that Client (exactly once, so one more
// entry in the session table per write), over loopback TCP, from other
// goroutines of the cluster's process (the targets) and from a
// process of their own (remote_proc.go; figures without a target). Each
// round is a fresh process with one cluster, in which the ways take turns
// in short slices (remoteSlices of each workload), so that all see the
// same machine: a shared one has spells of other work that would fall on
// one side of a ratio taken from runs seconds apart. Each ratio printed is
// the median of the rounds'.
const remoteSlices = 5

// The ways of writing the remote mode compares, in the order a round
// measures and prints them.
var remoteWays = [...]string{"in-process", "Client", "Session", "Client, other process", "Session, other process"}

// inOtherProcess reports whether remoteWays[k] runs in a client process;
// its figures have no target (see remote_proc.go).
func inOtherProcess(k int) bool { return k >= 3 }

func remoteModeRun() {
	fmt.Printf("exraft remote writes: one exraft.Client by address and one exraft.Session on it (loopback TCP) against Server.Write in process; 3 servers in one process, 16-byte commands, a %v deadline on every call, GOMAXPROCS=%d\n", callTimeout, runtime.GOMAXPROCS(0))
	fmt.Printf("each figure: the median of %d rounds, each a fresh process in which the three ways take turns in %d slices of each workload\n\n", *rounds, remoteSlices)
	const n = len(remoteWays)
	var seq, par [n][]result
	var p50Ratios, parRatios, cpu [n][]float64
	for r := 0; r < *rounds; r++ {
		s, p, c := measureRemote()
		for k := range n {
			seq[k] = append(seq[k], s[k])
			par[k] = append(par[k], p[k])
			cpu[k] = append(cpu[k], c[k])
			p50Ratios[k] = append(p50Ratios[k], float64(s[k].p50)/float64(s[0].p50))
			parRatios[k] = append(parRatios[k], p[k].rate/p[0].rate)
		}
	}
	fmt.Printf("%-40s %12s %10s %10s %12s\n", "workload", "ops/s", "p50", "p99", "CPU/op")
	for k, way := range remoteWays {
		m := median(seq[k])
		fmt.Printf("%-40s %12.0f %10v %10v\n", way+" sequential write", m.rate, m.p50, m.p99)
	}
	for k, way := range remoteWays {
		m := median(par[k])
		fmt.Printf("%-40s %12.0f %10v %10v %12v\n", fmt.Sprintf("%s write, %d writers", way, *writers), m.rate, m.p50, m.p99, time.Duration(medianOf(cpu[k])))
	}
	fmt.Println()
	for k := 1; k < n; k++ {
		parTarget, seqTarget := atLeast(0.5), atMost(2)
		parText, seqText := "target >= 0.5; ", "target <= 2; "
		if inOtherProcess(k) {
			parTarget, seqTarget, parText, seqText = nil, nil, "", ""
		}
		fmt.Printf("%-22s write throughput, %d writers: remote/in-process = %.2fx (%srounds %s)\n", remoteWays[k], *writers, medianOf(parRatios[k]), parText, ratios(parRatios[k]))
		fmt.Printf("%-22s sequential write p50:        remote/in-process = %.2fx (%srounds %s)\n", remoteWays[k], medianOf(p50Ratios[k]), seqText, ratios(p50Ratios[k]))
		record("remote", fmt.Sprintf("%s writes, %d writers, remote/in-process", remoteWays[k], *writers), medianOf(parRatios[k]), "x", parTarget, parRatios[k]...)
		record("remote", remoteWays[k]+" sequential write p50, remote/in-process", medianOf(p50Ratios[k]), "x", seqTarget, p50Ratios[k]...)
	}
}

// measureRemote runs one round in a child process (runRemoteChild) and
// reads its results, in remoteWays' order: sequential, then concurrent,
// with the CPU time of the whole process per concurrent write.
func measureRemote() (seq, par [len(remoteWays)]result, cpu [len(remoteWays)]float64) {
	out, err := exec.Command(os.Args[0], childArgs("exraft/remote")...).Output()
	if err != nil {
		check(fmt.Errorf("exraft/remote: %v", err))
	}
	in := strings.NewReader(string(out))
	for _, rs := range []*[len(remoteWays)]result{&seq, &par} {
		for i := range rs {
			if _, err := fmt.Fscan(in, &rs[i].n, &rs[i].rate, &rs[i].p50, &rs[i].p99); err != nil {
				check(fmt.Errorf("exraft/remote: cannot read %q: %v", out, err))
			}
			if rs == &par {
				if _, err := fmt.Fscan(in, &cpu[i]); err != nil {
					check(fmt.Errorf("exraft/remote: cannot read %q: %v", out, err))
				}
			}
		}
	}
	return seq, par, cpu
}

// runRemoteChild measures one round of the remote mode on s, the cluster,
// and prints it.
func runRemoteChild(s system) {
	c, addr := &exraft.Client{}, s.leader.Addr()
	defer c.Close()
	var addrs []string
	for _, p := range s.leader.Status().Members {
		addrs = append(addrs, p.Addr)
	}
	sess := c.NewSession(addrs...)
	proc := startProcClient(append([]string{addr}, addrs...))
	defer proc.stop()
	ways := [3]func([]byte) error{
		withDeadline(func(ctx context.Context, cmd []byte) error {
			_, err := s.leader.Write(ctx, cmd)
			return err
		}),
		withDeadline(func(ctx context.Context, cmd []byte) error {
			_, err := c.Write(ctx, addr, cmd)
			return err
		}),
		withDeadline(func(ctx context.Context, cmd []byte) error {
			_, err := sess.Write(ctx, cmd)
			return err
		}),
	}
	for _, w := range ways {
		warmUp(system{write: w})
	}
	// Each way's sequential and concurrent workloads, in this process or
	// in the client process; the second returns also the CPU time spent
	// outside this process.
	var seqOf [len(remoteWays)]func(n int) []time.Duration
	var parOf [len(remoteWays)]func(writers int, d time.Duration) (histogram, time.Duration)
	for k := range remoteWays {
		if !inOtherProcess(k) {
			w := ways[k]
			seqOf[k] = func(n int) []time.Duration { return sequentialLatencies(w, n) }
			parOf[k] = func(writers int, d time.Duration) (histogram, time.Duration) { return concurrentHist(w, writers, d), 0 }
			continue
		}
		way := strings.TrimSuffix(remoteWays[k], ", other process")
		seqOf[k] = func(n int) []time.Duration { return proc.sequential(way, n) }
		parOf[k] = func(writers int, d time.Duration) (histogram, time.Duration) { return proc.concurrent(way, writers, d) }
	}
	var seq [len(remoteWays)][]time.Duration
	var par [len(remoteWays)]histogram
	var parTime, parCPU [len(remoteWays)]time.Duration
	for i := 0; i < remoteSlices; i++ {
		for k := range remoteWays {
			seq[k] = append(seq[k], seqOf[k](*seqOps/remoteSlices)...)
		}
	}
	for i := 0; i < remoteSlices; i++ {
		for k := range remoteWays {
			start, before := time.Now(), sampleCPU()
			h, elsewhere := parOf[k](*writers, *duration/remoteSlices)
			parTime[k] += time.Since(start)
			parCPU[k] += sampleCPU().self - before.self + elsewhere
			par[k].add(&h)
		}
	}
	for k := range remoteWays {
		var busy time.Duration
		for _, d := range seq[k] {
			busy += d
		}
		r := percentiles(seq[k], busy) // the rate while writing
		fmt.Println(r.n, r.rate, int64(r.p50), int64(r.p99))
	}
	for k := range remoteWays {
		fmt.Println(par[k].n, float64(par[k].n)/parTime[k].Seconds(), int64(par[k].quantile(0.5)), int64(par[k].quantile(0.99)), float64(parCPU[k])/float64(par[k].n))
	}
	if *cpuProfile != "" {
		k := slices.Index(remoteWays[:], *profileWay)
		if k < 0 || inOtherProcess(k) {
			check(fmt.Errorf("-profileway %q: not one of %v", *profileWay, remoteWays[:3]))
		}
		profileRemote(ways[k])
	}
}

// profileRemote writes a CPU profile of way's concurrent writes, apart from
// the measurement, so that the profile holds one way's costs only.
func profileRemote(way func([]byte) error) {
	f, err := os.Create(*cpuProfile)
	check(err)
	defer f.Close()
	check(pprof.StartCPUProfile(f))
	concurrentHist(way, *writers, *duration)
	pprof.StopCPUProfile()
}

func withDeadline(op func(ctx context.Context, cmd []byte) error) func([]byte) error {
	return func(cmd []byte) error {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		return op(ctx, cmd)
	}
}

func medianOf(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func ratios(v []float64) string { return ratiosOf(v, "%.2f") }

func ratiosOf(v []float64, format string) string {
	var s string
	for i, x := range v {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf(format, x)
	}
	return s
}
