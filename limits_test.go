package exraft_test

// The limits and timeouts of "Running a cluster across machines safely" in
// the README: command and frame sizes, connection and pending-call limits,
// handshake budgets and I/O timeouts, and what each logs.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft"
	"github.com/exraft/exraft/internal/testkit"
)

// ---------------------------------------------------------------------------
// Limits

// TestMaxCommandSize: a command above MaxCommandSize fails with ErrTooLarge,
// in process and by address, and appends nothing; one of exactly the limit
// commits, and so do later writes.
func TestMaxCommandSize(t *testing.T) {
	const limit = 1000
	c := testkit.StartCluster(t, 3, testkit.Options{Configure: func(i int, cfg *exraft.Config) {
		cfg.MaxCommandSize = limit
	}})
	testkit.LeaderVia(t, c.Servers()[0], c.Servers())
	testkit.WriteAny(t, c.Servers(), "set warm up")
	testkit.AwaitAllHave(t, c.Servers(), "warm", "up")
	leader := testkit.AwaitLeader(t, c.Servers())
	testkit.Eventually(t, testkit.WaitShort, func() bool {
		st := leader.Status()
		return st.AppliedIndex == st.LastIndex
	}, "the leader to apply its whole log:%s", testkit.Statuses{leader})

	big := "set big " + strings.Repeat("x", limit+1-len("set big "))
	require.Len(t, big, limit+1, "test bug")
	cl := &exraft.Client{}
	defer cl.Close()
	before := leader.Status()
	_, err := leader.Write(testkit.Ctx(t, testkit.WaitShort), []byte(big))
	require.ErrorIsf(t, err, exraft.ErrTooLarge, "Server.Write of %d bytes with MaxCommandSize %d: got %v, want ErrTooLarge", len(big), limit, err)
	assert.Contains(t, err.Error(), "MaxCommandSize", "Server.Write of a command too large: the error does not name the limit")
	_, err = cl.Write(testkit.Ctx(t, testkit.WaitShort), leader.Addr(), []byte(big))
	require.ErrorIsf(t, err, exraft.ErrTooLarge, "Client.Write of %d bytes with MaxCommandSize %d: got %v (%T), want ErrTooLarge", len(big), limit, err, err)
	after := leader.Status()
	if after.Term == before.Term {
		require.Equalf(t, before.LastIndex, after.LastIndex, "the leader's LastIndex moved in term %d: a command too large was appended", after.Term)
	}
	if after.Term != before.Term {
		t.Logf("the term changed (%d -> %d): LastIndex is not compared, the histories are", before.Term, after.Term)
	}

	// Exactly the limit is accepted, and the cluster goes on committing.
	exact := "set exact " + strings.Repeat("y", limit-len("set exact "))
	testkit.WriteAny(t, c.Servers(), exact)
	testkit.WriteAny(t, c.Servers(), "set after big")
	testkit.AwaitAllHave(t, c.Servers(), "after", "big")
	testkit.AwaitAllHave(t, c.Servers(), "exact", strings.Repeat("y", limit-len("set exact ")))
	for _, s := range c.Servers() {
		for _, cmd := range c.KV(s.Name()).History() {
			require.Falsef(t, cmd == big, "%s applied the command that was too large", s.Name())
		}
	}

	// A call that does not fit the Client's own frame fails the same way,
	// and the Client remains usable.
	small := &exraft.Client{MaxFrameSize: 4096}
	defer small.Close()
	huge := "set huge " + strings.Repeat("z", 8192)
	_, err = small.Write(testkit.Ctx(t, testkit.WaitShort), leader.Addr(), []byte(huge))
	require.ErrorIsf(t, err, exraft.ErrTooLarge, "Write of %d bytes through a Client with MaxFrameSize 4096: got %v, want ErrTooLarge", len(huge), err)
	require.Equal(t, "ok", clientWrite(t, small, c.Servers(), "set small ok"), "Write through the small Client after ErrTooLarge")
}

