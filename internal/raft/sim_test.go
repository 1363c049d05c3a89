package raft

// TestSim runs the protocol core through seeded random fault schedules and
// checks Raft's safety invariants after every step (sim_helpers_test.go).
//
//	go test -run 'TestSim$' ./internal/raft                       1,000 seeds (CI)
//	EXRAFT_SIM_SEEDS=100000 go test -run 'TestSim$' -timeout 2h ./internal/raft   long mode
//	EXRAFT_SIM_SEED=1234 go test -run 'TestSim$' -v ./internal/raft   one seed, full trace
//
// EXRAFT_SIM_FIRST sets the first seed (default 1), EXRAFT_SIM_STEPS the
// random steps per seed (default 3000) and EXRAFT_SIM_MAXFAIL how many failing
// seeds stop the run (default 20). A seed's schedule does not depend on the
// number of steps, so a failure at step k replays with any EXRAFT_SIM_STEPS
// >= k. Seeds that keep a quorum of voters up end with a fault-free phase in
// which a leader must be elected and a write and a read must finish
// (liveness).

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exraft/exraft/internal/session"
)

const defaultSteps = 3000

func envUint(t *testing.T, name string, def uint64) uint64 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

func TestSim(t *testing.T) {
	steps := int(envUint(t, "EXRAFT_SIM_STEPS", defaultSteps))
	if v := os.Getenv("EXRAFT_SIM_SEED"); v != "" {
		seed := envUint(t, "EXRAFT_SIM_SEED", 0)
		s, f := runSim(seed, simOptions{steps: steps, liveness: true, verbose: true})
		t.Logf("seed %d: %d servers at the start, majority loss allowed: %v, maxInflight %d, maxBatch %d, "+
			"%d session clients (timeout %d ms, at most %d sessions)\nevents:\n%s",
			seed, s.boot, s.majorityLoss, s.maxInflight, s.maxBatch, len(s.ses.clients), s.ses.timeout, s.ses.maxSessions, s.trace())
		t.Logf("stats: %+v\nfinal state:\n%s", s.stats, s.describe())
		if f != nil {
			t.Fatalf("seed %d, step %d: %v", f.seed, f.step, f.err)
		}
		return
	}
	seeds := envUint(t, "EXRAFT_SIM_SEEDS", 1000)
	first := envUint(t, "EXRAFT_SIM_FIRST", 1)
	if testing.Short() && seeds > 200 {
		seeds = 200
	}
	maxFailures := int64(envUint(t, "EXRAFT_SIM_MAXFAIL", 20))
	var (
		next     atomic.Uint64
		nfail    atomic.Int64
		mu       sync.Mutex
		failures []*failure
		total    simStats
		runs     int
		wg       sync.WaitGroup
	)
	next.Store(first)
	start := time.Now()
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for nfail.Load() < maxFailures {
				seed := next.Add(1) - 1
				if seed >= first+seeds {
					return
				}
				s, f := runSim(seed, simOptions{steps: steps, liveness: true})
				mu.Lock()
				runs++
				if seeds >= 20000 && runs%10000 == 0 {
					t.Logf("%d seeds run, %d failed, %v", runs, len(failures), time.Since(start).Round(time.Second))
				}
				st := s.stats
				total.leaders += st.leaders
				total.commits += st.commits
				total.finishedWrites += st.finishedWrites
				total.readsDone += st.readsDone
				total.crashes += st.crashes
				total.restarts += st.restarts
				total.adds += st.adds
				total.removes += st.removes
				total.snapshots += st.snapshots
				total.installs += st.installs
				for o, k := range st.sessions {
					total.sessions[o] += k
				}
				total.sessionsDropped += st.sessionsDropped
				if f != nil {
					failures = append(failures, f)
					nfail.Add(1)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	ses := total.sessions
	t.Logf("%d seeds from %d, %d steps each, in %v: %d leaders, %d entries committed, %d writes and %d reads finished, %d crashes, %d restarts, %d adds, %d removes, %d snapshots taken, %d installed; "+
		"session records applied: %d registered, %d writes applied, %d duplicates, %d expired, %d stale, %d closes, %d sessions dropped (expired or least recently used)",
		runs, first, steps, time.Since(start).Round(time.Millisecond), total.leaders, total.commits,
		total.finishedWrites, total.readsDone, total.crashes, total.restarts, total.adds, total.removes,
		total.snapshots, total.installs, ses[session.Registered], ses[session.Applied], ses[session.Duplicate],
		ses[session.Expired], ses[session.Stale], ses[session.Closed], total.sessionsDropped)
	if len(failures) == 0 {
		return
	}
	sort.Slice(failures, func(i, j int) bool { return failures[i].seed < failures[j].seed })
	var others strings.Builder
	for _, f := range failures[1:] {
		msg, _, _ := strings.Cut(f.err.Error(), "\n")
		fmt.Fprintf(&others, "  seed %d step %d (%s): %s\n", f.seed, f.step, f.mode, msg)
	}
	t.Fatalf("%d of %d seeds failed; the first:\n%v\nother failing seeds:\n%s", len(failures), runs, failures[0], others.String())
}

// ---- FuzzCoreStep: arbitrary messages into a simulated cluster --------------------

// FuzzCoreStep runs a three-server simulated cluster whose schedule comes
// from the input: after eight bytes that seed the simulator, each pair of
// bytes picks a step of the simulator or injects a message decoded from the
// input, as a faulty or hostile peer could send it. A core must never panic on any
// message. Until the first injected message the cluster-wide invariants are
// checked after every step; after it, a forged message may lie about
// anything Raft trusts a peer for, so only the per-server ones are.
func FuzzCoreStep(f *testing.F) {
	f.Add([]byte("exraft00 .......... ........ ....."))
	f.Add(fuzzSteps("seed0001", 400))
	// Steps, then a well-formed forged append from n1 one term ahead with two
	// entries and a commit index beyond them, then more steps.
	f.Add(append(append(fuzzSteps("seed0002", 300), 0, 0, 1, 5, 0, 1, 0, 1, 0, 0, 0, 0, 2, 1, 0, 'x', 0, 0, 'y', 2, 0, 0, 0, 0), fuzzSteps("", 100)...))
	// A forged vote request and a forged append response from the unknown
	// server "intruder".
	f.Add(append(append(fuzzSteps("seed0003", 300), 0, 0, 0, 3, 250, 7, 0, 3, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 1, 6, 220, 9, 1, 2, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0), fuzzSteps("", 100)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := fuzzInput{b: data}
		s := newSim(in.uint64(), simOptions{initial: 3, majorityLoss: 1, verbose: false})
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("panic: %v\nstate:\n%slast events:\n%s", r, s.describe(), s.trace())
			}
		}()
		for ops := 0; in.more() && ops < 400; ops++ {
			// Two bytes pick the step; the details come from the seed.
			s.step++
			if r := int(in.byte())<<8 | int(in.byte()); r%32 == 0 {
				s.inject(&in)
			} else {
				s.doStep(r % 1000)
			}
			if err := s.checkInvariants(); err != nil {
				t.Fatalf("step %d: %v\nstate:\n%slast events:\n%s", s.step, err, s.describe(), s.trace())
			}
		}
	})
}

