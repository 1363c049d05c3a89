package exraft

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
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

func BenchmarkWriteSequential(b *testing.B) {
	l := benchCluster(b, 3)[0]
	ctx := context.Background()
	cmd := make([]byte, 16)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := l.Write(ctx, cmd); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteParallel runs 64 concurrent writers.
func BenchmarkWriteParallel(b *testing.B) {
	l := benchCluster(b, 3)[0]
	benchParallel(b, func(ctx context.Context, cmd []byte) error {
		_, err := l.Write(ctx, cmd)
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

func benchParallel(b *testing.B, op func(context.Context, []byte) error) {
	const workers = 64
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ReportAllocs()
	b.ResetTimer()
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
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