// twoClientsAndNoMore starts a one-server cluster whose limit (set by limit)
// admits two connections, and checks that two Clients get in; a third is
// refused promptly (refused checks its error further); the two keep
// working; the server logs each of logged; and once the first Client
// closes, the third gets in. It returns the server and the three Clients.
func twoClientsAndNoMore(t *testing.T, limit func(*exraft.Config), logged []string, refused func(who string, err error)) (*exraft.Server, []*exraft.Client) {
	t.Helper()
	slg := &exraft.TestLog{}
	c := testkit.StartCluster(t, 1, testkit.Options{Configure: func(i int, cfg *exraft.Config) {
		limit(cfg)
		cfg.Logger = slg.Logger()
	}})
	s := testkit.AwaitLeader(t, c.Servers())
	status := func(cl *exraft.Client) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := cl.GetStatus(ctx, s.Addr())
		return err
	}
	cls := []*exraft.Client{{}, {}, {}}
	for _, cl := range cls {
		t.Cleanup(func() { cl.Close() })
	}
	for i, cl := range cls[:2] {
		require.NoError(t, status(cl), "client %d of 2", i+1)
	}
	refused("a third Client", requireRefused(t, "a third Client", func(ctx context.Context) error {
		_, err := cls[2].GetStatus(ctx, s.Addr())
		return err
	}))
	for i, cl := range cls[:2] {
		_, err := cl.Write(testkit.Ctx(t, testkit.WaitShort), s.Addr(), []byte(fmt.Sprintf("set c%d yes", i+1)))
		require.NoError(t, err, "client %d after the refusal", i+1)
	}
	testkit.Eventually(t, testkit.WaitShort, func() bool { return slg.Has(logged...) },
		"the server to log the refusal (%q); its log:\n%s", logged, slg)
	cls[0].Close()
	var last error
	testkit.Eventually(t, testkit.WaitShort, func() bool {
		last = status(cls[2])
		return last == nil
	}, "a third Client to get in once the first closed (last error: %v)", testkit.LastErr(&last))
	return s, cls
}

// TestMaxConnsPerHost: past MaxConnsPerHost connections from one address a
// new one is refused with a reason; when one closes there is room again.
func TestMaxConnsPerHost(t *testing.T) {
	refused := func(who string, err error) {
		t.Helper()
		require.ErrorIs(t, err, exraft.ErrUnauthorized, "%s past MaxConnsPerHost", who)
		require.Contains(t, err.Error(), "MaxConnsPerHost", "%s past MaxConnsPerHost: the error does not name the limit", who)
	}
	s, cls := twoClientsAndNoMore(t, func(cfg *exraft.Config) { cfg.MaxConnsPerHost = 2 },
		[]string{"refused a connection", "MaxConnsPerHost"}, refused)
	// The second and third Clients hold the two places now.
	refused("the first Client, reconnecting", requireRefused(t, "the first Client, reconnecting", func(ctx context.Context) error {
		_, err := cls[0].GetStatus(ctx, s.Addr())
		return err
	}))
	require.Equal(t, "yes", testkit.Dirty(s, "get c1"), "c1")
}

// TestMaxConns: past MaxConns connections a new one is closed at once; when
// one closes there is room again.
func TestMaxConns(t *testing.T) {
	twoClientsAndNoMore(t, func(cfg *exraft.Config) { cfg.MaxConns = 2 },
		[]string{"MaxConns reached"}, func(string, error) {})
}

