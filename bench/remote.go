package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"slices"

	"github.com/exraft/exraft"
)

var remoteMode = flag.Bool("remote", false, "run the remote mode instead of the comparison: writes through an exraft.Client by address against Server.Write in process, each with a deadline")

// The remote mode measures what a client in another process pays over a
// caller in the leader's: the same writes, each with a deadline of
// callTimeout as users call, in process (exdeadline) and through one
// exraft.Client by address over loopback TCP (exclient). The rounds
// interleave the two, and each ratio is the median of the rounds' own,
// each taken from measurements minutes apart at most.
var remoteNames = []string{"exdeadline/seq", "exclient/seq", "exdeadline/par", "exclient/par"}

func remoteModeRun() {
	fmt.Printf("exraft remote writes: one exraft.Client by address (loopback TCP) against Server.Write in process; 3 servers in one process, 16-byte commands, a %v deadline on every call, GOMAXPROCS=%d\n", callTimeout, runtime.GOMAXPROCS(0))
	fmt.Printf("each figure: the median of %d rounds, each measurement in a fresh process, rounds interleaved\n\n", *rounds)
	got := map[string][]result{}
	var parRatios, p50Ratios []float64
	for r := 0; r < *rounds; r++ {
		for _, name := range remoteNames {
			got[name] = append(got[name], measure(name))
		}
		parRatios = append(parRatios, got["exclient/par"][r].rate/got["exdeadline/par"][r].rate)
		p50Ratios = append(p50Ratios, float64(got["exclient/seq"][r].p50)/float64(got["exdeadline/seq"][r].p50))
	}
	fmt.Printf("%-40s %12s %10s %10s\n", "workload", "ops/s", "p50", "p99")
	for _, row := range []struct{ label, name string }{
		{"in-process sequential write", "exdeadline/seq"},
		{"remote sequential write", "exclient/seq"},
		{fmt.Sprintf("in-process write, %d writers", *writers), "exdeadline/par"},
		{fmt.Sprintf("remote write, %d writers on one Client", *writers), "exclient/par"},
	} {
		m := median(got[row.name])
		fmt.Printf("%-40s %12.0f %10v %10v\n", row.label, m.rate, m.p50, m.p99)
	}
	fmt.Println()
	fmt.Printf("write throughput, %d writers: remote/in-process = %.2fx (target >= 0.5; rounds %s)\n", *writers, medianOf(parRatios), ratios(parRatios))
	fmt.Printf("sequential write p50:        remote/in-process = %.2fx (target <= 2; rounds %s)\n", medianOf(p50Ratios), ratios(p50Ratios))
}

func medianOf(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func ratios(v []float64) string {
	var s string
	for i, x := range v {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%.2f", x)
	}
	return s
}

// startRemoteSystem starts exraft's cluster for the remote mode, its writes
// in process (exdeadline) or through a Client (exclient).
func startRemoteSystem(sys string) (system, error) {
	s, err := startExraft()
	if err != nil {
		return s, err
	}
	withDeadline := func(op func(ctx context.Context, cmd []byte) error) func([]byte) error {
		return func(cmd []byte) error {
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			defer cancel()
			return op(ctx, cmd)
		}
	}
	switch sys {
	case "exdeadline":
		s.write = withDeadline(func(ctx context.Context, cmd []byte) error {
			_, err := s.leader.Write(ctx, cmd)
			return err
		})
	case "exclient":
		c, addr, stop := &exraft.Client{}, s.leader.Addr(), s.stop
		s.write = withDeadline(func(ctx context.Context, cmd []byte) error {
			_, err := c.Write(ctx, addr, cmd)
			return err
		})
		s.stop = func() { c.Close(); stop() }
	}
	s.read = nil
	return s, nil
}
