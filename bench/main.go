// Command bench measures exraft the way its users call it, every call
// with a context that has a deadline (and hashicorp/raft with the same
// timeout), and prints each figure with its target and, at the end, all of
// them in one table:
//
//	cd bench && go run .              # every section below, about 8 minutes
//	cd bench && go run . -json >f     # the same, the figures as JSON on stdout
//	cd bench && go run . -only compare,growth
//
// The sections, in the order a run takes them:
//
//	compare   exraft against hashicorp/raft v1.8.0, 3 servers in one
//	          process, loopback TCP, 16-byte commands: sequential writes,
//	          64 writers, 64 readers; and what a deadline costs exraft
//	          against a context without one (ctxcost.go)
//	growth    the sequential p50 after 1,000,000 more entries, and the heap
//	          each retained entry costs
//	failover  leader changes in a 5-server cluster (failover.go)
//	heal      how soon a leader reaches a follower after a silent
//	          partition heals (heal.go)
//	remote    writes through a Client by address and a Session, from the
//	          cluster's process and from another (remote.go, remote_proc.go)
//	soak      writes against a key-value state machine with snapshots
//	          (soak.go)
//	addserver, snapp99: further snapshot figures, not in the default run
//	          (addserver.go, snapp99.go)
//
// Every measurement of compare and growth runs in a fresh child process of
// this program, and the systems and ways it compares take turns, so that
// neither pays for the other's heap and both see the same machine. Naming
// a section's own flag (-remote, -failover 50, -soak 2m, -addserver N,
// -snapp99 20s) without -only runs that section alone.
//
// It is a separate module so that the library does not depend on
// hashicorp/raft.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/exraft/exraft"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

var (
	seqOps   = flag.Int("seq", 5000, "sequential writes per measurement")
	duration = flag.Duration("d", 3*time.Second, "length of each concurrent run")
	writers  = flag.Int("writers", 64, "concurrent writers (and readers)")
	growTo   = flag.Int("grow", 1_000_000, "entries the growth section adds to the log")
	rounds   = flag.Int("rounds", 3, "runs of each measurement; figures are medians")
	only     = flag.String("only", "", "run only these sections, comma-separated (default: "+strings.Join(defaultSections, ",")+")")
)

// system is one cluster under test: write sends one command through the
// leader and waits for it to commit and apply, as users call it, with a
// deadline of callTimeout.
type system struct {
	name  string
	write func(cmd []byte) error
	read  func(query []byte) error // nil when not measured
	stop  func()
	// settle waits until every server has applied what the leader
	// committed, so that a follower still catching up does not weigh on
	// the next measurement.
	settle func()
	length func() uint64  // entries in the leader's log
	leader *exraft.Server // exraft's
}

var (
	child      = flag.String("child", "", "internal: run one measurement (system/workload) and print it")
	cpuProfile = flag.String("cpuprofile", "", "with -child: write a CPU profile of the measurement to this file")
	shared     = flag.Bool("shared", false, "compare: run both systems in this one process instead (each then shares the other's heap and garbage collector)")
)

// sharedSystems are the clusters of a -shared run, started once.
var sharedSystems = map[string]system{}

// sections are what a run can measure, in the order it measures them.
var sections = []struct {
	name string
	run  func()
	flag string // the flag that, named alone, asks for this section
}{
	{"compare", compareSection, ""},
	{"growth", growthFigures, ""},
	{"failover", failoverMode, "failover"},
	{"heal", healMode, "heal"},
	{"remote", remoteModeRun, "remote"},
	{"soak", soakMode, "soak"},
	{"addserver", addServerMode, "addserver"},
	{"snapp99", snapP99Mode, "snapp99"},
}

var defaultSections = []string{"compare", "growth", "failover", "heal", "remote", "soak"}

func main() {
	flag.Parse()
	if *child == "remoteclient" {
		runProcClientChild()
		return
	}
	if *child != "" {
		runChild(*child)
		return
	}
	stdout := os.Stdout
	if *jsonOut {
		os.Stdout = os.Stderr
	}
	want := chosenSections()
	fmt.Printf("exraft bench, %s, GOMAXPROCS=%d, every call with a %v deadline\n", time.Now().UTC().Format("2006-01-02"), runtime.GOMAXPROCS(0), callTimeout)
	for _, sec := range sections {
		if want[sec.name] {
			fmt.Printf("\n== %s ==\n", sec.name)
			sec.run()
		}
	}
	printSummary(stdout)
}