// TestBadInputsEachLogged: different bad inputs from one host are each
// logged, while the same refusal repeated (a client redialing with the wrong
// ClusterID) is logged once, not once a connection.
func TestBadInputsEachLogged(t *testing.T) {
	slg := &exraft.TestLog{}
	c := testkit.StartCluster(t, 1, testkit.Options{Configure: func(i int, cfg *exraft.Config) {
		cfg.ClusterID = "here"
		cfg.Logger = slg.Logger()
	}})
	s := testkit.AwaitLeader(t, c.Servers())
	openings := []string{"GET / HTTP/1.1\r\n\r\n", "\x00\x01\x02\x03\x04\x05\x06\x07", "SSH-2.0-OpenSSH_9.6\r\n"}
	for _, in := range openings {
		conn, err := net.Dial("tcp", s.Addr())
		require.NoError(t, err, "dial")
		conn.Write([]byte(in))
		conn.SetReadDeadline(time.Now().Add(testkit.WaitShort))
		io.Copy(io.Discard, conn) // until the server closes it
		conn.Close()
	}
	testkit.Eventually(t, testkit.WaitShort, func() bool { return strings.Count(slg.String(), "not an exraft client or peer") == len(openings) },
		"the server to log each of %d bad openings; its log:\n%s", len(openings), slg)
	elsewhere := &exraft.Client{ClusterID: "elsewhere"}
	defer elsewhere.Close()
	for i := 0; i < 5; i++ {
		requireRefused(t, "a Client of another cluster", func(ctx context.Context) error {
			_, err := elsewhere.GetStatus(ctx, s.Addr())
			return err
		})
	}
	require.Equalf(t, 1, strings.Count(slg.String(), `differs from this server's \"here\"`),
		"five refusals of the same ClusterID: times logged; the log:\n%s", slg)
}

// TestBadPeersFailAtOnce: AddServer of a Peer that could never be reached
// fails at once with an error that names the problem, in process and by
// address, instead of waiting for the caller's deadline; nothing changes.
func TestBadPeersFailAtOnce(t *testing.T) {
	c := testkit.StartCluster(t, 1, testkit.Options{})
	s := testkit.AwaitLeader(t, c.Servers())
	cl := &exraft.Client{}
	defer cl.Close()
	for _, p := range []exraft.Peer{
		{Name: "", Addr: "127.0.0.1:1"},
		{Name: "x", Addr: ""},
		{Name: "x", Addr: "no-port-here"},
	} {
		for _, call := range []struct {
			how string
			add func(ctx context.Context) error
		}{
			{"Server.AddServer", func(ctx context.Context) error { return s.AddServer(ctx, p) }},
			{"Client.AddServer", func(ctx context.Context) error { return cl.AddServer(ctx, s.Addr(), p) }},
		} {
			err := requireRefused(t, fmt.Sprintf("%s(%+v)", call.how, p), call.add)
			require.Contains(t, err.Error(), "AddServer", "%s(%+v): want an error naming AddServer", call.how, p)
		}
	}
	require.Len(t, s.Status().Members, 1, "members after bad AddServer calls")
}

// TestWriteKeepsNoCallerBuffer: a caller may reuse its command buffer once
// Write returns. The leader's log must hold its own copy: a server added
// later is caught up from that log and must apply what was written.
func TestWriteKeepsNoCallerBuffer(t *testing.T) {
	c := testkit.StartCluster(t, 1, testkit.Options{})
	l := testkit.AwaitLeader(t, c.Servers())
	buf := []byte("set k v1")
	_, err := l.Write(testkit.Ctx(t, testkit.WaitShort), buf)
	require.NoError(t, err, "Write")
	copy(buf, "set k XX") // the caller's buffer, reused
	joiner := startJoiner(t, "late", nil)
	require.NoError(t, l.AddServer(testkit.Ctx(t, testkit.WaitLong), joiner.Peer()), "AddServer")
	testkit.Eventually(t, testkit.WaitShort, func() bool { return testkit.Dirty(joiner, "get k") != "" },
		"the new server to apply k")
	require.Equal(t, "v1", testkit.Dirty(joiner, "get k"), "the new server's k: the leader's log kept the caller's buffer")
}

