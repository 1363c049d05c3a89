package exraft

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// counterSM is the benchmarks' state machine: it counts commands and keeps
// the last one, so Apply costs next to nothing and the figures measure Raft.
type counterSM struct {
	n    uint64
	last []byte
}

func (c *counterSM) Apply(cmd []byte) []byte {
	c.n++
	c.last = cmd
	return nil
}

func (c *counterSM) Query([]byte) []byte {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], c.n)
	return b[:]
}

// benchCluster starts n servers on loopback and returns them with the leader
// first.
func benchCluster(b *testing.B, n int) []*Server {
	b.Helper()
	var lns []net.Listener
	var peers []Peer
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		lns = append(lns, ln)
		peers = append(peers, Peer{Name: fmt.Sprintf("b%d", i), Addr: ln.Addr().String()})
	}
	var servers []*Server
	for i := 0; i < n; i++ {
		s, err := StartServer(&counterSM{}, Config{Name: peers[i].Name, Listener: lns[i], InitialConfig: peers})
		if err != nil {
			b.Fatal(err)
		}
		servers = append(servers, s)
	}
	b.Cleanup(func() {
		for _, s := range servers {
			s.Stop()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := servers[0].AwaitLeader(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for i, s := range servers {
		if s.Name() == l.Name {
			servers[0], servers[i] = servers[i], servers[0]
		}
	}
	// The first write waits for the leader's no-op to commit.
	if _, err := servers[0].Write(ctx, make([]byte, 16)); err != nil {
		b.Fatal(err)
	}
	return servers
}

// Each benchmark below has a twin with "Deadline" in its name whose calls
// carry a fresh 5 s deadline, as users call, so that what a deadline costs
// is the difference between the two.

func BenchmarkWriteSequential(b *testing.B) {
	l := benchCluster(b, 3)[0]
	benchSequential(b, func(ctx context.Context, cmd []byte) error {
		_, err := l.Write(ctx, cmd)
		return err
	})
}

// BenchmarkWriteParallel runs 64 concurrent writers.
func BenchmarkWriteParallel(b *testing.B) {
	l := benchCluster(b, 3)[0]
	benchParallel(b, func(ctx context.Context, cmd []byte) error {
		_, err := l.Write(ctx, cmd)
		return err
	})
}

func BenchmarkReadSequential(b *testing.B) {
	l := benchCluster(b, 3)[0]
	benchSequential(b, func(ctx context.Context, q []byte) error {
		_, err := l.Read(ctx, q)
		return err
	})
}

// BenchmarkReadParallel runs 64 concurrent linearizable readers.
func BenchmarkReadParallel(b *testing.B) {
	l := benchCluster(b, 3)[0]
	benchParallel(b, func(ctx context.Context, q []byte) error {
		_, err := l.Read(ctx, q)
		return err
	})
}

// callTimeout is the deadline of every call in the benchmarks that compare
// remote calls with in-process ones: users call with one, and a deadline
// has costs of its own on both sides (a timer; the remaining time sent).
const callTimeout = 5 * time.Second

// withDeadline runs op with a fresh ctx of callTimeout, as a user would.
func withDeadline(op func(context.Context, []byte) error) func(context.Context, []byte) error {
	return func(ctx context.Context, cmd []byte) error {
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		return op(ctx, cmd)
	}
}

// The four below measure the same writes in process and through a Client
// by address (loopback TCP), each call with a deadline, for the ratio of
// the two (bench -remote prints it).

func BenchmarkWriteDeadlineSequential(b *testing.B) {
	l := benchCluster(b, 3)[0]
	benchSequential(b, withDeadline(func(ctx context.Context, cmd []byte) error {
		_, err := l.Write(ctx, cmd)
		return err
	}))
}

// BenchmarkWriteDeadlineParallel runs 64 concurrent writers.
func BenchmarkWriteDeadlineParallel(b *testing.B) {
	l := benchCluster(b, 3)[0]
	benchParallel(b, withDeadline(func(ctx context.Context, cmd []byte) error {
		_, err := l.Write(ctx, cmd)
		return err
	}))
}

func BenchmarkReadDeadlineSequential(b *testing.B) {
	l := benchCluster(b, 3)[0]
	benchSequential(b, withDeadline(func(ctx context.Context, q []byte) error {
		_, err := l.Read(ctx, q)
		return err
	}))
}

// BenchmarkReadDeadlineParallel runs 64 concurrent linearizable readers.
func BenchmarkReadDeadlineParallel(b *testing.B) {
	l := benchCluster(b, 3)[0]
	benchParallel(b, withDeadline(func(ctx context.Context, q []byte) error {
		_, err := l.Read(ctx, q)
		return err
	}))
}

// The Client's and the Session's benchmarks are named for the deadline
// their calls carry, as users call; their NoDeadline twins call without.

func BenchmarkClientWriteSequential(b *testing.B) {
	addr := benchCluster(b, 3)[0].Addr()
	c := &Client{}
	b.Cleanup(func() { c.Close() })
	benchSequential(b, withDeadline(func(ctx context.Context, cmd []byte) error {
		_, err := c.Write(ctx, addr, cmd)
		return err
	}))
}

// BenchmarkClientWrite runs 64 concurrent writers on one Client.
func BenchmarkClientWrite(b *testing.B) {
	addr := benchCluster(b, 3)[0].Addr()
	c := &Client{}
	b.Cleanup(func() { c.Close() })
	benchParallel(b, withDeadline(func(ctx context.Context, cmd []byte) error {
		_, err := c.Write(ctx, addr, cmd)
		return err
	}))
}

func BenchmarkClientWriteNoDeadlineSequential(b *testing.B) {
	addr := benchCluster(b, 3)[0].Addr()
	c := &Client{}
	b.Cleanup(func() { c.Close() })
	benchSequential(b, func(ctx context.Context, cmd []byte) error {
		_, err := c.Write(ctx, addr, cmd)
		return err
	})
}

// BenchmarkClientWriteNoDeadline runs 64 concurrent writers on one Client.
func BenchmarkClientWriteNoDeadline(b *testing.B) {
	addr := benchCluster(b, 3)[0].Addr()
	c := &Client{}
	b.Cleanup(func() { c.Close() })
	benchParallel(b, func(ctx context.Context, cmd []byte) error {
		_, err := c.Write(ctx, addr, cmd)
		return err
	})
}

// benchSequential runs op b.N times in turn, after one call that is not
// measured (it dials, for a Client).
func benchSequential(b *testing.B, op func(context.Context, []byte) error) {
	ctx := context.Background()
	cmd := make([]byte, 16)
	if err := op(ctx, cmd); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	for i := 0; i < b.N; i++ {
		if err := op(ctx, cmd); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
}

// processCPU is the processor time this process has used. Per operation,
// it is a figure that other work on a shared machine disturbs less than
// the time each one takes.
func processCPU() usage {
	var u usage
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		u.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	u.reads, u.writes = processIO()
	return u
}

// usage is what a benchmark reports per operation: processor time, and
// the read and write system calls (Linux's /proc/self/io), which tell how
// well frames travel together.
type usage struct {
	cpu           time.Duration
	reads, writes int64
}

// processIO returns the read and write system calls this process has made,
// or -1 where /proc/self/io is not to be had.
func processIO() (reads, writes int64) {
	reads, writes = -1, -1
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		n, err := strconv.ParseInt(v, 10, 64)
		switch {
		case err != nil:
		case k == "syscr":
			reads = n
		case k == "syscw":
			writes = n
		}
	}
	return
}

// reportCPU reports the processor time per operation since since, the
// servers' and the callers' together, and the system calls.
func reportCPU(b *testing.B, since usage) {
	now := processCPU()
	b.ReportMetric(float64(now.cpu-since.cpu)/float64(b.N), "cpu-ns/op")
	if since.writes >= 0 && now.writes >= 0 {
		b.ReportMetric(float64(now.reads-since.reads)/float64(b.N), "reads/op")
		b.ReportMetric(float64(now.writes-since.writes)/float64(b.N), "writes/op")
	}
}

func benchParallel(b *testing.B, op func(context.Context, []byte) error) {
	const workers = 64
	ctx := context.Background()
	if err := op(ctx, make([]byte, 16)); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := make([]byte, 16)
			for next.Add(1) <= int64(b.N) {
				if err := op(ctx, cmd); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	reportCPU(b, cpu)
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