// chosenSections is -only's list; without it, the sections whose own flags
// were named; without those, the default ones.
func chosenSections() map[string]bool {
	want := map[string]bool{}
	known := map[string]bool{}
	for _, sec := range sections {
		known[sec.name] = true
	}
	if *only != "" {
		for _, name := range strings.Split(*only, ",") {
			if !known[name] {
				check(fmt.Errorf("-only: no section %q (there are %s)", name, sectionNames()))
			}
			want[name] = true
		}
		return want
	}
	flag.Visit(func(f *flag.Flag) {
		for _, sec := range sections {
			if sec.flag == f.Name {
				want[sec.name] = true
			}
		}
	})
	if len(want) == 0 {
		for _, name := range defaultSections {
			want[name] = true
		}
	}
	return want
}

func sectionNames() string {
	var names []string
	for _, sec := range sections {
		names = append(names, sec.name)
	}
	return strings.Join(names, ", ")
}

// compareSection measures exraft against hashicorp/raft, each measurement
// in a fresh process, the rounds taking the systems in turn, and then what
// a deadline costs exraft.
func compareSection() {
	fmt.Printf("exraft vs hashicorp/raft v1.8.0: 3 servers in one process, loopback TCP, 16-byte commands, a %v deadline on every call of both\n", callTimeout)
	where := "each measurement in a fresh process"
	if *shared {
		where = "both systems in this one process"
	}
	fmt.Printf("each figure: the median of %d rounds, %s, rounds interleaved\n\n", *rounds, where)
	names := []string{"exraft/seq", "hashicorp/seq", "exraft/par", "hashicorp/par", "exraft/read"}
	got := map[string][]result{}
	var writeRatios, p50Ratios, readRatios []float64
	for r := 0; r < *rounds; r++ {
		for _, name := range names {
			got[name] = append(got[name], measure(name))
		}
		last := func(name string) result { return got[name][r] }
		writeRatios = append(writeRatios, last("exraft/par").rate/last("hashicorp/par").rate)
		p50Ratios = append(p50Ratios, float64(last("exraft/seq").p50)/float64(last("hashicorp/seq").p50))
		readRatios = append(readRatios, last("exraft/read").rate/last("exraft/par").rate)
	}
	es, hs, ep, hp, er := median(got["exraft/seq"]), median(got["hashicorp/seq"]), median(got["exraft/par"]), median(got["hashicorp/par"]), median(got["exraft/read"])
	fmt.Printf("%-34s %12s %10s %10s\n", "workload", "ops/s", "p50", "p99")
	row := func(name string, r result) {
		fmt.Printf("%-34s %12.0f %10v %10v\n", name, r.rate, r.p50, r.p99)
	}
	row("exraft sequential write", es)
	row("hashicorp sequential write", hs)
	row(fmt.Sprintf("exraft write, %d writers", *writers), ep)
	row(fmt.Sprintf("hashicorp write, %d writers", *writers), hp)
	row(fmt.Sprintf("exraft linearizable read, %d", *writers), er)
	fmt.Println()
	ratio := func(name string, v []float64, target *bound) {
		m := medianOf(v)
		fmt.Printf("%-52s %.2fx (target %v; rounds %s)\n", name+":", m, target, ratios(v))
		record("compare", name, m, "x", target, v...)
	}
	ratio(fmt.Sprintf("write throughput, %d writers, exraft/hashicorp", *writers), writeRatios, atLeast(4))
	ratio("sequential write p50, exraft/hashicorp", p50Ratios, atMost(0.7))
	ratio(fmt.Sprintf("exraft reads/writes, %d each", *writers), readRatios, atLeast(2.5))
	record("compare", fmt.Sprintf("exraft writes/s, %d writers", *writers), ep.rate, "ops/s", nil)
	record("compare", fmt.Sprintf("hashicorp writes/s, %d writers", *writers), hp.rate, "ops/s", nil)
	record("compare", fmt.Sprintf("exraft reads/s, %d readers", *writers), er.rate, "ops/s", nil)
	recordDuration("compare", "exraft sequential write p50", es.p50, "µs", nil)
	recordDuration("compare", "hashicorp sequential write p50", hs.p50, "µs", nil)
	for _, s := range sharedSystems {
		s.stop()
	}
	fmt.Println()
	deadlineCost()
}

