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
const ctxSlices = 5

// ctxWorkloads are the pairs measured, in the order the child prints them:
// for each, with a deadline, then without.
var ctxWorkloads = []string{"sequential write", "write", "read"}

func deadlineCost() {
	fmt.Printf("what a deadline costs exraft: the same cluster, calls with a %v deadline and with context.Background() taking turns in %d slices; each ratio is with/without, the median of %d rounds (fresh processes)\n",
		callTimeout, ctxSlices, *rounds)
	perRound := make([][]float64, len(ctxWorkloads))
	for r := 0; r < *rounds; r++ {
		got := measureCtx()
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
}

func measureCtx() []result {
	out, err := exec.Command(os.Args[0], childArgs("exraft/ctx")...).Output()
	if err != nil {
		check(fmt.Errorf("exraft/ctx: %v", err))
	}
	in := strings.NewReader(string(out))
	rs := make([]result, 2*len(ctxWorkloads))
	for i := range rs {
		if _, err := fmt.Fscan(in, &rs[i].n, &rs[i].rate, &rs[i].p50, &rs[i].p99); err != nil {
			check(fmt.Errorf("exraft/ctx: cannot read %q: %v", out, err))
		}
	}
	return rs
}

// runCtxChild measures one round on s and prints it (measureCtx reads it).
func runCtxChild(s system) {
	bg := context.Background()
	write := func(cmd []byte) error { _, err := s.leader.Write(bg, cmd); return err }
	read := func(q []byte) error { _, err := s.leader.Read(bg, q); return err }
	warmUp(s)
	warmUp(system{write: write})
	var seq [2][]time.Duration
	var hists [4]histogram
	var took [4]time.Duration
	for range ctxSlices {
		for k, w := range [2]func([]byte) error{s.write, write} {
			seq[k] = append(seq[k], sequentialLatencies(w, *seqOps/ctxSlices)...)
		}
		for k, op := range [4]func([]byte) error{s.write, write, s.read, read} {
			start := time.Now()
			h := concurrentHist(op, *writers, *duration/ctxSlices)
			took[k] += time.Since(start)
			hists[k].add(&h)
		}
	}
	for k := range seq {
		r := percentiles(seq[k], sum(seq[k]))
		fmt.Println(r.n, r.rate, int64(r.p50), int64(r.p99))
	}
	for k := range hists {
		h := &hists[k]
		fmt.Println(h.n, float64(h.n)/took[k].Seconds(), int64(h.quantile(0.5)), int64(h.quantile(0.99)))
	}
}

func sum(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t
}
