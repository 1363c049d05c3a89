package exraft

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/rpc"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/exraft/exraft/internal/wire"
)

// Client makes exraft's calls against servers by address, over net/rpc. It
// keeps one connection per address and reuses it. A zero Client is ready to
// use, and a Client is safe for concurrent use.
//
// Errors match the same sentinels as the Server methods' (errors.Is,
// errors.As); failures to reach the server are returned as they are, wrapped
// with the address.
//
// Set the fields before the first call: connections already open keep the
// settings they were made with (Close drops them).
type Client struct {
	// Dial, if set, opens connections instead of net.Dialer.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// MaxFrameSize bounds one call or reply, in bytes; 8 MiB by default.
	MaxFrameSize int
	// TLS, if set, connects over TLS with this configuration. When its
	// ServerName is empty, the host part of the address is verified.
	TLS *tls.Config
	// ClusterID and Secret must match the servers' (Config.ClusterID,
	// Config.Secret); a server refuses a connection that does not, and the
	// call fails with an error matching ErrUnauthorized.
	ClusterID string
	Secret    []byte
	// IOTimeout bounds the handshake of a new connection and any one
	// write; 10s by default. The call itself is bounded by its ctx only.
	IOTimeout time.Duration
	// AttemptTimeout bounds a Session's wait for one server's answer: a
	// call unanswered by then is tried on another server (safely: a
	// Session's retry never applies a write twice); 1s by default.
	AttemptTimeout time.Duration

	mu sync.Mutex // held to change conns
	// conns maps addresses to connections. Every call looks its
	// connection up, and a map changed in place would have to be read
	// under mu, which the goroutines of a busy Client queued on; it is
	// replaced instead, on the rare dial or failure.
	conns atomic.Pointer[map[string]*clientConn]
	// probes says which addresses serve WriteBatch.
	probes batchProbes
}

// clientConn is a connection of a Client: net/rpc's client, and the codec
// under it, which coalesces the requests of concurrent calls (Queue).
type clientConn struct {
	rc    *rpc.Client
	codec *wire.ClientCodec
	batch writeBatcher // the Writes that share calls on it
}

// send starts a call, in one write with whatever other calls are starting.
func (cc *clientConn) send(method string, args, reply any, done chan *rpc.Call) *rpc.Call {
	cc.codec.Queue()
	defer cc.codec.Unqueue()
	return cc.rc.Go(method, args, reply, done)
}

// DefaultClient is the Client used by the package-level functions.
var DefaultClient = &Client{}

// Close closes the Client's connections. The Client stays usable: later
// calls dial again.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.conns.Swap(nil); m != nil {
		for _, cc := range *m {
			cc.rc.Close()
		}
	}
	return nil
}

// lookup returns the connection to addr, nil if there is none.
func (c *Client) lookup(addr string) *clientConn {
	if m := c.conns.Load(); m != nil {
		return (*m)[addr]
	}
	return nil
}

// setConn makes cc, or nil, the connection to addr. The caller holds c.mu.
func (c *Client) setConn(addr string, cc *clientConn) {
	m := map[string]*clientConn{}
	if old := c.conns.Load(); old != nil {
		maps.Copy(m, *old)
	}
	if cc == nil {
		delete(m, addr)
	} else {
		m[addr] = cc
	}
	c.conns.Store(&m)
}

// conn returns the connection to addr, dialling it if there is none, within
// ctx and, if it is not nil, within.
func (c *Client) conn(ctx context.Context, within *deadlineSlot, addr string) (*clientConn, error) {
	if cc := c.lookup(addr); cc != nil {
		return cc, nil
	}
	if within != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, within.at)
		defer cancel()
	}
	timeout := c.IOTimeout
	if timeout <= 0 {
		timeout = defaultIOTimeout
	}
	conn, err := dialConn(ctx, c.Dial, addr, c.TLS, identity{clusterID: c.ClusterID, secret: c.Secret}, timeout)
	if err != nil {
		return nil, err
	}
	codec := wire.NewClientCodec(conn, wire.ClientConfig{MaxFrame: c.MaxFrameSize, IOTimeout: timeout})
	cc := &clientConn{rc: rpc.NewClientWithCodec(codec), codec: codec}
	if !c.settleBatch(ctx, addr, cc) {
		// The server ended the connection at WriteBatch; it is known now.
		return c.conn(ctx, within, addr)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.lookup(addr); old != nil {
		cc.rc.Close() // another call dialled first
		return old, nil
	}
	c.setConn(addr, cc)
	return cc, nil
}

func (c *Client) forget(addr string, cc *clientConn) {
	c.mu.Lock()
	if c.lookup(addr) == cc {
		c.setConn(addr, nil)
	}
	c.mu.Unlock()
	cc.rc.Close()
}

// call runs method on the server at addr and decodes its reply. It returns
// when the reply arrives or ctx ends.
func (c *Client) call(ctx context.Context, addr, method string, req *callRequest) (callReply, error) {
	rep, _, err := c.callWithin(ctx, nil, addr, method, req)
	return rep, err
}

