package wire

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/rpc"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The net/rpc codecs: net/rpc's requests and responses, each one frame
// (frame.go). A server codec serves net/rpc over a connection, a client codec
// calls over one; both are safe for the use net/rpc makes of them (one
// reading goroutine, writes serialized), and writes are safe on their own.
//
// A frame written is buffered, and sent at once unless the codec knows of
// another one on its way: callers announce theirs with Queue, and the last
// of a run of frames sends them all in one write. That spares a system call
// per call when many are in flight, and costs one lock when few are.

// ServerConfig configures a server codec. The zero value is a codec with the
// default frame limit, no I/O timeout and no hooks.
type ServerConfig struct {
	// MaxFrame bounds a frame's content, in bytes, both ways; <= 0 means
	// DefaultMaxFrame. A request frame announcing more ends the connection
	// with an error wrapping ErrFrameTooLarge. A reply whose frame would be
	// larger is not sent: the caller gets an error response instead, whose
	// text starts with ErrFrameTooLarge's, so that its call fails rather
	// than waiting forever.
	MaxFrame int
	// IOTimeout, if positive, bounds every write, and the rest of a frame
	// once its length has arrived, provided the connection has deadlines (a
	// net.Conn has). A connection that exceeds it fails, and the codec
	// closes it. The wait for a frame to begin is not bounded.
	IOTimeout time.Duration
	// OnBody, if set, is called by ReadRequestBody right after a body
	// decodes, in the order the requests arrived on the connection, with the
	// request's ServiceMethod and the decoded body (the same pointer net/rpc
	// passed in). It exists so that the server can hand peer messages to its
	// protocol goroutine in arrival order: handlers run side by side (net/rpc
	// starts a goroutine for each; Serve's workers take them in turn), which
	// would reorder them.
	//
	// OnBody runs on the goroutine reading the connection: while it blocks, no
	// further request is read from this connection. It is not called for a
	// body net/rpc discards (a request for an unknown method), nor for one
	// that fails to decode.
	OnBody func(method string, body any)
	// Admit, if set, vets each request's method once its header is read,
	// before net/rpc sees it: an error ends the connection.
	Admit func(method string) error
	// Done, if set, is called with a request's method and reply once its
	// response is written, or failed to be: net/rpc is done with the reply
	// then, and the server may reuse its buffers.
	Done func(method string, body any)
	// Strict ends the connection after a request whose body fails to decode,
	// instead of answering it with an error and reading on: for a server
	// whose callers never send such a body, whatever did is not to be
	// trusted further.
	Strict bool
}

// ClientConfig configures a client codec. The zero value is a codec with the
// default frame limit and no I/O timeout.
type ClientConfig struct {
	// MaxFrame bounds a frame's content, in bytes, both ways; <= 0 means
	// DefaultMaxFrame. A request whose frame would be larger fails with an
	// error wrapping ErrFrameTooLarge and nothing is written, so the
	// connection stays usable. A response frame announcing more fails every
	// pending call of the client with an error wrapping ErrFrameTooLarge
	// (net/rpc passes it through).
	MaxFrame int
	// IOTimeout is as in ServerConfig.
	IOTimeout time.Duration
	// OnBody, if set, is called for every response body, in arrival order,
	// as ServerConfig.OnBody is for requests: a server uses it to take the
	// protocol messages that a peer returns in its replies.
	OnBody func(method string, body any)
}

// NewServerCodec returns a codec that serves net/rpc over rwc
// (rpc.Server.ServeCodec), as cfg says.
func NewServerCodec(rwc io.ReadWriteCloser, cfg ServerConfig) *ServerCodec {
	c := &ServerCodec{onBody: cfg.OnBody, admit: cfg.Admit, done: cfg.Done, strict: cfg.Strict}
	c.init(rwc, cfg.MaxFrame, cfg.IOTimeout)
	return c
}

// NewClientCodec returns a codec that makes net/rpc calls over rwc
// (rpc.NewClientWithCodec), as cfg says.
func NewClientCodec(rwc io.ReadWriteCloser, cfg ClientConfig) *ClientCodec {
	c := &ClientCodec{onBody: cfg.OnBody}
	c.init(rwc, cfg.MaxFrame, cfg.IOTimeout)
	return c
}

