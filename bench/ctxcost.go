package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// What a deadline costs: the same cluster takes writes and reads with a
// context of callTimeout on every call, and with context.Background(), in
// turns of short slices (ctxSlices of each), so that a ratio compares the
// two under the same machine. Each round is a fresh process.
//
// A third way tells exraft's part from the caller's: the caller makes and
// cancels the same context, as the first way does, but hands exraft
// context.Background(). What it costs beside the second way is what Go's
// context.WithTimeout costs the process (its timer and allocations, and
// what they cost the scheduler and the collector); what the first way
// costs beside it is exraft's handling of the deadline.
const ctxSlices = 5

// ctxWorkloads are the pairs measured, in the order the child prints them:
// for each, with a deadline, then without.
var ctxWorkloads = []string{"sequential write", "write", "read"}

func deadlineCost() {
	fmt.Printf("what a deadline costs exraft: the same cluster, calls with a %v deadline and with context.Background() taking turns in %d slices; each ratio is with/without, the median of %d rounds (fresh processes)\n",
		callTimeout, ctxSlices, *rounds)
	perRound := make([][]float64, len(ctxWorkloads))
	var added, own [2][]float64 // ns of processor time per op, writes and reads
	var exraftPart [2][]float64 // with a deadline / with the context made but not handed on
	for r := 0; r < *rounds; r++ {
		got := measureCtx()
		bare := got[len(got)-1]
		for k := range added {
			with, without := got[2*(k+1)], got[2*(k+1)+1]
			unused := got[2*len(ctxWorkloads)+k]
			added[k] = append(added[k], float64(with.cpu-without.cpu))
			own[k] = append(own[k], float64(bare.cpu))
			exraftPart[k] = append(exraftPart[k], with.rate/unused.rate)
		}
		for i := range ctxWorkloads {
			with, without := got[2*i], got[2*i+1]
			if i == 0 {
				perRound[i] = append(perRound[i], float64(with.p50)/float64(without.p50))
			} else {
				perRound[i] = append(perRound[i], with.rate/without.rate)
			}
		}
	}
	for i, w := range ctxWorkloads {
		name := fmt.Sprintf("%s throughput, %d callers, with/without a deadline", w, *writers)
		target := atLeast(0.95)
		if i == 0 {
			name, target = "sequential write p50, with/without a deadline", atMost(1.05)
		}
		m := medianOf(perRound[i])
		fmt.Printf("%-64s %.3fx (target %v; rounds %s)\n", name+":", m, target, ratiosOf(perRound[i], "%.3f"))
		record("compare", name, m, "x", target, perRound[i]...)
	}
	for k, w := range [2]string{"write", "read"} {
		name := fmt.Sprintf("%s throughput, the caller's context handed to exraft/made but not", w)
		m := medianOf(exraftPart[k])
		fmt.Printf("%-64s %.3fx (exraft's own part; rounds %s)\n", name+":", m, ratiosOf(exraftPart[k], "%.3f"))
		record("compare", name, m, "x", nil, exraftPart[k]...)
	}
	for k, w := range [2]string{"write", "read"} {
		a, o := medianOf(added[k]), medianOf(own[k])
		fmt.Printf("a deadline adds %.0f ns of this process's processor time per %s (64 callers, medians); the caller's own context.WithTimeout and cancel, alone, take %.0f ns\n", a, w, o)
		record("compare", fmt.Sprintf("processor time a deadline adds per %s", w), a, "ns", nil, added[k]...)
		record("compare", "of which the caller's own WithTimeout and cancel", o, "ns", nil, own[k]...)
	}
}

func measureCtx() []result {
	out, err := exec.Command(os.Args[0], childArgs("exraft/ctx")...).Output()
	if err != nil {
		check(fmt.Errorf("exraft/ctx: %v", err))
	}
	in := strings.NewReader(string(out))
	// With and without for each workload, the writes and reads with the
	// context made but not handed on, and the bare contexts.
	rs := make([]result, 2*len(ctxWorkloads)+3)
	for i := range rs {
		if _, err := fmt.Fscan(in, &rs[i].n, &rs[i].rate, &rs[i].p50, &rs[i].p99); err != nil {
			check(fmt.Errorf("exraft/ctx: cannot read %q: %v", out, err))
		}
		if i >= 2 { // the concurrent ones: processor time per op too
			if _, err := fmt.Fscan(in, &rs[i].cpu); err != nil {
				check(fmt.Errorf("exraft/ctx: cannot read %q: %v", out, err))
			}
		}
	}
	return rs
}

// runCtxChild measures one round on s and prints it (measureCtx reads it).
func runCtxChild(s system) {
	bg := context.Background()
	write := func(cmd []byte) error { _, err := s.leader.Write(bg, cmd); return err }
	read := func(q []byte) error { _, err := s.leader.Read(bg, q); return err }
	// The caller's part alone: the context is made and cancelled as
	// s.write and s.read make theirs, but exraft is not given it.
	madeOnly := func(op func([]byte) error) func([]byte) error {
		return func(b []byte) error {
			_, cancel := context.WithTimeout(bg, callTimeout)
			defer cancel()
			return op(b)
		}
	}
	warmUp(s)
	warmUp(system{write: write})
	var seq [2][]time.Duration
	var hists [6]histogram
	var took, used [6]time.Duration // wall and processor time
	for range ctxSlices {
		for k, w := range [2]func([]byte) error{s.write, write} {
			seq[k] = append(seq[k], sequentialLatencies(w, *seqOps/ctxSlices)...)
		}
		for k, op := range [6]func([]byte) error{s.write, write, s.read, read, madeOnly(write), madeOnly(read)} {
			start, cpu := time.Now(), sampleCPU()
			h := concurrentHist(op, *writers, *duration/ctxSlices)
			took[k] += time.Since(start)
			used[k] += sampleCPU().self - cpu.self
			hists[k].add(&h)
		}
	}
	for k := range seq {
		r := percentiles(seq[k], sum(seq[k]))
		fmt.Println(r.n, r.rate, int64(r.p50), int64(r.p99))
	}
	for k := range hists {
		h := &hists[k]
		fmt.Println(h.n, float64(h.n)/took[k].Seconds(), int64(h.quantile(0.5)), int64(h.quantile(0.99)), int64(used[k])/int64(h.n))
	}
	// The caller's own part: context.WithTimeout and its cancel, alone, by
	// as many goroutines, as withDeadline makes them for every call.
	cpu := sampleCPU()
	h := concurrentHist(func([]byte) error {
		_, cancel := context.WithTimeout(context.Background(), callTimeout)
		cancel()
		return nil
	}, *writers, *duration/ctxSlices)
	fmt.Println(h.n, 0, 0, 0, int64(sampleCPU().self-cpu.self)/int64(h.n))
}

func sum(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t
}
