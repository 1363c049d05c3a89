package testkit

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// PollUntil polls cond every PollInterval until it holds, and reports false
// if timeout passes first. It is exraft.PollUntil again: that one lives in a
// _test.go file of package exraft, out of this package's reach.
func PollUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// Eventually polls cond until it holds, and fails the test with the message
// if timeout passes first. Unlike require.Eventually it calls cond on the
// test's goroutine, so cond may fail the test itself, and a message built
// from Lazy values shows the state at the moment of the failure.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	if !PollUntil(timeout, cond) {
		require.FailNowf(t, fmt.Sprintf("condition not met within %v", timeout), format, args...)
	}
}

// Ctx returns a context that ends after d, and is cancelled when the test
// ends so that no timer outlives it.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// AwaitGoroutines waits until no more than baseline goroutines run, and
// fails with the stack of every goroutine otherwise: the stacks name
// whatever was left behind.
func AwaitGoroutines(t testing.TB, baseline int, timeout time.Duration) {
	t.Helper()
	var n int
	if PollUntil(timeout, func() bool { n = runtime.NumGoroutine(); return n <= baseline }) {
		return
	}
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	require.FailNowf(t, "goroutines left behind", "%d running, baseline %d; stacks:\n%s", n, baseline, buf)
}

// Lazy prints what its function returns at the time it is printed, so that
// a failure message carries the state at the failure, not at the call.
type Lazy func() string

func (f Lazy) String() string { return f() }

// LastErr prints the error *p holds when it is printed; for messages of
// waits that retry a call.
func LastErr(p *error) Lazy {
	return func() string {
		if *p == nil {
			return "none"
		}
		return (*p).Error()
	}
}
