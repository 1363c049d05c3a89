package testkit

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft"
)

// transient reports errors after which an operation may be retried at the
// current leader: the server was not, or no longer, the leader.
func transient(err error) bool {
	return errors.Is(err, exraft.ErrNotLeader) || errors.Is(err, exraft.ErrLeadershipLost) ||
		errors.Is(err, context.DeadlineExceeded)
}

// AtLeader runs call with arg on whichever of servers leads, retrying while
// errors are transient (leadership moving), and returns its result; what
// names the call in failure messages.
func AtLeader(t testing.TB, servers []*exraft.Server, what, arg string,
	call func(*exraft.Server, context.Context, []byte) ([]byte, error)) []byte {
	t.Helper()
	var out []byte
	var last error
	Eventually(t, WaitLong, func() bool {
		for _, s := range servers {
			if s.Status().Role != exraft.Leader {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			res, err := call(s, ctx, []byte(arg))
			cancel()
			if err == nil {
				out = res
				return true
			}
			require.Truef(t, transient(err), "%s(%q) on %s: %v", what, arg, s.Name(), err)
			last = err
		}
		return false
	}, "%s %q to succeed (last error: %v)", what, arg, LastErr(&last))
	return out
}

// WriteAny writes cmd at the current leader among servers, retrying when
// leadership moves, as a client that follows redirects would. Only for
// idempotent commands: a retried write may apply twice.
func WriteAny(t testing.TB, servers []*exraft.Server, cmd string) []byte {
	t.Helper()
	return AtLeader(t, servers, "Write", cmd, (*exraft.Server).Write)
}

// ReadAny does a linearizable Read at the current leader among servers,
// retrying when leadership moves.
func ReadAny(t testing.TB, servers []*exraft.Server, q string) string {
	t.Helper()
	return string(AtLeader(t, servers, "Read", q, (*exraft.Server).Read))
}

// MustWrite writes cmd on s and fails the test on an error.
func MustWrite(t testing.TB, s *exraft.Server, cmd string) string {
	t.Helper()
	res, err := s.Write(Ctx(t, WaitShort), []byte(cmd))
	require.NoError(t, err, "%s.Write(%q)", s.Name(), cmd)
	return string(res)
}

// MustRead reads q on s and fails the test on an error.
func MustRead(t testing.TB, s *exraft.Server, q string) string {
	t.Helper()
	res, err := s.Read(Ctx(t, WaitShort), []byte(q))
	require.NoError(t, err, "%s.Read(%q)", s.Name(), q)
	return string(res)
}

// Dirty reads s's local state; an error reads as a value no test expects,
// so that a wait on a value simply goes on.
func Dirty(s *exraft.Server, q string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := s.ReadDirty(ctx, []byte(q))
	if err != nil {
		return "<error: " + err.Error() + ">"
	}
	return string(res)
}

// CommitWithin writes cmd at whichever of servers leads, retrying while
// leadership moves, for at most d, and returns the last error if no write
// committed: for tests where not committing is the finding, not a harness
// failure. Only for idempotent commands.
func CommitWithin(servers []*exraft.Server, cmd string, d time.Duration) error {
	deadline := time.Now().Add(d)
	last := errors.New("no server was leader")
	committed := PollUntil(d, func() bool {
		for _, s := range servers {
			if s.Status().Role != exraft.Leader {
				continue
			}
			ctx, cancel := context.WithDeadline(context.Background(), deadline)
			_, err := s.Write(ctx, []byte(cmd))
			cancel()
			if err == nil {
				return true
			}
			last = err
		}
		return false
	})
	if committed {
		return nil
	}
	return last
}

// AwaitAllHave waits until every server of servers applied k=v.
func AwaitAllHave(t testing.TB, servers []*exraft.Server, k, v string) {
	t.Helper()
	Eventually(t, WaitLong, func() bool {
		for _, s := range servers {
			if Dirty(s, "get "+k) != v {
				return false
			}
		}
		return true
	}, "every server of %v to apply %s=%s:%v", Names(servers), k, v, Statuses(servers))
}