// TestHandshakeBudget: strangers who open connections and stall in the
// handshake take at most their own budget (64 with MaxConns 512), not
// every slot: past it, new connections are closed at once, while a Client
// already connected keeps working, and once the strangers go, new ones get
// in again.
func TestHandshakeBudget(t *testing.T) {
	slg := &exraft.TestLog{}
	c := testkit.StartCluster(t, 1, testkit.Options{Configure: func(i int, cfg *exraft.Config) {
		cfg.MaxConns = 512 // a budget of max(64, 512/8)
		cfg.Logger = slg.Logger()
	}})
	s := testkit.AwaitLeader(t, c.Servers())
	before := &exraft.Client{}
	defer before.Close()
	_, err := before.GetStatus(testkit.Ctx(t, testkit.WaitShort), s.Addr())
	require.NoError(t, err, "a Client before the strangers")
	var stalled []net.Conn
	defer func() {
		for _, conn := range stalled {
			conn.Close()
		}
	}()
	// Strangers that say nothing, until the server starts turning new
	// connections away.
	refused := false
	for i := 0; i < 200 && !refused; i++ {
		conn, err := net.Dial("tcp", s.Addr())
		require.NoError(t, err, "dial %d", i)
		stalled = append(stalled, conn)
		refused = slg.Has("too many handshakes")
	}
	if !refused {
		testkit.Eventually(t, testkit.WaitShort, func() bool { return slg.Has("too many handshakes") },
			"the server to turn away connections past its handshake budget; its log:\n%s", slg)
	}
	require.GreaterOrEqualf(t, len(stalled), 64, "the server turned connections away after %d strangers; want a budget of 64", len(stalled))
	_, err = before.Write(testkit.Ctx(t, testkit.WaitShort), s.Addr(), []byte("set during yes"))
	require.NoError(t, err, "the Client connected before the strangers")
	for _, conn := range stalled {
		conn.Close()
	}
	stalled = nil
	after := &exraft.Client{}
	defer after.Close()
	var last error
	testkit.Eventually(t, testkit.WaitShort, func() bool {
		_, last = after.GetStatus(testkit.Ctx(t, testkit.WaitShort), s.Addr())
		return last == nil
	}, "a new Client to get in once the strangers left (last error: %v)", testkit.LastErr(&last))
}

// TestClientIOTimeout: a Client's IOTimeout bounds the handshake with a
// server that accepts the connection and never answers.
func TestClientIOTimeout(t *testing.T) {
	const ioTimeout = 300 * time.Millisecond
	l := testkit.Listen(t)
	var mu sync.Mutex
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, conn) // never read, never answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})

	cl := &exraft.Client{IOTimeout: ioTimeout}
	defer cl.Close()
	ctx := testkit.Ctx(t, testkit.WaitLong)
	began := time.Now()
	_, err := cl.GetStatus(ctx, l.Addr().String())
	took := time.Since(began)
	t.Logf("GetStatus of a server that never answers: %v after %v", err, took.Round(time.Millisecond))
	require.Error(t, err, "GetStatus of a server that never answers succeeded")
	require.Falsef(t, ctx.Err() != nil || took > testkit.WaitShort/2, "GetStatus of a server that never answers took %v; want about the Client's IOTimeout %v", took, ioTimeout)
	require.GreaterOrEqualf(t, took, ioTimeout*2/3, "GetStatus of a server that never answers gave up after %v, before IOTimeout %v", took, ioTimeout)
}

// TestClientClusterIDTooLong: the handshake carries a ClusterID's length in
// one byte, so a Client's ClusterID above 255 bytes can never be sent; the
// error must say so rather than blame something else.
func TestClientClusterIDTooLong(t *testing.T) {
	c := testkit.StartCluster(t, 1, testkit.Options{})
	s := testkit.AwaitLeader(t, c.Servers())
	for _, n := range []int{256, 300} {
		cl := &exraft.Client{ClusterID: strings.Repeat("a", n)}
		err := requireRefused(t, fmt.Sprintf("a Client with a %d-byte ClusterID", n), func(ctx context.Context) error {
			_, err := cl.GetStatus(ctx, s.Addr())
			return err
		})
		cl.Close()
		msg := err.Error()
		assert.Truef(t, strings.Contains(msg, "ClusterID") && !strings.Contains(msg, "Secret") && strings.Contains(msg, "255"),
			"a Client with a %d-byte ClusterID: %q; want an error saying a ClusterID has at most 255 bytes", n, msg)
	}
}