// clientDeadlines bounds a Session's attempts (Session.attempt) without a
// context.WithTimeout each.
var clientDeadlines deadlineWheel

// callWithin is call, bounded also by within if it is not nil: the call
// then ends with context.DeadlineExceeded when within does, if ctx has not
// ended first. sent reports whether the call may have reached the server:
// false when it was not made (no connection, no time left).
func (c *Client) callWithin(ctx context.Context, within *deadlineSlot, addr, method string, req *callRequest) (rep callReply, sent bool, err error) {
	deadline, ok := ctx.Deadline()
	var expired <-chan struct{} // within's end, if it comes before ctx's
	if within != nil && (!ok || within.at.Before(deadline)) {
		deadline, ok, expired = within.at, true, within.done
	}
	if ok {
		req.Timeout = int64(time.Until(deadline))
		if req.Timeout <= 0 {
			return callReply{}, false, context.DeadlineExceeded
		}
	}
	if err := c.fitsFrame(method, len(req.Data)); err != nil {
		return callReply{}, false, err
	}
	cs := clientCalls.Get().(*clientCall)
	cs.args = req.appendTo(cs.args[:0])
	for attempt := 0; ; attempt++ {
		cc, err := c.conn(ctx, within, addr)
		if err != nil {
			return callReply{}, false, err
		}
		var raw []byte
		call := cc.send(method, &cs.args, &raw, cs.done)
		select {
		case <-call.Done:
			clientCalls.Put(cs) // its request is written, and done empty again
		case <-ctx.Done():
			return callReply{}, true, noReply(method, addr, ctx.Err())
		case <-expired:
			return callReply{}, true, noReply(method, addr, context.DeadlineExceeded)
		}
		if call.Error != nil {
			var se rpc.ServerError
			if errors.As(call.Error, &se) {
				return callReply{}, true, serverError(string(se))
			}
			if errors.Is(call.Error, wire.ErrFrameTooLarge) {
				// A request too large was refused before anything was
				// written: the connection is fine. (A response too large
				// ended it; the next call finds it shut down and dials
				// again.)
				return callReply{}, true, &tooLargeError{msg: fmt.Sprintf("%v (%s on %s)", call.Error, opName(method), addr)}
			}
			c.forget(addr, cc)
			if errors.Is(call.Error, rpc.ErrShutdown) && attempt == 0 {
				// A cached connection the server had closed: nothing was
				// sent. The request, in cs, is sent again.
				cs = clientCalls.Get().(*clientCall)
				cs.args = req.appendTo(cs.args[:0])
				continue
			}
			return callReply{}, true, fmt.Errorf("exraft: %s on %s: the connection failed: %w", opName(method), addr, call.Error)
		}
		if err := rep.decode(raw); err != nil {
			return callReply{}, true, fmt.Errorf("exraft: bad reply from %s: %w", addr, err)
		}
		return rep, true, decodeErr(&rep)
	}
}

// clientCall is what a call needs and can hand on to the next once it is
// answered: its encoded request and the channel net/rpc signals on. A call
// whose ctx ended first leaves them to net/rpc, which may yet send on done.
type clientCall struct {
	args []byte
	done chan *rpc.Call
}

var clientCalls = sync.Pool{New: func() any { return &clientCall{done: make(chan *rpc.Call, 1)} }}

// opName is a method's name as users know it: "Write" for "Exraft.Write".
func opName(method string) string { return strings.TrimPrefix(method, "Exraft.") }

// noReply is the error of a call sent whose ctx, or bound, ended before its
// reply came: it matches err, and says that the call may have taken effect.
func noReply(method, addr string, err error) error {
	return &waitError{msg: fmt.Sprintf("exraft: %s on %s: %v with no reply (it may have reached the server and taken effect; the server may be slow, partitioned or down)", opName(method), addr, err), err: err}
}

// fitsFrame refuses, before anything is sent, a command or query that no
// frame of this Client could carry, naming the limit a user can change.
func (c *Client) fitsFrame(method string, n int) error {
	maxFrame := c.MaxFrameSize
	if maxFrame <= 0 {
		maxFrame = wire.DefaultMaxFrame
	}
	limit := maxFrame - wire.FrameOverhead
	if n <= limit {
		return nil
	}
	if method == methodWrite {
		return &tooLargeError{msg: fmt.Sprintf("exraft: too large: a command of %d bytes is above the limit of %d (a server's Config.MaxCommandSize, 1 MiB by default, can be at most its MaxFrameSize less %d; this Client's MaxFrameSize is %d)", n, limit, wire.FrameOverhead, maxFrame)}
	}
	return &tooLargeError{msg: fmt.Sprintf("exraft: too large: a read's query of %d bytes is above the limit of %d (MaxFrameSize less %d bytes of framing)", n, limit, wire.FrameOverhead)}
}