// codecConn is what both sides share: one reader, one writer, one Close.
type codecConn struct {
	rwc       io.ReadWriteCloser
	r         frameReader
	w         frameWriter
	closeOnce sync.Once
	writeErr  atomic.Pointer[error] // the first write that failed
}

func (c *codecConn) init(rwc io.ReadWriteCloser, maxFrame int, ioTimeout time.Duration) {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	// The length prefix has 32 bits; a larger limit could not be announced.
	maxFrame = int(min(uint64(maxFrame), math.MaxUint32))
	c.rwc = rwc
	c.r.init(rwc, maxFrame)
	c.w.init(rwc, maxFrame)
	if dl, ok := rwc.(deadliner); ok && ioTimeout > 0 {
		c.r.dl, c.r.timeout = dl, ioTimeout
		c.w.dl, c.w.timeout = dl, ioTimeout
	}
}

// writeFailed closes the connection after a failed write: the stream is
// out of step (part of a frame may have gone), and the reading side must
// not wait on a peer that is no longer answered. A frame refused before
// anything was written leaves the stream as it was.
func (c *codecConn) writeFailed(err error) {
	if err != nil && !errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, errEncoding) {
		failed := err // not err itself: its address would put it on the heap at every call
		c.writeErr.CompareAndSwap(nil, &failed)
		c.Close()
	}
}

// readFailed is what a failed read reports: the error of a write that failed
// before it, if one did, since closing the connection then is what ended the
// read. The calls whose frames were buffered when a later flush failed learn
// that way why their connection failed.
func (c *codecConn) readFailed(err error) error {
	if werr := c.writeErr.Load(); werr != nil && err != nil {
		return *werr
	}
	return err
}

// Close closes the connection once; later calls return nil.
func (c *codecConn) Close() error {
	var err error
	c.closeOnce.Do(func() { err = c.rwc.Close() })
	return err
}

// ServerCodec is net/rpc's rpc.ServerCodec over frames; see NewServerCodec.
type ServerCodec struct {
	codecConn
	onBody func(method string, body any)
	admit  func(method string) error
	done   func(method string, body any)
	strict bool
	method string // of the request whose body is next

	queueMu sync.Mutex
	queued  []any // the replies announced by Queue and not yet written

	// afterRead, Serve's, runs once a request is read, or failed to be,
	// told whether reading ended for good: Serve's workers take turns to
	// read.
	afterRead func(ended bool)
}

// endRead runs once a request's header failed to read, or its body was read
// or failed to be.
func (c *ServerCodec) endRead() {
	if c.afterRead != nil {
		c.afterRead(c.r.err != nil)
	}
}

// Queue announces that the reply body, of a request read from this codec,
// is about to be written (net/rpc writes it once the handler returns): a
// response written meanwhile stays buffered, and goes with this one.
// Every reply queued must be written, or the responses before it wait: a
// handler that returns an error must not queue, as net/rpc then writes a
// body of its own in place of the reply.
func (c *ServerCodec) Queue(reply any) {
	c.queueMu.Lock()
	c.queued = append(c.queued, reply)
	c.queueMu.Unlock()
}

// unqueue forgets body's announcement, if it had one, and reports whether
// other replies are still to come.
func (c *ServerCodec) unqueue(body any) (more bool) {
	c.queueMu.Lock()
	defer c.queueMu.Unlock()
	for i, r := range c.queued {
		if r == body {
			last := len(c.queued) - 1
			c.queued[i], c.queued[last] = c.queued[last], nil
			c.queued = c.queued[:last]
			break
		}
	}
	return len(c.queued) > 0
}

// ReadErr is why the codec stopped reading requests: nil while it reads, and
// io.EOF if the peer closed the connection between two frames. net/rpc
// keeps it to itself, so that a server can log it.
func (c *ServerCodec) ReadErr() error { return c.r.err }

// ReadRequestHeader implements rpc.ServerCodec. net/rpc reads the body
// next if, and only if, it returns no error.
func (c *ServerCodec) ReadRequestHeader(req *rpc.Request) error {
	err := c.readRequestHeader(req)
	if err != nil {
		c.endRead()
	}
	return err
}