// TestSecurityConfigErrors: the connection limits and ClusterID are validated, each
// with a *ConfigError that names the field.
func TestSecurityConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		field  string
		mutate func(*exraft.Config)
	}{
		{"negative MaxConns", "MaxConns", func(c *exraft.Config) { c.MaxConns = -1 }},
		{"negative MaxConnsPerHost", "MaxConnsPerHost", func(c *exraft.Config) { c.MaxConnsPerHost = -1 }},
		{"negative MaxPendingCalls", "MaxPendingCalls", func(c *exraft.Config) { c.MaxPendingCalls = -1 }},
		{"negative IOTimeout", "IOTimeout", func(c *exraft.Config) { c.IOTimeout = -time.Millisecond }},
		{"negative MaxCommandSize", "MaxCommandSize", func(c *exraft.Config) { c.MaxCommandSize = -1 }},
		{"MaxCommandSize above MaxFrameSize-1024", "MaxCommandSize", func(c *exraft.Config) {
			c.MaxFrameSize = 4096
			c.MaxCommandSize = 4096 - 1024 + 1
		}},
		{"MaxCommandSize above the default MaxFrameSize-1024", "MaxCommandSize", func(c *exraft.Config) {
			c.MaxCommandSize = 8<<20 - 1024 + 1
		}},
		{"ClusterID of 256 bytes", "ClusterID", func(c *exraft.Config) { c.ClusterID = strings.Repeat("c", 256) }},
		{"TLS without a certificate", "TLS", func(c *exraft.Config) { c.TLS = &tls.Config{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testkit.FastConfig("cfg")
			tc.mutate(&cfg)
			s, err := exraft.StartServer(testkit.NewKV(), cfg)
			if err == nil {
				_ = exraft.StopServer(s)
				require.FailNowf(t, "StartServer accepted an invalid Config", "%s", tc.name)
			}
			var ce *exraft.ConfigError
			require.ErrorAsf(t, err, &ce, "StartServer: %v (%T), want a *exraft.ConfigError", err, err)
			require.Equal(t, tc.field, ce.Field, "StartServer: the field of the ConfigError (%v)", err)
			require.Contains(t, err.Error(), tc.field, "StartServer: the error does not name the field")
		})
	}
	// The limits themselves are allowed.
	for _, tc := range []struct {
		name   string
		mutate func(*exraft.Config)
	}{
		{"MaxCommandSize of MaxFrameSize-1024", func(c *exraft.Config) {
			c.MaxFrameSize = 4096
			c.MaxCommandSize = 4096 - 1024
		}},
		{"ClusterID of 255 bytes", func(c *exraft.Config) { c.ClusterID = strings.Repeat("c", 255) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testkit.FastConfig("cfg")
			tc.mutate(&cfg)
			s, err := exraft.StartServer(testkit.NewKV(), cfg)
			require.NoError(t, err, "StartServer with %s", tc.name)
			require.NoError(t, exraft.StopServer(s), "StopServer")
		})
	}
}

