package exraft

import (
	"context"
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
	benchSequential(b, withDeadline(func(ctx context.Context, cmd []byte) error {
		_, err := sess.Write(ctx, cmd)
		return err
	}))
}

// BenchmarkSessionWriteParallel runs 64 goroutines on one Session.
func BenchmarkSessionWriteParallel(b *testing.B) {
	sess := benchSession(b)
	benchParallel(b, withDeadline(func(ctx context.Context, cmd []byte) error {
		_, err := sess.Write(ctx, cmd)
		return err
	}))
}

func BenchmarkSessionWriteNoDeadlineSequential(b *testing.B) {
	sess := benchSession(b)
	benchSequential(b, func(ctx context.Context, cmd []byte) error {
		_, err := sess.Write(ctx, cmd)
		return err
	})
}

// BenchmarkSessionWriteNoDeadlineParallel runs 64 goroutines on one Session.
func BenchmarkSessionWriteNoDeadlineParallel(b *testing.B) {
	sess := benchSession(b)
	benchParallel(b, func(ctx context.Context, cmd []byte) error {
		_, err := sess.Write(ctx, cmd)
		return err
	})
}