func (c *ServerCodec) readRequestHeader(req *rpc.Request) error {
	method, seq, _, err := c.r.readHeader(2)
	if err != nil {
		// net/rpc ends the connection after any header error; keep it
		// for ReadErr.
		if c.r.err == nil {
			c.r.err = err
		}
		return err
	}
	if c.admit != nil {
		if err := c.admit(method); err != nil {
			c.r.err = err
			return err
		}
	}
	req.ServiceMethod, req.Seq = method, seq
	c.method = method
	return nil
}

// ReadRequestBody implements rpc.ServerCodec.
func (c *ServerCodec) ReadRequestBody(body any) error {
	defer c.endRead()
	if err := c.r.readBody(body); err != nil {
		if c.strict && c.r.err == nil {
			// net/rpc answers this request with the error; the next read
			// then ends the connection.
			c.r.err = err
		}
		return err
	}
	if c.onBody != nil && body != nil {
		c.onBody(c.method, body)
	}
	return nil
}

// WriteResponse implements rpc.ServerCodec.
func (c *ServerCodec) WriteResponse(resp *rpc.Response, body any) error {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	err := c.w.writeFrame(resp.ServiceMethod, resp.Seq, true, resp.Error, body)
	if errors.Is(err, ErrFrameTooLarge) {
		// net/rpc only logs a failed WriteResponse, so without this the
		// caller would wait for the reply until its own deadline.
		msg := fmt.Sprintf("%v: the reply to %s exceeds %d bytes (the server's MaxFrameSize)", ErrFrameTooLarge, opName(resp.ServiceMethod), c.w.max)
		err = c.w.writeFrame(resp.ServiceMethod, resp.Seq, true, msg, nil)
	}
	if !c.unqueue(body) {
		// Even after a frame refused: others may be buffered.
		if ferr := c.w.flush(); err == nil {
			err = ferr
		}
	}
	c.writeFailed(err)
	if c.done != nil {
		c.done(resp.ServiceMethod, body)
	}
	return err
}

// ClientCodec is net/rpc's rpc.ClientCodec over frames; see NewClientCodec.
type ClientCodec struct {
	codecConn
	onBody func(method string, body any)
	method string // of the response whose body is next
	queued atomic.Int32
}

// Queue announces a request about to be written (rpc.Client.Go): requests
// written meanwhile stay buffered. Every Queue must be followed by Unqueue
// once the request is written, or failed to be.
func (c *ClientCodec) Queue() { c.queued.Add(1) }

// Unqueue ends what Queue began. The last of those queued sends what is
// buffered; a write that fails ends the connection, and every call pending
// on it fails with the write's error.
func (c *ClientCodec) Unqueue() {
	if c.queued.Add(-1) > 0 {
		return
	}
	// Calls readied together (by replies that arrived together) are
	// runnable rather than running on few processors, and none would find
	// another queued: yielding once lets them queue theirs first. It took
	// a Client with 64 writers from 1.1 frames per write to 6.
	runtime.Gosched()
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	if c.queued.Load() == 0 { // else the one queued since then sends it all
		c.writeFailed(c.w.flush())
	}
}

// WriteRequest implements rpc.ClientCodec.
func (c *ClientCodec) WriteRequest(req *rpc.Request, body any) error {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	err := c.w.writeFrame(req.ServiceMethod, req.Seq, false, "", body)
	if c.queued.Load() == 0 {
		if ferr := c.w.flush(); err == nil {
			err = ferr
		}
	}
	c.writeFailed(err)
	return err
}

// ReadResponseHeader implements rpc.ClientCodec.
func (c *ClientCodec) ReadResponseHeader(resp *rpc.Response) error {
	method, seq, msg, err := c.r.readHeader(3)
	if err != nil {
		return c.readFailed(err)
	}
	resp.ServiceMethod, resp.Seq, resp.Error = method, seq, msg
	c.method = method
	return nil
}

// ReadResponseBody implements rpc.ClientCodec.
func (c *ClientCodec) ReadResponseBody(body any) error {
	if err := c.r.readBody(body); err != nil {
		return err
	}
	if c.onBody != nil && body != nil {
		c.onBody(c.method, body)
	}
	return nil
}

// opName is a method as users know it, in the texts of errors: "Write" for
// "Exraft.Write".
func opName(method string) string { return strings.TrimPrefix(method, "Exraft.") }