// TestMaxPendingCalls: with MaxPendingCalls 4, a Client firing 64 Writes at
// once sees every one of them succeed (they queue, they do not fail), and the
// cluster goes on committing.
func TestMaxPendingCalls(t *testing.T) {
	const n = 64
	c := testkit.StartCluster(t, 3, testkit.Options{Configure: func(i int, cfg *exraft.Config) {
		cfg.MaxPendingCalls = 4
	}})
	testkit.LeaderVia(t, c.Servers()[0], c.Servers())
	testkit.WriteAny(t, c.Servers(), "set warm up")
	leader := testkit.AwaitLeader(t, c.Servers())

	cl := &exraft.Client{}
	defer cl.Close()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitLong)
			defer cancel()
			addr := leader.Addr()
			cmd := []byte(fmt.Sprintf("set p%d v%d", i, i))
			for {
				_, err := cl.Write(ctx, addr, cmd)
				if err == nil {
					errs <- nil
					return
				}
				var re *exraft.RedirectError
				switch {
				case errors.As(err, &re):
					addr = re.Leader.Addr // leadership moved: follow it
				case ctx.Err() == nil && (errors.Is(err, exraft.ErrNoLeader) || errors.Is(err, exraft.ErrLeadershipLost)):
					// An election: wait for its outcome, then retry.
					p, aerr := cl.AwaitLeader(ctx, addr)
					if aerr == nil {
						addr = p.Addr
					}
				default:
					errs <- fmt.Errorf("write %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
			if failed <= 5 { // the first few say enough
				assert.NoError(t, err)
			}
		}
	}
	require.Zerof(t, failed, "%d of %d concurrent Writes failed with MaxPendingCalls 4; want all to succeed", failed, n)
	dump := testkit.ParseDump(testkit.ReadAny(t, c.Servers(), "dump"))
	for i := range n {
		require.Equal(t, fmt.Sprintf("v%d", i), dump[fmt.Sprintf("p%d", i)], "p%d after the flood", i)
	}
	testkit.WriteAny(t, c.Servers(), "set after flood")
	testkit.AwaitAllHave(t, c.Servers(), "after", "flood")
	require.Equal(t, "ok", clientWrite(t, cl, c.Servers(), "set client again"), "the flooding Client's next Write")
}

// readUntilClosed reads conn until the server ends it, and returns what arrived
// and how long that took since began. Our own deadline (testkit.WaitShort) ending the
// read fails the test: the server kept the connection.
func readUntilClosed(t *testing.T, what string, conn net.Conn, began time.Time, ioTimeout time.Duration) ([]byte, time.Duration) {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(testkit.WaitShort)), "SetReadDeadline")
	got, err := io.ReadAll(conn)
	took := time.Since(began)
	var ne net.Error
	require.Falsef(t, errors.As(err, &ne) && ne.Timeout(), "%s: the server kept the connection open for %v (IOTimeout %v)", what, took, ioTimeout)
	require.Falsef(t, err != nil && !errors.Is(err, syscall.ECONNRESET), "%s: reading until the server closes: %v", what, err)
	t.Logf("%s: closed by the server after %v (read %q, %v)", what, took.Round(time.Millisecond), got, err)
	return got, took
}

