package exraft_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/exraft/exraft"
	"github.com/exraft/exraft/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A Write or Read whose ctx ends first says what it waited on: a timeout
// alone does not tell a lost quorum from a slow state machine.

// TestWriteTimeoutNamesTheQuorumItWaitsFor: with both followers down, a
// leader that has not yet noticed (its election timeout is long) cannot
// commit; the write's error says so and names the servers it needs.
func TestWriteTimeoutNamesTheQuorumItWaitsFor(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{Configure: func(_ int, cfg *exraft.Config) {
		cfg.ElectionTimeoutMin, cfg.ElectionTimeoutMax = 2*time.Second, 3*time.Second
	}})
	leader := c.LeaderWithin(testkit.WaitLong)
	ctx := testkit.Ctx(t, testkit.WaitLong)
	_, err := leader.Write(ctx, []byte("set a 1"))
	require.NoError(t, err)
	var followers []string
	for _, name := range c.Names() {
		if name != leader.Name() {
			followers = append(followers, name)
			require.NoError(t, c.Stop(name))
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = leader.Write(wctx, []byte("set a 2"))
	require.True(t, errors.Is(err, context.DeadlineExceeded), "got %v", err)
	t.Log(err)
	assert.Contains(t, err.Error(), "committed, which needs enough of")
	for _, name := range followers {
		assert.Contains(t, err.Error(), name+" holds up to")
	}
}

// TestWriteAndReadTimeoutsNameASlowStateMachine: everything is committed,
// but Apply has not returned: the error says that the state machine is
// behind, here and through a Client, which adds that no reply came.
func TestWriteAndReadTimeoutsNameASlowStateMachine(t *testing.T) {
	_, s, _ := startBlocking(t, nil)
	before := s.Status().CommitIndex
	go s.Write(context.Background(), []byte("block a b")) // Apply waits for Release
	testkit.Eventually(t, testkit.WaitLong, func() bool { return s.Status().CommitIndex > before }, "the blocking write commits")

	cl := &exraft.Client{}
	defer cl.Close()
	// A write is known to wait once its entry commits, and is cancelled
	// then; a read leaves no trace, and gets a deadline instead.
	calls := []struct {
		name string
		call func(context.Context) error
		says string
	}{
		{"write", func(ctx context.Context) error { _, err := s.Write(ctx, []byte("set x y")); return err }, "the state machine had applied up to"},
		{"Client write", func(ctx context.Context) error { _, err := cl.Write(ctx, s.Addr(), []byte("set x z")); return err }, "with no reply"},
		{"read", func(ctx context.Context) error { _, err := s.Read(ctx, []byte("get x")); return err }, "the state machine had applied up to"},
		{"Client read", func(ctx context.Context) error { _, err := cl.Read(ctx, s.Addr(), []byte("get x")); return err }, "the state machine had applied up to"},
	}
	for _, tc := range calls {
		t.Run(tc.name, func(t *testing.T) {
			base := s.Status().CommitIndex
			isWrite := tc.name == "write" || tc.name == "Client write"
			ctx, cancel := context.WithCancel(context.Background())
			if !isWrite {
				ctx, cancel = context.WithTimeout(context.Background(), time.Second)
			}
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- tc.call(ctx) }()
			want := context.DeadlineExceeded
			if isWrite {
				testkit.Eventually(t, testkit.WaitLong, func() bool { return s.Status().CommitIndex > base }, "the write commits, and waits on the state machine")
				cancel()
				want = context.Canceled
			}
			var err error
			select {
			case err = <-done:
			case <-time.After(testkit.WaitLong):
				require.FailNow(t, "the call did not return when its ctx ended")
			}
			require.True(t, errors.Is(err, want), "got %v", err)
			t.Log(err)
			assert.Contains(t, err.Error(), tc.says)
		})
	}
}