func childArgs(name string) []string {
	return []string{"-child", name, "-seq", fmt.Sprint(*seqOps), "-d", duration.String(),
		"-writers", fmt.Sprint(*writers), "-grow", fmt.Sprint(*growTo)}
}

// measure runs one measurement in a child process and reads its result.
func measure(name string) result {
	if *shared {
		sys, work, _ := strings.Cut(name, "/")
		s, ok := sharedSystems[sys]
		if !ok {
			s = start(sys)
			sharedSystems[sys] = s
			warmUp(s)
		}
		return run(s, work)
	}
	out, err := exec.Command(os.Args[0], childArgs(name)...).Output()
	if err != nil {
		check(fmt.Errorf("%s: %v", name, err))
	}
	var r result
	if _, err := fmt.Sscan(string(out), &r.n, &r.rate, &r.p50, &r.p99); err != nil {
		check(fmt.Errorf("%s: cannot read %q: %v", name, out, err))
	}
	return r
}

func runChild(name string) {
	sys, work, _ := strings.Cut(name, "/")
	s := start(sys)
	defer s.stop()
	switch work {
	case "remote":
		runRemoteChild(s)
		return
	case "ctx":
		runCtxChild(s)
		return
	case "grown":
		grow(s)
		serveRuns(s)
		return
	case "fresh":
		sequential(s, 1000)
		serveRuns(s)
		return
	}
	warmUp(s)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		check(err)
		check(pprof.StartCPUProfile(f))
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	r := run(s, work)
	fmt.Println(r.n, r.rate, int64(r.p50), int64(r.p99))
}

func start(sys string) system {
	var s system
	var err error
	switch sys {
	case "exraft":
		s, err = startExraft()
	case "hashicorp":
		s, err = startHashicorp()
	default:
		err = fmt.Errorf("unknown system %q", sys)
	}
	check(err)
	return s
}

// warmUp treats both systems the same way (connections, pipelines, the
// leader's first term) before anything is measured.
func warmUp(s system) {
	sequential(s, 1000)
	concurrent(s.write, *writers, 500*time.Millisecond)
}

func run(s system, work string) result {
	switch work {
	case "seq":
		return sequential(s, *seqOps)
	case "par":
		return concurrent(s.write, *writers, *duration)
	case "read":
		return concurrent(s.read, *writers, *duration)
	}
	check(fmt.Errorf("unknown workload %q", work))
	return result{}
}

type result struct {
	n        int
	rate     float64
	p50, p99 time.Duration
	cpu      time.Duration // processor time per op, where measured
}

func median(rs []result) result {
	pick := func(f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return result{
		rate: pick(func(r result) float64 { return r.rate }),
		p50:  time.Duration(pick(func(r result) float64 { return float64(r.p50) })),
		p99:  time.Duration(pick(func(r result) float64 { return float64(r.p99) })),
	}
}

func percentiles(lat []time.Duration, elapsed time.Duration) result {
	slices.Sort(lat)
	r := result{n: len(lat), rate: float64(len(lat)) / elapsed.Seconds()}
	if len(lat) > 0 {
		r.p50 = lat[len(lat)/2]
		r.p99 = lat[len(lat)*99/100]
	}
	return r
}

func sequential(s system, n int) result {
	start := time.Now()
	lat := sequentialLatencies(s.write, n)
	return percentiles(lat, time.Since(start))
}

// sequentialLatencies makes n writes one after the other and returns how
// long each took.
func sequentialLatencies(write func([]byte) error, n int) []time.Duration {
	cmd := make([]byte, 16)
	lat := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		t := time.Now()
		check(write(cmd))
		lat = append(lat, time.Since(t))
	}
	return lat
}

func concurrent(op func([]byte) error, workers int, d time.Duration) result {
	start := time.Now()
	all := concurrentHist(op, workers, d)
	elapsed := time.Since(start)
	return result{n: all.n, rate: float64(all.n) / elapsed.Seconds(), p50: all.quantile(0.5), p99: all.quantile(0.99)}
}

