package exraft_test

// What a newcomer trips on first: a name given twice, a wrong address, a
// limit named wrong, a wait that ends without saying why, a stopped server
// that looks alive. Each test here calls the public API the way a user does
// and checks what the user is told.

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft"
	"github.com/exraft/exraft/internal/testkit"
)

// TestAddServerRefusesATakenName: AddServer of a member's name at another
// address is refused and changes nothing, whether the name is a follower's
// or the leader's own; the error says how to move a server, and the member
// keeps voting and applying.
func TestAddServerRefusesATakenName(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{})
	leader := testkit.AwaitLeader(t, c.Servers())
	follower := testkit.Others(c.Servers(), leader)[0]
	before := testkit.MemberNames(leader.Status().Members)
	elsewhere := testkit.DeadAddr(t)

	for _, name := range []string{follower.Name(), leader.Name()} {
		p := exraft.Peer{Name: name, Addr: elsewhere}
		err := leader.AddServer(testkit.Ctx(t, testkit.WaitShort), p)
		require.ErrorIs(t, err, exraft.ErrNameTaken, "AddServer(%v) on the leader", p)
		assert.Contains(t, err.Error(), "RemoveServer", "the error should say how to move a server")
		assert.Contains(t, err.Error(), elsewhere)

		err = exraft.AddServer(testkit.Ctx(t, testkit.WaitShort), leader.Addr(), p)
		require.ErrorIs(t, err, exraft.ErrNameTaken, "AddServer(%v) through a Client", p)
		assert.Equal(t, 1, strings.Count(err.Error(), "exraft:"), "one prefix in %q", err)
	}

	st := leader.Status()
	assert.Equal(t, before, testkit.MemberNames(st.Members))
	for _, m := range st.Members {
		assert.NotEqual(t, elsewhere, m.Addr, "a member was moved to the other address")
	}
	assert.Empty(t, st.Learners, "nothing should be caught up at the other address")
	testkit.MustWrite(t, leader, "set taken still-applied")
	testkit.Eventually(t, testkit.WaitShort, func() bool { return c.KV(follower.Name()).Get("taken") == "still-applied" },
		"%s, whose name was asked for, to keep applying", follower.Name())
	assert.Equal(t, exraft.Leader, leader.Status().Role, "the leader should still lead")
}

// TestAddServerMovesAServerByRemoveThenAdd: the way AddServer's error
// points to, a removal then an addition, moves a name to a new server.
func TestAddServerMovesAServerByRemoveThenAdd(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{})
	leader := testkit.AwaitLeader(t, c.Servers())
	old := testkit.Others(c.Servers(), leader)[0]
	require.NoError(t, leader.RemoveServer(testkit.Ctx(t, testkit.WaitLong), old.Name()))
	require.NoError(t, c.Stop(old.Name()))

	moved, kv := testkit.StartAlone(t, old.Name(), nil)
	require.NoError(t, leader.AddServer(testkit.Ctx(t, testkit.WaitLong), moved.Peer()))
	assert.Contains(t, leader.Status().Members, moved.Peer())
	testkit.MustWrite(t, leader, "set moved yes")
	testkit.Eventually(t, testkit.WaitShort, func() bool { return kv.Get("moved") == "yes" }, "the moved server to apply")
}

// TestNonExraftPeerIsNamedAsSuch: an address where something else answers
// (here an HTTP server) is reported as not speaking exraft, with what came
// back, and not as a refusal by an exraft server.
func TestNonExraftPeerIsNamedAsSuch(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(web.Close)
	addr := strings.TrimPrefix(web.URL, "http://")

	var client exraft.Client
	t.Cleanup(func() { client.Close() })
	_, err := client.Write(testkit.Ctx(t, testkit.WaitShort), addr, []byte("set a b"))
	require.ErrorIs(t, err, exraft.ErrNotExraft)
	assert.NotErrorIs(t, err, exraft.ErrUnauthorized)
	assert.Contains(t, err.Error(), addr)
	assert.Contains(t, err.Error(), "HTTP/1.1 400", "the error should show what came back")
	assert.NotContains(t, err.Error(), "\r", "the answer should be quoted, printable")

	// A leader asked to add it says the same when the wait ends.
	c := testkit.StartCluster(t, 1, testkit.Options{})
	leader := testkit.AwaitLeader(t, c.Servers())
	err = leader.AddServer(testkit.Ctx(t, 2*time.Second), exraft.Peer{Name: "web", Addr: addr})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "does not speak exraft")
}

