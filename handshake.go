package exraft

import (
	"context"
	"crypto/hmac"
	crand "crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"
)

// Every connection, from a peer or a client, opens with a handshake before
// its first frame. It keeps out whatever does not speak exraft (a stray
// HTTP client, a port scanner, garbage), servers of another cluster, and,
// when a Secret is set, anyone who does not know it. The Secret never
// crosses the wire: each end proves it knows the Secret with an HMAC over
// both ends' fresh nonces, so a recorded handshake is worth nothing later.
//
//	dialer → acceptor   hello:  "EXRAFT" version, len ClusterID, ClusterID, nonce, CR LF
//	acceptor → dialer   verdict; if accepted: nonce
//	dialer → acceptor   proof("dialer")
//	acceptor → dialer   verdict; if accepted: proof("acceptor")
//	dialer → acceptor   verdict, then frames
//
// A verdict is one byte, 0 for accepted; a refusal is followed by its reason
// (one length byte, then text), so that the refused end can say why. Any
// other byte means the other end is not an exraft server at all. The hello
// ends with CR LF so that a line-based server dialed by mistake (HTTP,
// Redis, SMTP…) answers at once with its own error, which the dialer then
// shows, instead of waiting for the rest of a line until IOTimeout.
//
// The dialer proves itself first. Anyone can connect to a server, but only
// a server's own configuration and its users decide whom it dials; so a
// stranger never holds a proof made with the Secret, which it could
// otherwise try to guess the Secret from at leisure.
//
// proof(role) = HMAC-SHA256(Secret, role, ClusterID, dialer nonce, acceptor
// nonce, TLS binding). Under TLS the binding is keying material exported
// from the TLS session, which ties the proofs to this very connection: a
// proof relayed onto another connection does not verify.
//
// Both ends read exactly what the handshake holds and nothing more (no
// buffering), so the frames that follow are left for the codec.
const (
	handshakeMagic   = "EXRAFT"
	handshakeVersion = 2
	helloEnd         = "\r\n"
	nonceSize        = 32
	proofSize        = sha256.Size
	verdictAccepted  = 0
	verdictRefused   = 1
	// maxClusterID keeps the ClusterID within the hello's length byte.
	maxClusterID = 255
	// defaultIOTimeout bounds a handshake, a stalled write and a frame that
	// stops arriving halfway (Config.IOTimeout).
	defaultIOTimeout = 10 * time.Second
)

// identity is what a connection's two ends must agree on.
type identity struct {
	clusterID string
	secret    []byte
}

// unauthorizedError is a refusal, as the refused end reports it.
type unauthorizedError struct{ msg string }

func (e *unauthorizedError) Error() string { return "exraft: unauthorized: " + e.msg }
func (e *unauthorizedError) Unwrap() error { return ErrUnauthorized }

func (id identity) proof(role string, dialerNonce, acceptorNonce, binding []byte) []byte {
	mac := hmac.New(sha256.New, id.secret)
	mac.Write([]byte(role))
	mac.Write([]byte{byte(len(id.clusterID))})
	mac.Write([]byte(id.clusterID))
	mac.Write(dialerNonce)
	mac.Write(acceptorNonce)
	mac.Write(binding)
	return mac.Sum(nil)
}

// tlsBinding returns keying material both ends of a TLS connection derive
// alike, or nil for a plain connection.
func tlsBinding(conn net.Conn) ([]byte, error) {
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return nil, nil
	}
	cs := tc.ConnectionState()
	b, err := cs.ExportKeyingMaterial("EXPERIMENTAL exraft handshake", nil, 32)
	if err != nil {
		// Without it a proof could be relayed between two TLS sessions.
		return nil, fmt.Errorf("the TLS session cannot bind the handshake (%v): use TLS 1.3, or TLS 1.2 with extended master secret", err)
	}
	return b, nil
}

func newNonce() []byte {
	b := make([]byte, nonceSize)
	if _, err := crand.Read(b); err != nil {
		panic("exraft: no randomness: " + err.Error())
	}
	return b
}