// concurrentHist runs op in workers goroutines for d and returns the
// latencies of the operations.
func concurrentHist(op func([]byte) error, workers int, d time.Duration) histogram {
	var mu sync.Mutex
	var all histogram
	var failed atomic.Value
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			cmd := make([]byte, 16)
			binary.LittleEndian.PutUint64(cmd, uint64(w))
			h := new(histogram)
			// One clock reading per operation: each one's end is the
			// next one's start.
			for t := time.Now(); t.Before(deadline); {
				if err := op(cmd); err != nil {
					failed.Store(err)
					return
				}
				now := time.Now()
				h.record(now.Sub(t))
				t = now
			}
			mu.Lock()
			all.add(h)
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		check(err)
	}
	return all
}

// growthFigures compares exraft's sequential p50 on a cluster whose log
// holds growTo more entries with the p50 on a fresh cluster, each cluster in
// a process of its own, and prints the heap each retained entry costs. The
// two are measured in turns, nine runs each: the machine has spells, most
// a run long, at a slower pace (about 40 µs for this workload instead of
// 31), and the medians of runs taken in turns keep them from weighing on
// one side.
func growthFigures() {
	const runs = 9
	grown := startRunner("exraft/grown") // fills its log first
	fresh := startRunner("exraft/fresh")
	var g, f []result
	for i := 0; i < runs; i++ {
		f = append(f, fresh.run())
		g = append(g, grown.run())
	}
	fresh.quit()
	grown.quit()
	fp, gp := median(f).p50, median(g).p50
	var runRatios []float64
	for i := range f {
		runRatios = append(runRatios, float64(g[i].p50)/float64(f[i].p50))
	}
	fmt.Printf("log growth: sequential p50 %v from %d entries, %v from %d (ratio %.2f, target <= 1.2; medians of %d runs of 2,000 writes each, in turns)\n",
		fp, fresh.first, gp, grown.first, float64(gp)/float64(fp), runs)
	fmt.Println(grown.memory)
	record("growth", fmt.Sprintf("sequential p50 at %d entries / at %d", grown.first, fresh.first), float64(gp)/float64(fp), "x", atMost(1.2), runRatios...)
	recordDuration("growth", "sequential p50, fresh", fp, "µs", nil)
	recordDuration("growth", "sequential p50, grown", gp, "µs", nil)
	var perEntry float64
	_, err := fmt.Sscanf(grown.memory, "memory: %g", &perEntry)
	check(err)
	record("growth", "heap per retained entry per server, 16-byte command", perEntry, "bytes", atMost(80))
}

// grow writes growTo entries with concurrent writers and prints the heap
// each retained entry costs.
func grow(ex system) {
	sequential(ex, 1000)
	var before runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	filled := 0
	for filled < *growTo {
		r := concurrent(ex.write, *writers, time.Second)
		filled += r.n
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	perEntry := float64(after.HeapAlloc-before.HeapAlloc) / float64(filled) / 3
	fmt.Printf("memory: %.1f heap bytes per retained entry per server for a 16-byte command (target <= %d)\n", perEntry, 16+64)
}

// serveRuns reports the log's length, then runs a sequential measurement,
// once every server has applied everything, each time a line "run" comes on
// stdin, and reports its p50.
func serveRuns(ex system) {
	fmt.Println("length", ex.length())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() != "run" {
			continue
		}
		ex.settle()
		r := sequential(ex, 2000)
		fmt.Println("p50", int64(r.p50))
	}
}

// runner is a child process that measures on request (serveRuns).
type runner struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
	memory string // what a grown runner printed about its heap
	first  uint64 // its log's length before the first run
}

func startRunner(name string) *runner {
	cmd, in, out := startPiped(childArgs(name)...)
	r := &runner{cmd: cmd, in: in, out: out}
	for {
		line := r.line()
		if strings.HasPrefix(line, "memory:") {
			r.memory = line
			continue
		}
		_, err := fmt.Sscanf(line, "length %d", &r.first)
		check(err)
		return r
	}
}

// startPiped starts this program with args, to be asked and answered a
// line at a time on its stdin and stdout; its stderr is this one's.
func startPiped(args ...string) (*exec.Cmd, io.WriteCloser, *bufio.Scanner) {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	check(err)
	out, err := cmd.StdoutPipe()
	check(err)
	check(cmd.Start())
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<16), 1<<24) // a line of latencies is long
	return cmd, in, sc
}