// TestSizeLimitsNamedAlike: a command or query too large is refused with
// ErrTooLarge naming the limit that applies, the same in process and over
// the wire, and the texts name no internal RPC method.
func TestSizeLimitsNamedAlike(t *testing.T) {
	c := testkit.StartCluster(t, 1, testkit.Options{})
	leader := testkit.AwaitLeader(t, c.Servers())
	ctx := testkit.Ctx(t, testkit.WaitShort)
	var client exraft.Client
	t.Cleanup(func() { client.Close() })

	type call struct {
		name string
		do   func() error
		want string
	}
	write := func(n int) func(func(context.Context, []byte) ([]byte, error)) func() error {
		return func(f func(context.Context, []byte) ([]byte, error)) func() error {
			return func() error { _, err := f(ctx, make([]byte, n)); return err }
		}
	}
	remoteWrite := func(ctx context.Context, b []byte) ([]byte, error) { return client.Write(ctx, leader.Addr(), b) }
	remoteRead := func(ctx context.Context, b []byte) ([]byte, error) { return client.Read(ctx, leader.Addr(), b) }
	for _, tc := range []call{
		{"2 MB Write in process", write(2 << 20)(leader.Write), "MaxCommandSize"},
		{"2 MB Write remote", write(2 << 20)(remoteWrite), "MaxCommandSize"},
		{"10 MB Write in process", write(10 << 20)(leader.Write), "MaxCommandSize"},
		{"10 MB Write remote", write(10 << 20)(remoteWrite), "MaxCommandSize"},
		{"10 MB Read query in process", write(10 << 20)(leader.Read), "MaxFrameSize"},
		{"10 MB Read query remote", write(10 << 20)(remoteRead), "MaxFrameSize"},
	} {
		err := tc.do()
		require.ErrorIs(t, err, exraft.ErrTooLarge, tc.name)
		assert.Contains(t, err.Error(), tc.want, tc.name)
		assert.NotContains(t, err.Error(), "Exraft.", tc.name)
		assert.Equal(t, 1, strings.Count(err.Error(), "exraft:"), "%s: one prefix in %q", tc.name, err)
	}

	// An answer too large for a frame fails alike too.
	big := testkit.Start(t, &bigAnswerKV{KV: testkit.NewKV(), size: 9 << 20}, exraft.Config{
		Name: "big", InitialConfig: []exraft.Peer{{Name: "big"}}})
	_, err := big.AwaitLeader(ctx)
	require.NoError(t, err)
	_, local := big.Read(ctx, []byte("q"))
	_, remote := client.Read(ctx, big.Addr(), []byte("q"))
	_, dirty := big.ReadDirty(ctx, []byte("q"))
	for _, err := range []error{local, remote, dirty} {
		require.ErrorIs(t, err, exraft.ErrTooLarge)
		assert.Contains(t, err.Error(), "MaxFrameSize")
	}
	assert.Equal(t, local.Error(), remote.Error(), "the same text in process and over the wire")
}

// bigAnswerKV answers every query with size bytes.
type bigAnswerKV struct {
	*testkit.KV
	size int
}

func (m *bigAnswerKV) Query([]byte) []byte { return bytes.Repeat([]byte("x"), m.size) }

// TestAddServerStallSaysWhy: an AddServer whose ctx ends while the leader
// cannot connect to the new server returns an error that matches the ctx's
// and names the cause last seen: nothing listening, or a refusal and its
// reason. Through a Client the caller is told the same.
func TestAddServerStallSaysWhy(t *testing.T) {
	c := testkit.StartCluster(t, 1, testkit.Options{})
	leader := testkit.AwaitLeader(t, c.Servers())

	dead := exraft.Peer{Name: "dead", Addr: testkit.DeadAddr(t)}
	err := leader.AddServer(testkit.Ctx(t, 2*time.Second), dead)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "connection refused")
	assert.Contains(t, err.Error(), dead.Addr)

	err = exraft.AddServer(testkit.Ctx(t, 2*time.Second), leader.Addr(), dead)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "connection refused", "a Client's caller should be told the cause too")

	otherCfg := testkit.FastConfig("stranger")
	otherCfg.ClusterID = "another-cluster"
	otherCfg.MinMajority = 2
	other := testkit.Start(t, testkit.NewKV(), otherCfg)
	err = leader.AddServer(testkit.Ctx(t, 3*time.Second), other.Peer())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "ClusterID")
	assert.Contains(t, err.Error(), "refused")
}

