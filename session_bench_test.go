package exraft

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Session benchmarks: as users call it, from other goroutines over
// loopback TCP, each call with a 5 s deadline. Compare with the in-process
// BenchmarkWrite* and the Client's figures.

func benchSession(b *testing.B) *Session {
	servers := benchCluster(b, 3)
	var addrs []string
	for _, s := range servers {
		addrs = append(addrs, s.Addr())
	}
	c := &Client{}
	b.Cleanup(func() { c.Close() })
	sess := c.NewSession(addrs...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := sess.Write(ctx, make([]byte, 16)); err != nil { // registers
		b.Fatal(err)
	}
	return sess
}

func BenchmarkSessionWriteSequential(b *testing.B) {
	sess := benchSession(b)
	cmd := make([]byte, 16)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := sess.Write(ctx, cmd)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
}

// BenchmarkSessionWriteParallel runs 64 goroutines on one Session.
func BenchmarkSessionWriteParallel(b *testing.B) {
	sess := benchSession(b)
	const workers = 64
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
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := sess.Write(ctx, cmd)
				cancel()
				if err != nil {
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