func (r *runner) line() string {
	if !r.out.Scan() {
		check(fmt.Errorf("%v: ended early: %v", r.cmd.Args, r.out.Err()))
	}
	return r.out.Text()
}

func (r *runner) run() result {
	_, err := fmt.Fprintln(r.in, "run")
	check(err)
	var p50 int64
	_, err = fmt.Sscanf(r.line(), "p50 %d", &p50)
	check(err)
	return result{p50: time.Duration(p50)}
}

func (r *runner) quit() {
	r.in.Close()
	check(r.cmd.Wait())
}

// ---- exraft ----

type exCounter struct{ n uint64 }

func (c *exCounter) Apply([]byte) []byte { c.n++; return nil }
func (c *exCounter) Query([]byte) []byte {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], c.n)
	return b[:]
}

func startExraft() (system, error) {
	var lns []net.Listener
	var peers []exraft.Peer
	for i := 0; i < 3; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return system{}, err
		}
		lns = append(lns, ln)
		peers = append(peers, exraft.Peer{Name: fmt.Sprintf("ex%d", i), Addr: ln.Addr().String()})
	}
	var servers []*exraft.Server
	for i := range peers {
		s, err := exraft.StartServer(&exCounter{}, exraft.Config{Name: peers[i].Name, Listener: lns[i], InitialConfig: peers})
		if err != nil {
			return system{}, err
		}
		servers = append(servers, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := servers[0].AwaitLeader(ctx)
	if err != nil {
		return system{}, err
	}
	var leader *exraft.Server
	for _, s := range servers {
		if s.Name() == l.Name {
			leader = s
		}
	}
	return system{
		name: "exraft",
		write: withDeadline(func(ctx context.Context, cmd []byte) error {
			_, err := leader.Write(ctx, cmd)
			return err
		}),
		read: withDeadline(func(ctx context.Context, q []byte) error {
			_, err := leader.Read(ctx, q)
			return err
		}),
		stop: func() {
			for _, s := range servers {
				s.Stop()
			}
		},
		length: func() uint64 { return leader.Status().LastIndex },
		leader: leader,
		settle: func() {
			commit := leader.Status().CommitIndex
			for _, s := range servers {
				for s.Status().AppliedIndex < commit {
					time.Sleep(time.Millisecond)
				}
			}
		},
	}, nil
}

// ---- hashicorp/raft ----

type hcCounter struct{ n atomic.Uint64 }

func (c *hcCounter) Apply(*raft.Log) interface{}         { c.n.Add(1); return nil }
func (c *hcCounter) Snapshot() (raft.FSMSnapshot, error) { return hcSnap{}, nil }
func (c *hcCounter) Restore(r io.ReadCloser) error       { return r.Close() }

type hcSnap struct{}

func (hcSnap) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (hcSnap) Release()                             {}

func startHashicorp() (system, error) {
	var nodes []*raft.Raft
	var servers []raft.Server
	var transports []*raft.NetworkTransport
	for i := 0; i < 3; i++ {
		t, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 10*time.Second, io.Discard)
		if err != nil {
			return system{}, err
		}
		transports = append(transports, t)
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprintf("hc%d", i)), Address: t.LocalAddr()})
	}
	for i, t := range transports {
		conf := raft.DefaultConfig()
		conf.LocalID = servers[i].ID
		conf.Logger = hclog.NewNullLogger()
		store := raft.NewInmemStore()
		r, err := raft.NewRaft(conf, &hcCounter{}, store, store, raft.NewInmemSnapshotStore(), t)
		if err != nil {
			return system{}, err
		}
		if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
			return system{}, err
		}
		nodes = append(nodes, r)
	}
	var leader *raft.Raft
	deadline := time.Now().Add(20 * time.Second)
	for leader == nil {
		if time.Now().After(deadline) {
			return system{}, fmt.Errorf("hashicorp/raft elected no leader")
		}
		for _, r := range nodes {
			if r.State() == raft.Leader {
				leader = r
			}
		}
		time.Sleep(10 * time.Millisecond) // hashicorp/raft offers no wait for this
	}
	return system{
		name:  "hashicorp/raft",
		write: func(cmd []byte) error { return leader.Apply(cmd, callTimeout).Error() },
		stop: func() {
			for _, r := range nodes {
				r.Shutdown().Error()
			}
			for _, t := range transports {
				t.Close()
			}
		},
	}, nil
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