// dialHandshake is the dialer's side. addr only names the other end in
// errors.
func (id identity) dialHandshake(conn net.Conn, addr string) error {
	binding, err := tlsBinding(conn)
	if err != nil {
		return &unauthorizedError{fmt.Sprintf("connection to %s: %v", addr, err)}
	}
	hello := make([]byte, 0, len(handshakeMagic)+2+len(id.clusterID)+nonceSize+len(helloEnd))
	hello = append(hello, handshakeMagic...)
	hello = append(hello, handshakeVersion, byte(len(id.clusterID)))
	hello = append(hello, id.clusterID...)
	nonce := newNonce()
	hello = append(hello, nonce...)
	hello = append(hello, helloEnd...)
	if _, err := conn.Write(hello); err != nil {
		return handshakeIOError(addr, err)
	}
	if err := readVerdict(conn, addr, "the server"); err != nil {
		return err
	}
	theirNonce := make([]byte, nonceSize)
	if _, err := io.ReadFull(conn, theirNonce); err != nil {
		return handshakeIOError(addr, err)
	}
	if _, err := conn.Write(id.proof("dialer", nonce, theirNonce, binding)); err != nil {
		return handshakeIOError(addr, err)
	}
	if err := readVerdict(conn, addr, "the server"); err != nil {
		return err
	}
	var theirs [proofSize]byte
	if _, err := io.ReadFull(conn, theirs[:]); err != nil {
		return handshakeIOError(addr, err)
	}
	if !hmac.Equal(theirs[:], id.proof("acceptor", nonce, theirNonce, binding)) {
		reason := "the server could not prove it knows the Secret"
		_ = writeRefusal(conn, reason)
		return &unauthorizedError{fmt.Sprintf("%s: %s", addr, reason)}
	}
	if _, err := conn.Write([]byte{verdictAccepted}); err != nil {
		return handshakeIOError(addr, err)
	}
	return nil
}

// acceptHandshake is the acceptor's side. A non-empty refuse turns the
// connection away with that reason once the hello is read. The error names
// what went wrong, for the log.
func (id identity) acceptHandshake(conn net.Conn, refuse string) error {
	var head [len(handshakeMagic) + 2]byte
	if _, err := io.ReadFull(conn, head[:]); err != nil {
		return fmt.Errorf("no handshake: %w", err)
	}
	if string(head[:len(handshakeMagic)]) != handshakeMagic {
		return fmt.Errorf("not an exraft client or peer: the connection opened with %q", head[:])
	}
	if head[len(handshakeMagic)] != handshakeVersion {
		reason := fmt.Sprintf("handshake version %d is not supported (this server speaks %d)", head[len(handshakeMagic)], handshakeVersion)
		_ = writeRefusal(conn, reason)
		return errors.New(reason)
	}
	theirID := make([]byte, head[len(handshakeMagic)+1])
	dialerNonce := make([]byte, nonceSize)
	end := make([]byte, len(helloEnd))
	for _, part := range [][]byte{theirID, dialerNonce, end} {
		if _, err := io.ReadFull(conn, part); err != nil {
			return fmt.Errorf("handshake cut short: %w", err)
		}
	}
	if string(end) != helloEnd {
		return fmt.Errorf("not an exraft client or peer: the hello ends with %q", end)
	}
	if refuse != "" {
		_ = writeRefusal(conn, refuse)
		return errors.New(refuse)
	}
	if string(theirID) != id.clusterID {
		reason := fmt.Sprintf("ClusterID %q differs from this server's %q", theirID, id.clusterID)
		_ = writeRefusal(conn, reason)
		return &unauthorizedError{reason}
	}
	binding, err := tlsBinding(conn)
	if err != nil {
		_ = writeRefusal(conn, err.Error())
		return &unauthorizedError{err.Error()}
	}
	nonce := newNonce()
	if _, err := conn.Write(append([]byte{verdictAccepted}, nonce...)); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	var theirs [proofSize]byte
	if _, err := io.ReadFull(conn, theirs[:]); err != nil {
		return fmt.Errorf("handshake cut short: %w", err)
	}
	if !hmac.Equal(theirs[:], id.proof("dialer", dialerNonce, nonce, binding)) {
		reason := "the Secrets differ (or only one end has one, or a proxy ends TLS on one side)"
		_ = writeRefusal(conn, reason)
		return &unauthorizedError{"the dialer could not prove it knows the Secret: " + reason}
	}
	if _, err := conn.Write(append([]byte{verdictAccepted}, id.proof("acceptor", dialerNonce, nonce, binding)...)); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	return readVerdict(conn, conn.RemoteAddr().String(), "the dialer")
}

// readVerdict reads a verdict and, for a refusal, its reason; who names the
// other end in the error. Bytes that are no verdict, or a reason that is
// not text, come from something that does not speak exraft.
func readVerdict(r io.Reader, addr, who string) error {
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return handshakeIOError(addr, err)
	}
	switch b[0] {
	case verdictAccepted:
		return nil
	case verdictRefused:
	default:
		return notExraft(r, addr, b[:])
	}
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return handshakeIOError(addr, err)
	}
	reason := make([]byte, b[0])
	if _, err := io.ReadFull(r, reason); err != nil {
		return handshakeIOError(addr, err)
	}
	if !printable(reason) {
		return &notExraftError{addr: addr, answer: append([]byte{verdictRefused, b[0]}, reason...)}
	}
	return &unauthorizedError{fmt.Sprintf("%s at %s refused the connection: %s", who, addr, reason)}
}