// Write is Server.Write on the server at addr. Concurrent Writes to one
// address share calls (client_batch.go). ErrTooLarge whose text says the
// write was applied is a result that did not fit in the reply: Apply's
// results of the writes of one call add up to at most MaxFrameSize.
func (c *Client) Write(ctx context.Context, addr string, command []byte) ([]byte, error) {
	val, _, err, ok, turn := c.writeShared(ctx, addr, sharedWrite{cmd: command})
	if ok {
		return val, err
	}
	if turn != nil {
		defer turn.batch.release(c, addr, turn)
	}
	rep, err := c.call(ctx, addr, methodWrite, &callRequest{Data: command})
	if err != nil {
		return nil, err
	}
	return rep.Data, nil
}

// Read is Server.Read on the server at addr.
func (c *Client) Read(ctx context.Context, addr string, query []byte) ([]byte, error) {
	rep, err := c.call(ctx, addr, methodRead, &callRequest{Data: query})
	if err != nil {
		return nil, err
	}
	return rep.Data, nil
}

// ReadDirty is Server.ReadDirty on the server at addr.
func (c *Client) ReadDirty(ctx context.Context, addr string, query []byte) ([]byte, error) {
	rep, err := c.call(ctx, addr, methodReadDirty, &callRequest{Data: query})
	if err != nil {
		return nil, err
	}
	return rep.Data, nil
}

// AwaitLeader is Server.AwaitLeader on the server at addr.
func (c *Client) AwaitLeader(ctx context.Context, addr string) (Peer, error) {
	rep, err := c.call(ctx, addr, methodAwaitLeader, &callRequest{})
	if err != nil {
		return Peer{}, err
	}
	return rep.Leader, nil
}

// AddServer is Server.AddServer on the server at addr.
func (c *Client) AddServer(ctx context.Context, addr string, p Peer) error {
	_, err := c.call(ctx, addr, methodAddServer, &callRequest{Peer: p})
	return err
}

// RemoveServer is Server.RemoveServer on the server at addr.
func (c *Client) RemoveServer(ctx context.Context, addr string, name string) error {
	_, err := c.call(ctx, addr, methodRemoveServer, &callRequest{Name: name})
	return err
}

// TriggerElection is Server.TriggerElection on the server at addr.
func (c *Client) TriggerElection(ctx context.Context, addr string) error {
	_, err := c.call(ctx, addr, methodTriggerElection, &callRequest{})
	return err
}

// TransferLeadership is Server.TransferLeadership on the server at addr,
// which must be the leader.
func (c *Client) TransferLeadership(ctx context.Context, addr, name string) error {
	_, err := c.call(ctx, addr, methodTransferLeadership, &callRequest{Name: name})
	return err
}

// GetStatus is Server.Status on the server at addr.
func (c *Client) GetStatus(ctx context.Context, addr string) (Status, error) {
	rep, err := c.call(ctx, addr, methodStatus, &callRequest{})
	if err != nil {
		return Status{}, err
	}
	if rep.Status == nil { // a server sends one; a zero one if it has none
		return Status{}, nil
	}
	return *rep.Status, nil
}

// Write calls Server.Write on the server at addr with DefaultClient.
func Write(ctx context.Context, addr string, command []byte) ([]byte, error) {
	return DefaultClient.Write(ctx, addr, command)
}

// Read calls Server.Read on the server at addr with DefaultClient.
func Read(ctx context.Context, addr string, query []byte) ([]byte, error) {
	return DefaultClient.Read(ctx, addr, query)
}

// ReadDirty calls Server.ReadDirty on the server at addr with DefaultClient.
func ReadDirty(ctx context.Context, addr string, query []byte) ([]byte, error) {
	return DefaultClient.ReadDirty(ctx, addr, query)
}

// AwaitLeader calls Server.AwaitLeader on the server at addr with
// DefaultClient.
func AwaitLeader(ctx context.Context, addr string) (Peer, error) {
	return DefaultClient.AwaitLeader(ctx, addr)
}

// AddServer calls Server.AddServer on the server at addr with DefaultClient.
func AddServer(ctx context.Context, addr string, p Peer) error {
	return DefaultClient.AddServer(ctx, addr, p)
}

// RemoveServer calls Server.RemoveServer on the server at addr with
// DefaultClient.
func RemoveServer(ctx context.Context, addr string, name string) error {
	return DefaultClient.RemoveServer(ctx, addr, name)
}

// TriggerElection calls Server.TriggerElection on the server at addr with
// DefaultClient.
func TriggerElection(ctx context.Context, addr string) error {
	return DefaultClient.TriggerElection(ctx, addr)
}

// TransferLeadership calls Server.TransferLeadership on the server at addr
// with DefaultClient.
func TransferLeadership(ctx context.Context, addr, name string) error {
	return DefaultClient.TransferLeadership(ctx, addr, name)
}

// GetStatus returns the Status of the server at addr, with DefaultClient.
func GetStatus(ctx context.Context, addr string) (Status, error) {
	return DefaultClient.GetStatus(ctx, addr)
}
