package testkit

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft"
)

// Listen opens a listener on a free loopback port, so that a server's
// address is known before it starts (and can go in others' InitialConfig).
func Listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err, "listen")
	return l
}

// DeadAddr returns a loopback address on which nothing listens.
func DeadAddr(t testing.TB) string {
	t.Helper()
	l := Listen(t)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// Start starts a server and stops it when the test ends.
func Start(t testing.TB, sm exraft.StateMachine, cfg exraft.Config) *exraft.Server {
	t.Helper()
	s, err := exraft.StartServer(sm, cfg)
	require.NoError(t, err, "StartServer(%s)", cfg.Name)
	require.NotNil(t, s, "StartServer(%s) returned a nil server and no error", cfg.Name)
	t.Cleanup(func() { _ = exraft.StopServer(s) })
	return s
}

// StartAlone starts a server that waits for a leader to add it: no
// InitialConfig and MinMajority 2 (docs/design.md §3), on a listener of its
// own. configure, if not nil, changes its Config last.
func StartAlone(t testing.TB, name string, configure func(*exraft.Config)) (*exraft.Server, *KV) {
	t.Helper()
	kv := NewKV()
	return StartAloneWith(t, name, kv, configure), kv
}

// StartAloneWith is StartAlone with a state machine of the caller's.
func StartAloneWith(t testing.TB, name string, sm exraft.StateMachine, configure func(*exraft.Config)) *exraft.Server {
	t.Helper()
	cfg := FastConfig(name)
	cfg.Listener = Listen(t)
	cfg.MinMajority = 2
	if configure != nil {
		configure(&cfg)
	}
	return Start(t, sm, cfg)
}

// StopWithin stops s and fails the test if StopServer has not returned
// within d; unstick, if not nil, then frees what Stop waits on, so that the
// failure leaves nothing stuck for the rest of the run.
func StopWithin(t testing.TB, s *exraft.Server, d time.Duration, while string, unstick func()) {
	t.Helper()
	stopped := make(chan error, 1)
	go func() { stopped <- exraft.StopServer(s) }()
	select {
	case err := <-stopped:
		require.NoError(t, err, "StopServer")
	case <-time.After(d):
		if unstick != nil {
			unstick()
		}
		require.FailNowf(t, "StopServer did not return", "still running after %v, %s", d, while)
	}
}