// notExraftAnswer bounds how much of a stranger's answer an error shows, and
// notExraftWait how long the dialer waits for more of it than came at once.
const (
	notExraftAnswer = 64
	notExraftWait   = 100 * time.Millisecond
)

// notExraft builds the error for an answer that began with first: it reads
// what else arrives promptly, so that the error shows the stranger's words.
func notExraft(r io.Reader, addr string, first []byte) error {
	answer := make([]byte, notExraftAnswer)
	n := copy(answer, first)
	if d, ok := r.(interface{ SetReadDeadline(time.Time) error }); ok {
		d.SetReadDeadline(time.Now().Add(notExraftWait))
	}
	for n < len(answer) {
		m, err := r.Read(answer[n:])
		n += m
		if err != nil {
			break
		}
	}
	return &notExraftError{addr: addr, answer: answer[:n]}
}

// notExraftError: the other end answered the handshake with bytes that are
// not exraft's. It matches ErrNotExraft.
type notExraftError struct {
	addr   string
	answer []byte
}

func (e *notExraftError) Error() string {
	return fmt.Sprintf("exraft: %s does not speak exraft (check the address and port): it answered %q", e.addr, e.answer)
}
func (e *notExraftError) Unwrap() error { return ErrNotExraft }

func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func writeRefusal(w io.Writer, reason string) error {
	if len(reason) > 255 {
		reason = reason[:255]
	}
	_, err := w.Write(append([]byte{verdictRefused, byte(len(reason))}, reason...))
	return err
}

func handshakeIOError(addr string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
		return fmt.Errorf("%s closed the connection before accepting it (not an exraft server, or it is stopping, or at its MaxConns): %w", addr, err)
	}
	return err
}

// dialConn opens a connection to addr that is ready for frames: dialed with
// dial (or net.Dialer), wrapped in TLS if tlsCfg is set, and past the
// handshake. All of it is bounded by parent and by timeout.
func dialConn(parent context.Context, dial func(context.Context, string) (net.Conn, error), addr string, tlsCfg *tls.Config, id identity, timeout time.Duration) (net.Conn, error) {
	if len(id.clusterID) > maxClusterID {
		return nil, fmt.Errorf("exraft: a ClusterID of %d bytes is too long (at most %d)", len(id.clusterID), maxClusterID)
	}
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	// fail says why a step failed. When parent ended it is parent's error,
	// for errors.Is; when the timeout did, it says so, and does not match
	// context.DeadlineExceeded: that is the caller's deadline, not this one.
	fail := func(step string, err error) error {
		if perr := parent.Err(); perr != nil {
			return fmt.Errorf("exraft: %s %s: %w", step, addr, perr)
		}
		var ne net.Error
		if ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("exraft: %s %s: no answer within %v (is an exraft server listening there?)", step, addr, timeout)
		}
		if errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrNotExraft) {
			return err
		}
		return &connectError{step: step, addr: addr, err: err}
	}
	var raw net.Conn
	var err error
	if dial != nil {
		raw, err = dial(ctx, addr)
	} else {
		var d net.Dialer
		raw, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fail("dial", err)
	}
	// Whatever ends first, ctx or the timeout, interrupts the handshake.
	deadline, _ := ctx.Deadline()
	raw.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	conn := raw
	if tlsCfg != nil {
		cfg := tlsCfg
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fail("TLS handshake with", err)
		}
		conn = tc
	}
	if err := id.dialHandshake(conn, addr); err != nil {
		raw.Close()
		return nil, fail("handshake with", err)
	}
	if !stop() && ctx.Err() != nil {
		raw.Close() // ctx ended just now and may have set a past deadline
		return nil, fail("handshake with", ctx.Err())
	}
	raw.SetDeadline(time.Time{})
	return conn, nil
}

// connectError is a failure to connect to addr at step (dial, TLS
// handshake, handshake). Its text leaves out what a *net.OpError repeats of
// the step and the address.
type connectError struct {
	step, addr string
	err        error
}

func (e *connectError) Error() string {
	msg := e.err.Error()
	var oe *net.OpError
	if errors.As(e.err, &oe) && oe.Err != nil {
		msg = oe.Err.Error()
	}
	return fmt.Sprintf("exraft: %s %s: %s", e.step, e.addr, msg)
}

func (e *connectError) Unwrap() error { return e.err }
