package testkit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Seed returns the seed of a fault test's random choices and logs it. Set
// EXRAFT_CHAOS_SEED to replay a failed run's choices (timing still varies).
func Seed(t testing.TB) uint64 {
	t.Helper()
	if s := os.Getenv("EXRAFT_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "EXRAFT_CHAOS_SEED=%q", s)
		t.Logf("seed %d (from EXRAFT_CHAOS_SEED)", v)
		return v
	}
	v := uint64(time.Now().UnixNano())
	t.Logf("seed %d (set EXRAFT_CHAOS_SEED=%d to replay the random choices)", v, v)
	return v
}

// Pause sleeps for a random time in [lo, hi) milliseconds, or until ctx
// ends: the pacing of a nemesis, not a wait for a condition.
func Pause(ctx context.Context, rng *rand.Rand, lo, hi int) {
	t := time.NewTimer(time.Duration(lo+rng.IntN(hi-lo)) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// Schedule records what a nemesis did, with times, and prints it if the
// test fails (or always, with EXRAFT_CHAOS_LOG set): the faults are half of
// what it takes to understand a failure.
type Schedule struct {
	start time.Time
	mu    sync.Mutex
	lines []string
}

// NewSchedule starts an empty schedule for t.
func NewSchedule(t testing.TB) *Schedule {
	s := &Schedule{start: time.Now()}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("EXRAFT_CHAOS_LOG") != "" {
			s.mu.Lock()
			defer s.mu.Unlock()
			t.Logf("nemesis schedule:\n%s", strings.Join(s.lines, "\n"))
		}
	})
	return s
}

// Note records one action.
func (s *Schedule) Note(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, fmt.Sprintf("%8.3fs  ", time.Since(s.start).Seconds())+fmt.Sprintf(format, args...))
}

// Len is the number of actions recorded.
func (s *Schedule) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.lines)
}