// fuzzSteps is fuzz input for FuzzCoreStep: a seed, then n steps that
// deliver, tick, propose and read.
func fuzzSteps(seed string, n int) []byte {
	b := []byte(seed)
	picks := []int{650, 400, 400, 100, 550, 700, 400, 790, 100, 999}
	for i := 0; i < n; i++ {
		r := picks[i%len(picks)]
		b = append(b, byte(r>>8), byte(r))
	}
	return b
}

// inject decodes a message from the input and steps a server with it.
func (s *sim) inject(in *fuzzInput) {
	alive := s.alive()
	if len(alive) == 0 {
		return
	}
	n := alive[int(in.byte())%len(alive)]
	c := n.c
	var m Message
	m.Type = MessageType(in.byte() % 9) // 0 is not a message type
	from := in.byte()
	switch {
	case from < 200 && len(s.net.names) > 1:
		m.From = s.net.names[int(from)%len(s.net.names)]
		if o := s.nodes[m.From]; o != nil && in.byte()%4 != 0 {
			m.FromInc = o.inc
		} else {
			m.FromInc = uint64(in.byte())
		}
	default:
		m.From, m.FromInc = "intruder", uint64(in.byte())
	}
	m.FromAddr, m.To, m.ToAddr = m.From, n.name, n.name
	if b := in.byte(); b%3 == 1 {
		m.ToInc = n.inc
	} else if b%3 == 2 {
		m.ToInc = uint64(b)
	}
	// Numbers near the server's own, to reach past its checks, or anything.
	near := func(base uint64) uint64 {
		b := in.byte()
		if b >= 240 {
			return uint64(b-240) << 60
		}
		return base + uint64(b%8) - min(base, uint64(b/8%8))
	}
	m.Term = near(c.term)
	m.LastIndex = near(c.log.lastIndex())
	m.LastTerm = near(c.log.lastTerm())
	flags := in.byte()
	m.Force = flags&1 != 0
	m.Reject = flags&2 != 0
	m.PrevIndex = near(c.commit)
	m.PrevTerm, _ = c.log.term(m.PrevIndex)
	if flags&4 != 0 {
		m.PrevTerm = near(m.PrevTerm)
	}
	k := int(in.byte() % 5)
	term := m.PrevTerm
	for i := 0; i < k; i++ {
		term += uint64(in.byte() % 2)
		e := Entry{Index: m.PrevIndex + 1 + uint64(i), Term: term, Type: EntryType(in.byte() % 4), Data: []byte{in.byte()}}
		if flags&8 != 0 {
			// Indexes that do not follow PrevIndex: a peer's codec or a bug
			// could deliver them.
			e.Index = near(e.Index)
		}
		if e.Type == EntryConfig {
			if flags&16 != 0 {
				e.Data = encodeMembership(membership{Voters: []member{{Name: n.name, Addr: n.name, Inc: n.inc}}})
			} else {
				e.Data = []byte{0xc1, in.byte()} // not msgpack
			}
		}
		m.Entries = append(m.Entries, e)
	}
	m.Commit = near(c.commit)
	m.Seq = near(c.seq)
	m.Match = near(c.log.lastIndex())
	m.HintIndex = near(c.commit)
	m.HintTerm = near(c.term)
	s.global = false
	s.ev(event{kind: evForged, m: m})
	c.step(m)
	s.net.collect(n.name)
}

// TestSimSchedulesAreDeterministic: a seed replays the same run.
func TestSimSchedulesAreDeterministic(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		a, fa := runSim(seed, simOptions{steps: 300, liveness: true, verbose: true})
		b, fb := runSim(seed, simOptions{steps: 300, liveness: true, verbose: true})
		if (fa == nil) != (fb == nil) || a.trace() != b.trace() {
			t.Fatalf("seed %d ran two different ways", seed)
		}
	}
}
