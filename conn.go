package exraft

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/exraft/exraft/internal/wire"
)

// Serving connections: who gets in (connection limits, TLS, the handshake),
// how many calls they may have running, and what is logged when a
// connection is refused or ends on bad input.

// maxHandshakes is the least number of handshakes that may be under way at
// once; MaxConns/8 when that is more.
const maxHandshakes = 64

// acceptRetryMax bounds the pause between two accepts that failed in a row.
const acceptRetryMax = time.Second

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	var pause time.Duration // after the last failed accept
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if s.isStopped() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				s.log.Error("the listener was closed; no longer accepting connections", "err", err)
				return
			}
			// Out of file descriptors (EMFILE, ENFILE), of buffers, or a
			// connection that failed before it was taken: these pass, as
			// connections close. Giving up would leave a server that
			// follows and votes but answers no call of a client or a
			// peer's new connection for the rest of its life.
			pause = min(max(2*pause, 5*time.Millisecond), acceptRetryMax)
			s.warn("accept", "accept failed; trying again", "err", err, "pause", pause)
			t := time.NewTimer(pause)
			select {
			case <-t.C:
			case <-s.stopc:
				t.Stop()
				return
			}
			continue
		}
		pause = 0
		host := remoteHost(conn)
		s.connsMu.Lock()
		if s.isStopped() {
			s.connsMu.Unlock()
			conn.Close()
			return
		}
		if len(s.conns) >= s.cfg.MaxConns {
			s.connsMu.Unlock()
			conn.Close()
			s.warn("conns", "closed a new connection: MaxConns reached", "remote", conn.RemoteAddr().String(), "limit", s.cfg.MaxConns)
			continue
		}
		if s.handshaking >= max(maxHandshakes, s.cfg.MaxConns/8) {
			// Connections that have not proved anything yet get a budget
			// of their own, so that strangers who stall in the handshake
			// cannot take every slot from peers and clients.
			s.connsMu.Unlock()
			conn.Close()
			s.warn("handshakes", "closed a new connection: too many handshakes under way", "remote", conn.RemoteAddr().String())
			continue
		}
		s.handshaking++
		// Past MaxConnsPerHost the connection is still served, counted, for
		// as long as it takes to tell the dialer why it is refused.
		refuse := ""
		if s.connsPerHost[host] >= s.cfg.MaxConnsPerHost {
			refuse = fmt.Sprintf("too many connections from %s (MaxConnsPerHost is %d)", host, s.cfg.MaxConnsPerHost)
		}
		s.conns[conn] = struct{}{}
		s.connsPerHost[host]++
		s.wg.Add(1)
		s.connsMu.Unlock()
		go s.serveConn(conn, host, refuse)
	}
}

func remoteHost(conn net.Conn) string {
	addr := conn.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// serveConn admits a connection (TLS, then the handshake, both within
// IOTimeout) and serves net/rpc on it until it ends.
func (s *Server) serveConn(raw net.Conn, host, refuse string) {
	defer s.wg.Done()
	defer func() {
		raw.Close()
		s.connsMu.Lock()
		delete(s.conns, raw)
		if s.connsPerHost[host]--; s.connsPerHost[host] <= 0 {
			delete(s.connsPerHost, host)
		}
		s.connsMu.Unlock()
	}()
	remote := raw.RemoteAddr().String()
	handshaking := true
	doneHandshaking := func() {
		if handshaking {
			handshaking = false
			s.connsMu.Lock()
			s.handshaking--
			s.connsMu.Unlock()
		}
	}
	defer doneHandshaking()
	conn := raw
	conn.SetDeadline(time.Now().Add(s.cfg.IOTimeout))
	if s.cfg.TLS != nil {
		tc := tls.Server(conn, s.cfg.TLS)
		if err := tc.HandshakeContext(s.ctx); err != nil {
			if !s.isStopped() {
				s.warn("tls:"+host+err.Error(), "refused a connection: TLS handshake failed", "remote", remote, "err", err)
			}
			return
		}
		conn = tc
	}
	if err := s.identity.acceptHandshake(conn, refuse); err != nil {
		if !s.isStopped() {
			s.warn("handshake:"+host+err.Error(), "refused a connection", "remote", remote, "err", err)
		}
		return
	}
	conn.SetDeadline(time.Time{})
	doneHandshaking()

	if err := s.serveCalls(conn); err != nil && !s.isStopped() && !isConnEnd(err) {
		s.warn("input:"+host+err.Error(), "closed a connection after bad input", "remote", remote, "err", err)
	}
}

// isConnEnd reports whether err only says the connection ended between two
// frames. A frame cut short (io.ErrUnexpectedEOF) or stalled is bad input.
func isConnEnd(err error) bool {
	return err == io.EOF || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET)
}

// admitCall vets a request's method before net/rpc sees it. An unknown
// method ends the connection: no client of this version sends one. A
// client call waits for one of MaxPendingCalls slots, which leaves the rest
// of its connection unread meanwhile; Step and InstallSnapshot, the traffic
// between peers, are never held up.
func (s *Server) admitCall(method string) error {
	if method == methodWriteBatch && s.withoutWriteBatch.Load() {
		method = "" // unknown, as to servers before it
	}
	switch method {
	case methodStep, methodInstallSnapshot:
		return nil
	case methodWrite, methodRead, methodReadDirty, methodAwaitLeader, methodAddServer,
		methodRemoveServer, methodTriggerElection, methodStatus,
		methodSessionOpen, methodSessionWrite, methodSessionClose, methodTransferLeadership,
		methodWriteBatch:
		if err := s.pendingCalls.Acquire(s.ctx, 1); err != nil {
			return ErrStopped
		}
		return nil
	}
	return fmt.Errorf("%w: unknown method %q", wire.ErrMalformedFrame, method)
}

// callDone runs once a call's response is written: its reply's buffer can
// be reused, and a call other than Step frees its slot.
func (s *Server) callDone(method string, body any) {
	switch method {
	case methodStep:
		recycleReply(body)
	case methodInstallSnapshot:
	default:
		recycleCallReply(body)
		s.pendingCalls.Release(1)
	}
}

// warnLimiter keeps a warning that repeats (a peer redialing with the wrong
// ClusterID every heartbeat) to one line per key every warnEvery. Keys name
// the source and the error, so that each different bad input from one host
// is still logged.
type warnLimiter struct {
	mu   sync.Mutex
	last map[string]time.Time
}

const warnEvery = 10 * time.Second

func (s *Server) warn(key, msg string, args ...any) {
	l := &s.warns
	now := time.Now()
	l.mu.Lock()
	if l.last == nil || len(l.last) > 1024 {
		l.last = map[string]time.Time{} // many sources: forget, rather than grow
	}
	t, seen := l.last[key]
	ok := !seen || now.Sub(t) >= warnEvery
	if ok {
		l.last[key] = now
	}
	l.mu.Unlock()
	if ok {
		s.log.Warn(msg, args...)
	}
}
