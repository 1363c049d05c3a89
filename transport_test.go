package exraft

// Tests of the peer streams against a peer that lets a connection in and
// then goes quiet: one that stops reading, and one that reads but never
// answers. Neither can be made from a real server, so a listener stands in.

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exraft/exraft/internal/raft"
	"github.com/stretchr/testify/require"
)

// quietPeer accepts connections, completes the handshake as a server of the
// cluster would, then either reads and discards everything (drain) or reads
// nothing at all; it never answers a call.
type quietPeer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startQuietPeer(t *testing.T, id identity, drain bool) *quietPeer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	q := &quietPeer{ln: ln}
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			if err := id.acceptHandshake(conn, ""); err != nil {
				conn.Close()
				continue
			}
			q.mu.Lock()
			q.conns = append(q.conns, conn)
			q.mu.Unlock()
			if drain {
				q.wg.Add(1)
				go func() {
					defer q.wg.Done()
					io.Copy(io.Discard, conn)
				}()
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		q.mu.Lock()
		for _, c := range q.conns {
			c.Close()
		}
		q.mu.Unlock()
		q.wg.Wait()
	})
	return q
}

func (q *quietPeer) accepted() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.conns)
}

// startAlone starts a one-server cluster, which leads at once.
func startAlone(t *testing.T, cfg Config) *Server {
	t.Helper()
	return startAloneWith(t, &counterSM{}, cfg)
}

