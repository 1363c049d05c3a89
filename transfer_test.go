package exraft_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft"
	"github.com/exraft/exraft/internal/testkit"
)

// TransferLeadership (transfer.go; the core's transfer.go): a leader hands
// over on purpose, to a voter it first catches up.

// TestTransferLeadershipToALaggingFollower: a follower that missed entries
// is caught up first, then takes over; TransferLeadership returns once it
// leads.
func TestTransferLeadershipToALaggingFollower(t *testing.T) {
	cn := testkit.NewNet()
	c := testkit.StartCluster(t, 3, testkit.Options{Net: cn})
	c.WarmUp(t)
	l := testkit.AwaitLeader(t, c.Live())
	f := testkit.Others(c.Live(), l)[0]
	cn.Cut(l.Name(), f.Name())
	for i := range 30 {
		testkit.WriteAny(t, c.Live(), fmt.Sprintf("set lag %d", i))
	}
	require.Less(t, f.Status().AppliedIndex, l.Status().CommitIndex, "setup: %s lags", f.Name())
	cn.HealAll()

	require.NoError(t, l.TransferLeadership(testkit.Ctx(t, testkit.WaitLong), f.Name()))
	assert.Equal(t, exraft.Leader, f.Status().Role, "the target leads once TransferLeadership returns")
	leader, ok := l.Leader()
	assert.True(t, ok)
	assert.Equal(t, f.Name(), leader.Name, "and the old leader follows it")
	testkit.WriteAny(t, c.Live(), "set after transfer")
	c.AwaitConverged(t, "after the transfer")
}

func TestTransferLeadershipErrors(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{})
	l := testkit.AwaitLeader(t, c.Live())
	f := testkit.Others(c.Live(), l)[0]
	ctx := testkit.Ctx(t, testkit.WaitLong)

	require.ErrorIs(t, l.TransferLeadership(ctx, "nobody"), exraft.ErrUnknownServer)
	require.NoError(t, l.TransferLeadership(ctx, l.Name()), "to itself: nothing to do")
	assert.Equal(t, exraft.Leader, l.Status().Role)

	_, err := f.AwaitLeader(ctx)
	require.NoError(t, err)
	err = f.TransferLeadership(ctx, f.Name())
	var redirect *exraft.RedirectError
	require.ErrorAs(t, err, &redirect, "on a follower: a redirect to the leader")
	assert.Equal(t, l.Name(), redirect.Leader.Name)

	// The same answers over the wire.
	client := &exraft.Client{}
	defer client.Close()
	require.ErrorIs(t, client.TransferLeadership(ctx, l.Addr(), "nobody"), exraft.ErrUnknownServer)
	require.ErrorIs(t, client.TransferLeadership(ctx, f.Addr(), l.Name()), exraft.ErrNotLeader)
	require.NoError(t, client.TransferLeadership(ctx, l.Addr(), f.Name()))
	st, err := client.GetStatus(ctx, f.Addr())
	require.NoError(t, err)
	assert.Equal(t, exraft.Leader, st.Role)
}

// TestTransferToAnUnreachableVoterNeverWedgesWrites: a transfer to a voter
// cut off from the leader cannot succeed; it ends with its ctx, saying what
// it waited on, and writes meanwhile either go through or fail at once with
// an error that says why, never waiting out their own deadline.
func TestTransferToAnUnreachableVoterNeverWedgesWrites(t *testing.T) {
	cn := testkit.NewNet()
	c := testkit.StartCluster(t, 3, testkit.Options{Net: cn})
	c.WarmUp(t)
	l := testkit.AwaitLeader(t, c.Live())
	f := testkit.Others(c.Live(), l)[0]
	cn.Isolate(f.Name())

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		done <- l.TransferLeadership(ctx, f.Name())
	}()
	var ok, refused int
	var refusal error
	for waiting := true; waiting; {
		select {
		case err := <-done:
			require.ErrorIs(t, err, context.DeadlineExceeded)
			assert.Contains(t, err.Error(), f.Name())
			assert.Contains(t, err.Error(), "reachable")
			waiting = false
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitShort)
		_, err := l.Write(ctx, []byte("set during transfer"))
		cancel()
		switch {
		case err == nil:
			ok++
		case errors.Is(err, exraft.ErrNoLeader):
			refused++
			refusal = err
		default:
			require.NoError(t, err, "a write during the transfer")
		}
	}
	t.Logf("%d writes went through and %d were refused during the transfer", ok, refused)
	require.Positive(t, refused, "no write arrived while the transfer held writes back")
	assert.True(t, strings.Contains(refusal.Error(), "handed over to "+f.Name()), "the refusal names the transfer: %v", refusal)
	assert.Positive(t, ok, "writes go through between attempts")
	assert.Equal(t, exraft.Leader, l.Status().Role, "the leader leads on")
}

// TestSessionWritesRideThroughATransfer: a Session's writes during a
// transfer wait for the new leader instead of failing.
func TestSessionWritesRideThroughATransfer(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{})
	l := testkit.AwaitLeader(t, c.Live())
	f := testkit.Others(c.Live(), l)[0]
	sess := (&exraft.Client{}).NewSession(addrsOf(c)...)
	ctx := testkit.Ctx(t, testkit.WaitLong)
	errc := make(chan error, 1)
	go func() {
		for i := range 200 {
			if _, err := sess.Write(ctx, fmt.Appendf(nil, "set ride %d", i)); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	require.NoError(t, l.TransferLeadership(ctx, f.Name()))
	require.NoError(t, <-errc)
	c.AwaitConverged(t, "after the session's writes")
	for i := range 200 {
		awaitAppliedOnceEverywhere(t, c, fmt.Sprintf("set ride %d", i))
	}
}