// TestBootstrapUnreachablePeerLoggedAtInfo: a server bootstrapping with a
// peer it cannot connect to says so at INFO, once however many times it
// retries, and says so again when the peer is reached.
func TestBootstrapUnreachablePeerLoggedAtInfo(t *testing.T) {
	var logs exraft.TestLog
	var blocked atomic.Bool
	var dials atomic.Int32
	blocked.Store(true)
	peerLn := testkit.Listen(t)
	selfLn := testkit.Listen(t)
	peers := []exraft.Peer{{Name: "a", Addr: selfLn.Addr().String()}, {Name: "b", Addr: peerLn.Addr().String()}}

	cfg := testkit.FastConfig("a")
	cfg.Listener = selfLn
	cfg.InitialConfig = peers
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
		if blocked.Load() && addr == peers[1].Addr {
			dials.Add(1)
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	a := testkit.Start(t, testkit.NewKV(), cfg)

	testkit.Eventually(t, testkit.WaitShort, func() bool { return dials.Load() >= 5 }, "a to retry b several times")
	assert.Equal(t, 1, logs.Count("level=INFO", "cannot reach a peer", peers[1].Addr),
		"one INFO line for the unreachable peer; log:\n%s", logs.Tail(20))

	bcfg := testkit.FastConfig("b")
	bcfg.Listener = peerLn
	bcfg.InitialConfig = peers
	// b waits long before it campaigns, so that a campaigns first and has
	// to connect to b: a follower's answers ride on b's own connection, and
	// a would never dial b if b won the election.
	bcfg.ElectionTimeoutMin, bcfg.ElectionTimeoutMax = time.Minute, 2*time.Minute
	b := testkit.Start(t, testkit.NewKV(), bcfg)
	blocked.Store(false)
	testkit.AwaitLeader(t, []*exraft.Server{a, b})
	testkit.Eventually(t, testkit.WaitShort, func() bool { return logs.Has("level=INFO", "reached a peer again", peers[1].Addr) },
		"a to log that it reached b; log:\n%s", logs.Tail(20))
	assert.Equal(t, 1, logs.Count("cannot reach a peer", peers[1].Addr))
}

// TestStatusAfterStop: a stopped server's Status says so, with a Role users
// can test, and names no leader.
func TestStatusAfterStop(t *testing.T) {
	c := testkit.StartCluster(t, 1, testkit.Options{})
	s := testkit.AwaitLeader(t, c.Servers())
	require.NoError(t, exraft.StopServer(s))
	st := s.Status()
	assert.Equal(t, exraft.Stopped, st.Role)
	assert.Equal(t, "stopped", st.Role.String())
	assert.Equal(t, exraft.Peer{}, st.Leader)
	_, known := s.Leader()
	assert.False(t, known, "Leader() after Stop")
	assert.Equal(t, s.Name(), st.Name)
}

// TestRemoteConnectionErrorsNameNoRPCMethod: a call to a server that went
// away is reported with the call's public name, once prefixed.
func TestRemoteConnectionErrorsNameNoRPCMethod(t *testing.T) {
	_, err := exraft.Write(testkit.Ctx(t, testkit.WaitShort), testkit.DeadAddr(t), []byte("set a b"))
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "Exraft.")
	assert.Equal(t, 1, strings.Count(err.Error(), "exraft:"), "one prefix in %q", err)
	assert.True(t, errors.Is(err, syscall.ECONNREFUSED), "the dial error is kept for errors.Is: %v", err)
}

// TestBootstrapNonExraftPeerLoggedAsWarning: a server whose peer's address
// answers, but not as exraft does (here an HTTP server), says so in a
// warning: retrying will not mend it, an operator must. Logged at INFO as an
// unreachable peer, it would read as a network fault that heals itself.
func TestBootstrapNonExraftPeerLoggedAsWarning(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(web.Close)
	addr := strings.TrimPrefix(web.URL, "http://")
	var logs exraft.TestLog
	cfg := testkit.FastConfig("a")
	cfg.Listener = testkit.Listen(t)
	cfg.InitialConfig = []exraft.Peer{{Name: "a"}, {Name: "web", Addr: addr}}
	cfg.Logger = logs.Logger()
	testkit.Start(t, testkit.NewKV(), cfg)
	testkit.Eventually(t, testkit.WaitLong, func() bool {
		return logs.Has("level=WARN", "a peer refused this server's connection", addr, "does not speak exraft")
	}, "a warns that the peer is not an exraft server; log:\n%s", testkit.Lazy(func() string { return logs.Tail(20) }))
	assert.Zero(t, logs.Count("cannot reach a peer", addr), "log:\n%s", logs.Tail(20))
}