func startAloneWith(t *testing.T, sm StateMachine, cfg Config) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Name, cfg.Listener = "alone", ln
	cfg.InitialConfig = []Peer{{Name: "alone", Addr: ln.Addr().String()}}
	s, err := StartServer(sm, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// sendTo queues msgs on the stream to addr, from the driver goroutine as
// the transport requires.
func sendTo(t *testing.T, s *Server, addr string, msgs ...raft.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.onDriver(ctx, func() {
		for _, m := range msgs {
			m.ToAddr = addr
			s.transport.send(m, false)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestStopDoesNotWaitOnAPeerThatStoppedReading: a stream blocked writing to
// a peer that stopped reading must not hold Stop until the write deadline.
func TestStopDoesNotWaitOnAPeerThatStoppedReading(t *testing.T) {
	const ioTimeout = time.Minute
	s := startAlone(t, Config{IOTimeout: ioTimeout})
	peer := startQuietPeer(t, s.identity, false)
	addr := peer.ln.Addr().String()

	// 24 MiB: far more than a socket holds for a reader that reads nothing
	// (its receive buffer grows only as it reads), so once the stream has
	// taken the first of them to send, it is blocked writing or soon will
	// be.
	var msgs []raft.Message
	for i := 0; i < 24; i++ {
		msgs = append(msgs, raft.Message{Type: raft.MsgApp, Term: 1, From: "alone", To: "ghost",
			Entries: []raft.Entry{{Index: uint64(i + 1), Term: 1, Data: make([]byte, 1<<20)}}})
	}
	sendTo(t, s, addr, msgs...)
	taken := PollUntil(10*time.Second, func() bool {
		s.transport.mu.Lock()
		p := s.transport.peers[addr]
		s.transport.mu.Unlock()
		return peer.accepted() == 1 && p != nil && p.queued() < 24<<20
	})
	if !taken {
		t.Fatalf("the stream never took anything to send (connections accepted: %d)", peer.accepted())
	}

	stopped := make(chan struct{})
	start := time.Now()
	go func() {
		s.Stop()
		close(stopped)
	}()
	select {
	case <-stopped:
		t.Logf("Stop returned in %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatalf("Stop still waiting after 10s on a write to a peer that stopped reading (IOTimeout %v)", ioTimeout)
	}
}

// TestSilentPeerIsRedialed: a peer that takes calls but has answered none
// for several election timeouts is given up on, long before IOTimeout, and
// the next message dials it afresh. Behind a network that drops packets a
// connection stays dead after the network heals; only a new one works.
func TestSilentPeerIsRedialed(t *testing.T) {
	s := startAlone(t, Config{IOTimeout: time.Minute})
	peer := startQuietPeer(t, s.identity, true)
	addr := peer.ln.Addr().String()
	hb := raft.Message{Type: raft.MsgApp, Term: 1, From: "alone", To: "ghost"}
	// Each poll sends one more message: once the stream has given up on
	// its connection, the next message to send dials again.
	within := s.cfg.IOTimeout / 3
	redialed := PollUntil(within, func() bool {
		sendTo(t, s, addr, hb)
		return peer.accepted() >= 2
	})
	if !redialed {
		t.Fatalf("a peer silent for %v was not redialed (connections: %d); it should be after %v of silence, not IOTimeout (%v)",
			within, peer.accepted(), (&peerStream{t: s.transport}).silenceBound(), s.cfg.IOTimeout)
	}
}

// TestSilentPeerIsNotRedialedBeforeItsBound: a peer that has answered
// nothing keeps its connection until silenceBound has passed since the
// call went out: several election timeouts, and at least a second, so that
// a peer that is merely slow (a long GC pause, a large append on a slow
// link) is not cut off, but IOTimeout at most; then it is redialed soon
// after, on the next message. The bound is worked out from that rule, not
// from silenceBound, for short election timeouts (the floor of a second
// holds) and for long ones under a short IOTimeout (the cap holds).
// (TestSilentPeerIsRedialed holds the other side: that it is redialed at
// all, long before IOTimeout.)
func TestSilentPeerIsNotRedialedBeforeItsBound(t *testing.T) {
	for _, cfg := range []Config{
		{IOTimeout: time.Minute, HeartbeatInterval: 10 * time.Millisecond,
			ElectionTimeoutMin: 50 * time.Millisecond, ElectionTimeoutMax: 100 * time.Millisecond},
		{IOTimeout: 1500 * time.Millisecond, HeartbeatInterval: 200 * time.Millisecond,
			ElectionTimeoutMin: time.Second, ElectionTimeoutMax: 2 * time.Second},
	} {
		bound := min(cfg.IOTimeout, max(4*cfg.ElectionTimeoutMax, time.Second))
		s := startAlone(t, cfg)
		peer := startQuietPeer(t, s.identity, true)
		addr := peer.ln.Addr().String()
		hb := raft.Message{Type: raft.MsgApp, Term: 1, From: "alone", To: "ghost"}
		start := time.Now() // before the first call goes out
		var redialedAt time.Time
		redialed := PollUntil(20*time.Second, func() bool {
			sendTo(t, s, addr, hb)
			if peer.accepted() >= 2 {
				redialedAt = time.Now()
				return true
			}
			return false
		})
		require.True(t, redialed, "a peer silent for 20s was not redialed (connections: %d; bound %v)", peer.accepted(), bound)
		waited := redialedAt.Sub(start)
		require.GreaterOrEqual(t, waited, bound, "a silent peer was redialed before its bound")
		// The silence is checked each quarter of the bound: a few seconds
		// of slack for a loaded machine.
		require.LessOrEqual(t, waited, bound+3*time.Second, "a silent peer was redialed long after its bound")
		t.Logf("redialed after %v (bound %v)", waited.Round(time.Millisecond), bound)
	}
}

// countingListener counts the connections it lets in.
type countingListener struct {
	net.Listener
	accepted atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// TestIdlePeerKeepsItsConnection: the silence that gives up a connection
// is that of a peer with calls in flight. A peer that answered everything
// it was sent, and was sent nothing since, has said nothing because
// nothing was asked: its connection stays however long the stream is
// idle, and the next message goes on it rather than on a new one.
func TestIdlePeerKeepsItsConnection(t *testing.T) {
	s := startAlone(t, Config{IOTimeout: time.Minute})
	bound := (&peerStream{t: s.transport}).silenceBound()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cl := &countingListener{Listener: ln}
	// A server waiting to be added: it answers the Step calls it gets.
	peer, err := StartServer(&counterSM{}, Config{Name: "peer", Listener: cl, MinMajority: 2})
	require.NoError(t, err)
	t.Cleanup(func() { peer.Stop() })
	addr := ln.Addr().String()
	hb := raft.Message{Type: raft.MsgApp, Term: 1, From: "alone", To: "ghost"}
	sendTo(t, s, addr, hb)
	require.True(t, PollUntil(20*time.Second, func() bool { return cl.accepted.Load() == 1 }), "the stream connects")
	// The idle spell the rule is about: longer than the bound, and the
	// silence is checked each quarter of it. Shorter than streamIdle, after
	// which the stream would retire.
	time.Sleep(2 * bound)
	sendTo(t, s, addr, hb)
	redialed := PollUntil(2*time.Second, func() bool { return cl.accepted.Load() > 1 })
	require.False(t, redialed, "a peer idle for %v, answered every time, was redialed (bound %v)", 2*bound, bound)
}

// slowConn delays every write: a peer whose answers come late.
type slowConn struct {
	net.Conn
	delay time.Duration
}

func (c *slowConn) Write(p []byte) (int, error) {
	time.Sleep(c.delay) // the peer's slowness, not a wait of the test's
	return c.Conn.Write(p)
}

// slowListener is a countingListener whose connections answer late.
type slowListener struct {
	countingListener
	delay time.Duration
}

func (l *slowListener) Accept() (net.Conn, error) {
	c, err := l.countingListener.Accept()
	if err != nil {
		return nil, err
	}
	return &slowConn{Conn: c, delay: l.delay}, nil
}

// TestSlowPeerUnderLoadKeepsItsConnection: a peer that answers, however
// late, is not silent. Under a stream of appends the calls are pipelined
// and some are always in flight, but each answer restarts the wait for the
// next: the connection stays for as long as answers keep coming, far past
// silenceBound. (Measured from the first call instead, a busy connection
// to a slow peer would be cut every silenceBound, in the middle of
// catching it up.)
func TestSlowPeerUnderLoadKeepsItsConnection(t *testing.T) {
	s := startAlone(t, Config{IOTimeout: time.Minute})
	bound := (&peerStream{t: s.transport}).silenceBound()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	sl := &slowListener{countingListener: countingListener{Listener: ln}, delay: 100 * time.Millisecond}
	peer, err := StartServer(&counterSM{}, Config{Name: "peer", Listener: sl, MinMajority: 2})
	require.NoError(t, err)
	t.Cleanup(func() { peer.Stop() })
	addr := ln.Addr().String()
	// Appends of 32 KiB, more than pipelineBytes in every few: calls go
	// while others are out.
	app := func(i int) raft.Message {
		return raft.Message{Type: raft.MsgApp, Term: 1, From: "alone", To: "ghost",
			Entries: []raft.Entry{{Index: uint64(i + 1), Term: 1, Data: make([]byte, 32<<10)}}}
	}
	sendTo(t, s, addr, app(0))
	require.True(t, PollUntil(20*time.Second, func() bool { return sl.accepted.Load() == 1 }), "the stream connects")
	start := time.Now()
	for i := 1; time.Since(start) < 3*bound; i += 4 {
		sendTo(t, s, addr, app(i), app(i+1), app(i+2), app(i+3))
		require.Equal(t, int32(1), sl.accepted.Load(), "a peer answering every %v was redialed after %v of load (bound %v)", sl.delay, time.Since(start).Round(time.Millisecond), bound)
		time.Sleep(10 * time.Millisecond) // the pace of the load
	}
}