// TestIOTimeout: a connection that never sends its handshake is closed after
// IOTimeout, one that opens with garbage is closed at once and logged, and
// the cluster is unaffected by either.
func TestIOTimeout(t *testing.T) {
	const ioTimeout = 300 * time.Millisecond
	logs := make([]*exraft.TestLog, 3)
	c := testkit.StartCluster(t, 3, testkit.Options{Configure: func(i int, cfg *exraft.Config) {
		logs[i] = &exraft.TestLog{}
		cfg.Logger = logs[i].Logger()
		cfg.IOTimeout = ioTimeout
	}})
	testkit.LeaderVia(t, c.Servers()[0], c.Servers())
	testkit.WriteAny(t, c.Servers(), "set before raw")

	readEnd := func(what string, conn net.Conn, began time.Time) ([]byte, time.Duration) {
		t.Helper()
		return readUntilClosed(t, what, conn, began, ioTimeout)
	}

	// A connection that says nothing.
	idle := c.Servers()[0]
	began := time.Now()
	conn := dialRaw(t, idle.Addr(), nil)
	got, took := readEnd("a silent connection", conn, began)
	require.Empty(t, got, "the server answered a connection that never said hello")
	require.GreaterOrEqualf(t, took, ioTimeout*2/3, "a silent connection was closed after %v, before IOTimeout %v", took, ioTimeout)
	require.LessOrEqualf(t, took, testkit.WaitShort/2, "a silent connection was closed after %v, want about IOTimeout %v", took, ioTimeout)
	testkit.Eventually(t, testkit.WaitShort, func() bool { return logs[0].Has("refused a connection", "no handshake", conn.LocalAddr().String()) },
		"%s to log that the silent connection sent no handshake; its log:\n%s", idle.Name(), logs[0])
	testkit.WriteAny(t, c.Servers(), "set after idle")
	testkit.AwaitAllHave(t, c.Servers(), "after", "idle")

	// A connection that opens with something else than exraft.
	target := c.Servers()[1]
	began = time.Now()
	garbage := dialRaw(t, target.Addr(), []byte("GET / HTTP/1.1\r\n\r\n"))
	got, took = readEnd("a connection that sent HTTP", garbage, began)
	require.Empty(t, got, "the server answered HTTP")
	require.LessOrEqualf(t, took, testkit.WaitShort/2, "a connection that sent HTTP was closed after %v, want at once", took)
	testkit.Eventually(t, testkit.WaitShort, func() bool {
		return logs[1].Has("refused a connection", "not an exraft client", garbage.LocalAddr().String())
	},
		"%s to log the refusal of the HTTP request; its log:\n%s", target.Name(), logs[1])
	testkit.WriteAny(t, c.Servers(), "set after garbage")
	testkit.AwaitAllHave(t, c.Servers(), "after", "garbage")

	// A hello of a handshake version this server does not speak is refused
	// with the reason.
	third := c.Servers()[2]
	began = time.Now()
	v9 := dialRaw(t, third.Addr(), append([]byte("EXRAFT\x09\x00"), make([]byte, nonceSize)...))
	got, _ = readEnd("a hello of version 9", v9, began)
	requireRefusal(t, "a version 9 hello", got, "version 9")
	testkit.Eventually(t, testkit.WaitShort, func() bool { return logs[2].Has("refused a connection", "version 9", v9.LocalAddr().String()) },
		"%s to log the refusal of version 9; its log:\n%s", third.Name(), logs[2])

	// After a handshake: frames that stop halfway, and a length prefix above
	// MaxFrameSize. Each case goes to a server whose "bad input" warning
	// has not been used yet (one line per source every few seconds).
	for _, tc := range []struct {
		name   string
		server int
		send   []byte
		slow   bool // closed after IOTimeout, not at once
	}{
		{name: "half a frame body", server: 0, send: []byte{0, 0, 0, 100, 1, 2, 3, 4, 5}, slow: true},
		{name: "a length prefix above MaxFrameSize", server: 1, send: []byte{0xff, 0xff, 0xff, 0xff}},
		{name: "half a length prefix", server: 2, send: []byte{0, 0}, slow: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := c.Servers()[tc.server]
			conn := rawHandshake(t, s.Addr())
			began := time.Now()
			_, err := conn.Write(tc.send)
			require.NoError(t, err, "write")
			got, took := readUntilClosed(t, tc.name, conn, began, ioTimeout)
			require.Empty(t, got, "the server answered")
			if tc.slow {
				require.GreaterOrEqualf(t, took, ioTimeout*2/3, "closed after %v, before IOTimeout %v", took, ioTimeout)
			}
			require.LessOrEqualf(t, took, testkit.WaitShort/2, "closed after %v, want about IOTimeout %v", took, ioTimeout)
			testkit.Eventually(t, testkit.WaitShort, func() bool {
				return logs[tc.server].Has("closed a connection after bad input", conn.LocalAddr().String())
			},
				"%s to log the bad input; its log:\n%s", s.Name(), logs[tc.server])
		})
	}
	testkit.WriteAny(t, c.Servers(), "set after frames")
	testkit.AwaitAllHave(t, c.Servers(), "after", "frames")

	// A real Client still gets in.
	cl := &exraft.Client{}
	defer cl.Close()
	st, err := cl.GetStatus(testkit.Ctx(t, testkit.WaitShort), target.Addr())
	require.NoError(t, err, "GetStatus(%s) after the garbage", target.Name())
	require.Equal(t, target.Name(), st.Name, "GetStatus(%s) after the garbage", target.Name())
}
