package exraft

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/rpc"
	"strings"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// The wire format of the net/rpc codec. Every request and every response is
// one frame: a 4-byte big-endian length n, then n bytes holding two msgpack
// values, the header and the body.
//
//	request header:  [ServiceMethod string, Seq uint]
//	response header: [ServiceMethod string, Seq uint, Error string]
//
// The body is the msgpack encoding of the argument or reply (nil when there is
// none). A frame is read whole before anything in it is decoded, so a body
// that fails to decode leaves the stream in step with the peer and net/rpc can
// answer the request with an error instead of dropping the connection.

const defaultMaxFrame = 8 << 20 // bytes

// frameOverhead is what a frame needs beyond one command: the headers of the
// frame, the Step call and the message that carries the command as an entry.
const frameOverhead = 1024

// errFrameTooLarge is returned (wrapped, with the size) when a frame header announces more than maxFrame bytes.
// Writing a frame that would be larger fails with it too, having written nothing.
var errFrameTooLarge = fmt.Errorf("%w: frame above the size limit", ErrTooLarge)

// errEncoding is wrapped by a failure to encode a frame, which writes nothing.
var errEncoding = errors.New("exraft: encoding")

// errMalformedFrame is wrapped by every error about the content of a frame that
// arrived whole: such an error never means the connection ended.
var errMalformedFrame = errors.New("exraft: malformed frame")

const (
	// frameKeepCap bounds the buffers a codec keeps between frames: one big
	// AppendEntries batch must not pin its size in memory for the life of the
	// connection.
	frameKeepCap = 1 << 20
	// frameFirstChunk is how much is allocated up front for a frame larger
	// than the buffer in hand; the rest grows as bytes arrive, so a peer that
	// announces a big frame and then stalls or hangs up costs little.
	frameFirstChunk = 64 << 10
	// frameMaxDepth bounds the nesting of containers in a body. The msgpack
	// decoder recurses once per level when it fills an interface value, and
	// a frame of nothing but array openers would otherwise overflow the
	// goroutine stack, which kills the process rather than the connection.
	frameMaxDepth = 64
	// frameNameCache is how many recent ServiceMethod strings a reader keeps
	// so that steady traffic decodes headers without allocating.
	frameNameCache  = 8
	frameNameMaxLen = 64
	frameReadBuf    = 32 << 10
)

// newServerCodec serves net/rpc over rwc. maxFrame <= 0 means defaultMaxFrame.
// onBody, if not nil, is called by ReadRequestBody right after a body decodes successfully, in the
// order the requests arrived on the connection, with the request's ServiceMethod and the decoded body
// (the same pointer net/rpc passed in). It exists so the server can hand peer messages to its
// protocol goroutine in arrival order (net/rpc runs handlers in separate goroutines, which would reorder them).
//
// onBody runs on the connection's reading goroutine: while it blocks, no
// further request is read from this connection. It is not called for a body
// net/rpc discards (a request for an unknown method), nor for one that fails
// to decode.
//
// A reply whose frame would exceed maxFrame is not sent; the client gets an
// error response instead whose text starts with errFrameTooLarge's, so that its
// call fails rather than waiting forever.
func newServerCodec(rwc io.ReadWriteCloser, maxFrame int, onBody func(method string, body any)) *rpcServerCodec {
	c := &rpcServerCodec{onBody: onBody}
	c.init(rwc, maxFrame)
	return c
}

// newClientCodec is the client side. maxFrame <= 0 means defaultMaxFrame.
//
// A request whose frame would exceed maxFrame fails with an error wrapping
// errFrameTooLarge and nothing is written, so the connection stays usable. A
// response frame announcing more than maxFrame fails every pending call of the
// client with an error wrapping errFrameTooLarge (net/rpc passes it through).
func newClientCodec(rwc io.ReadWriteCloser, maxFrame int) *rpcClientCodec {
	c := &rpcClientCodec{}
	c.init(rwc, maxFrame)
	return c
}

// newPeerClientCodec is newClientCodec with onBody called for every response
// body, in arrival order, as newServerCodec does for requests: a server
// uses it to take the protocol messages a peer returns in its replies.
func newPeerClientCodec(rwc io.ReadWriteCloser, maxFrame int, onBody func(method string, body any)) *rpcClientCodec {
	c := &rpcClientCodec{onBody: onBody}
	c.init(rwc, maxFrame)
	return c
}

// codecConn is what both sides share: one reader, one writer, one Close.
type codecConn struct {
	rwc       io.ReadWriteCloser
	r         frameReader
	w         frameWriter
	closeOnce sync.Once
}

func (c *codecConn) init(rwc io.ReadWriteCloser, maxFrame int) {
	if maxFrame <= 0 {
		maxFrame = defaultMaxFrame
	}
	// The length prefix has 32 bits; a larger limit could not be announced.
	maxFrame = int(min(uint64(maxFrame), math.MaxUint32))
	c.rwc = rwc
	c.r.init(rwc, maxFrame)
	c.w.init(rwc, maxFrame)
}

// deadliner is the part of net.Conn that sets I/O deadlines.
type deadliner interface {
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// setIOTimeout bounds every write, and the rest of a frame once its length
// has arrived, to d, if the connection supports deadlines. A connection
// that exceeds it fails; the codec closes it.
func (c *codecConn) setIOTimeout(d time.Duration) {
	if dl, ok := c.rwc.(deadliner); ok && d > 0 {
		c.r.dl, c.r.timeout = dl, d
		c.w.dl, c.w.timeout = dl, d
	}
}

// readErr is why the codec stopped reading, nil while it reads.
func (c *codecConn) readErr() error { return c.r.err }

// writeFailed closes the connection after a failed write: the stream is
// out of step (part of a frame may have gone), and the reading side must
// not wait on a peer that is no longer answered.
func (c *codecConn) writeFailed(err error) {
	if err != nil && !errors.Is(err, errFrameTooLarge) && !errors.Is(err, errEncoding) {
		c.Close()
	}
}

// Close closes the connection once; later calls return nil.
func (c *codecConn) Close() error {
	var err error
	c.closeOnce.Do(func() { err = c.rwc.Close() })
	return err
}

type rpcServerCodec struct {
	codecConn
	onBody func(method string, body any)
	method string // of the request whose body is next
	// admit, if set, vets each request's method once its header is read:
	// an error ends the connection. done is called with the request's
	// method and reply once the response is written (or failed to be).
	admit func(method string) error
	done  func(method string, body any)
	// strict ends the connection after a request whose body fails to
	// decode, instead of reading on: a server's peers and clients never
	// send one, so whatever did is not to be trusted further.
	strict bool
}

func (c *rpcServerCodec) ReadRequestHeader(req *rpc.Request) error {
	method, seq, _, err := c.r.readHeader(2)
	if err != nil {
		// net/rpc ends the connection after any header error; keep it
		// for readErr.
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

func (c *rpcServerCodec) ReadRequestBody(body any) error {
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

func (c *rpcServerCodec) WriteResponse(resp *rpc.Response, body any) error {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	err := c.w.writeFrame(resp.ServiceMethod, resp.Seq, true, resp.Error, body)
	if errors.Is(err, errFrameTooLarge) {
		// net/rpc only logs a failed WriteResponse, so without this the
		// caller would wait for the reply until its own deadline.
		msg := fmt.Sprintf("%v: the reply to %s exceeds %d bytes (the server's MaxFrameSize)", errFrameTooLarge, strings.TrimPrefix(resp.ServiceMethod, "Exraft."), c.w.max)
		err = c.w.writeFrame(resp.ServiceMethod, resp.Seq, true, msg, nil)
	}
	c.writeFailed(err)
	if c.done != nil {
		c.done(resp.ServiceMethod, body)
	}
	return err
}

type rpcClientCodec struct {
	codecConn
	onBody func(method string, body any)
	method string // of the response whose body is next
}

func (c *rpcClientCodec) WriteRequest(req *rpc.Request, body any) error {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	err := c.w.writeFrame(req.ServiceMethod, req.Seq, false, "", body)
	c.writeFailed(err)
	return err
}

func (c *rpcClientCodec) ReadResponseHeader(resp *rpc.Response) error {
	method, seq, msg, err := c.r.readHeader(3)
	if err != nil {
		return err
	}
	resp.ServiceMethod, resp.Seq, resp.Error = method, seq, msg
	c.method = method
	return nil
}

func (c *rpcClientCodec) ReadResponseBody(body any) error {
	if err := c.r.readBody(body); err != nil {
		return err
	}
	if c.onBody != nil && body != nil {
		c.onBody(c.method, body)
	}
	return nil
}

// frameReader reads frames. net/rpc reads each connection from one goroutine,
// so it has no lock.
type frameReader struct {
	br      *bufio.Reader
	max     int
	dl      deadliner // with timeout, bounds the reading of a frame begun
	timeout time.Duration
	hdr     [4]byte
	buf     []byte // the frame being decoded
	rd      bytes.Reader
	dec     *msgpack.Decoder // reads rd directly: it buffers nothing of its own

	names    [frameNameCache]string
	nextName int

	// err is set once the stream is out of step with the peer (a failed
	// read, a length over the limit): nothing after it can be trusted.
	err error
}

func (r *frameReader) init(src io.Reader, limit int) {
	r.br = bufio.NewReaderSize(src, frameReadBuf)
	r.max = limit
	r.newDecoder()
}

func (r *frameReader) newDecoder() {
	r.rd.Reset(r.buf)
	r.dec = msgpack.NewDecoder(&r.rd)
	// Pinned so both ends agree whatever the library's default becomes.
	r.dec.SetCustomStructTag("msgpack")
}

// readFrame reads the next frame into r.buf. It returns io.EOF only when the
// peer closed between two frames.
func (r *frameReader) readFrame() error {
	if r.err != nil {
		return r.err
	}
	// Waiting for a frame to begin takes as long as it takes; once it has
	// begun, the rest must follow within the timeout. Most frames arrive
	// whole, and then no deadline is set.
	if _, err := r.br.Peek(1); err != nil {
		r.err = err
		return err
	}
	armed := r.arm(len(r.hdr), false)
	err := r.readFrameRest(&armed)
	if armed {
		r.dl.SetReadDeadline(time.Time{})
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		r.err = err
		return err
	}
	r.rd.Reset(r.buf)
	return nil
}

// arm sets the read deadline unless it is set already, or the next need
// bytes are buffered; it reports whether the deadline is set.
func (r *frameReader) arm(need int, armed bool) bool {
	if r.dl == nil || armed || r.br.Buffered() >= need {
		return armed
	}
	r.dl.SetReadDeadline(time.Now().Add(r.timeout))
	return true
}

// readFrameRest reads the length and the content of a frame that has begun.
func (r *frameReader) readFrameRest(armed *bool) error {
	if _, err := io.ReadFull(r.br, r.hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(r.hdr[:])
	if uint64(n) > uint64(r.max) {
		return fmt.Errorf("%w: %d bytes announced, the limit is %d", errFrameTooLarge, n, r.max)
	}
	*armed = r.arm(int(n), *armed)
	return r.fill(int(n))
}

func (r *frameReader) fill(n int) error {
	buf := r.buf[:0]
	if first := min(n, frameFirstChunk); cap(buf) < first {
		buf = make([]byte, 0, first)
	}
	for len(buf) < n {
		if len(buf) == cap(buf) {
			next := make([]byte, len(buf), min(n, 2*cap(buf)))
			copy(next, buf)
			buf = next
		}
		k, err := io.ReadFull(r.br, buf[len(buf):min(n, cap(buf))])
		buf = buf[:len(buf)+k]
		if err != nil {
			r.buf = buf[:0]
			return err
		}
	}
	r.buf = buf
	return nil
}

// release drops what the frame pinned once its body was handled.
func (r *frameReader) release() {
	if cap(r.buf) > frameKeepCap {
		r.buf = nil
		// The decoder keeps a scratch buffer as large as the largest string
		// it read, and only a frame this large can have held a large one.
		r.newDecoder()
		return
	}
	r.buf = r.buf[:0]
	r.rd.Reset(r.buf)
}

func malformedFrame(part string, err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w: %s: %v", errMalformedFrame, part, err)
}

// readHeader reads a frame and decodes its header, an array of fields
// elements: ServiceMethod, Seq and, for a response, Error.
func (r *frameReader) readHeader(fields int) (method string, seq uint64, msg string, err error) {
	if err = r.readFrame(); err != nil {
		return "", 0, "", err
	}
	defer func() {
		if err != nil {
			r.release()
		}
	}()
	n, err := r.dec.DecodeArrayLen()
	if err != nil {
		return "", 0, "", malformedFrame("header", err)
	}
	if n != fields {
		return "", 0, "", malformedFrame("header", fmt.Errorf("%d fields, want %d", n, fields))
	}
	if method, err = r.decodeString(true); err != nil {
		return "", 0, "", malformedFrame("service method", err)
	}
	if seq, err = r.dec.DecodeUint64(); err != nil {
		return "", 0, "", malformedFrame("seq", err)
	}
	if fields > 2 {
		if msg, err = r.decodeString(false); err != nil {
			return "", 0, "", malformedFrame("error", err)
		}
	}
	return method, seq, msg, nil
}

// decodeString decodes a string straight from the frame: the msgpack
// decoder would allocate the announced length before noticing that the frame
// is shorter.
func (r *frameReader) decodeString(intern bool) (string, error) {
	n, err := r.dec.DecodeBytesLen()
	if err != nil {
		return "", err
	}
	if n <= 0 { // -1 is nil
		return "", nil
	}
	if n > r.rd.Len() {
		return "", io.ErrUnexpectedEOF
	}
	start := len(r.buf) - r.rd.Len()
	b := r.buf[start : start+n]
	if _, err := r.rd.Seek(int64(n), io.SeekCurrent); err != nil {
		return "", err
	}
	if !intern || n > frameNameMaxLen {
		return string(b), nil
	}
	for _, s := range r.names {
		if s == string(b) {
			return s, nil
		}
	}
	s := string(b)
	r.names[r.nextName] = s
	r.nextName = (r.nextName + 1) % len(r.names)
	return s, nil
}

// readBody decodes the rest of the frame into body, or checks and skips it
// when body is nil.
func (r *frameReader) readBody(body any) error {
	defer r.release()
	rest := r.buf[len(r.buf)-r.rd.Len():]
	if err := checkMsgpackValue(rest); err != nil {
		return malformedFrame("body", err)
	}
	if body == nil {
		return nil
	}
	if err := r.dec.Decode(body); err != nil {
		return malformedFrame("body", err)
	}
	if r.rd.Len() != 0 {
		return malformedFrame("body", fmt.Errorf("%d bytes left after the body", r.rd.Len()))
	}
	return nil
}

// Kinds of msgpack values, as far as checkMsgpackValue cares.
const (
	mpScalar = iota // including strings, binaries and extensions
	mpArray
	mpMap
)

// checkMsgpackValue reports whether b holds exactly one well-formed msgpack
// value. Beyond well-formedness it guarantees what the msgpack decoder does
// not: no container announces more elements than there are bytes left (the
// decoder preallocates slices by the announced count), and nesting stays
// within frameMaxDepth. Together they bound the memory and stack a body can
// make the decoder use by the size of the frame.
func checkMsgpackValue(b []byte) error {
	var outer [frameMaxDepth]uint64 // elements still due in each enclosing container
	depth := 0
	due := uint64(1) // elements still due at the current level
	i := 0
	for {
		if due == 0 {
			if depth == 0 {
				break
			}
			depth--
			due = outer[depth]
			continue
		}
		if i >= len(b) {
			return io.ErrUnexpectedEOF
		}
		c := b[i]
		i++
		due--

		var payload uint64 // bytes to skip
		var elems uint64   // for a container
		var lenSize int    // bytes of an explicit length that follows c
		kind := mpScalar
		switch {
		case c <= 0x7f || c >= 0xe0: // fixint
		case c <= 0x8f:
			kind, elems = mpMap, uint64(c&0x0f)
		case c <= 0x9f:
			kind, elems = mpArray, uint64(c&0x0f)
		case c <= 0xbf:
			payload = uint64(c & 0x1f)
		default:
			switch c {
			case 0xc0, 0xc2, 0xc3: // nil, false, true
			case 0xc4, 0xd9: // bin8, str8
				lenSize = 1
			case 0xc5, 0xda:
				lenSize = 2
			case 0xc6, 0xdb:
				lenSize = 4
			case 0xc7: // ext8: length, then a type byte
				lenSize, payload = 1, 1
			case 0xc8:
				lenSize, payload = 2, 1
			case 0xc9:
				lenSize, payload = 4, 1
			case 0xcc, 0xd0:
				payload = 1
			case 0xcd, 0xd1:
				payload = 2
			case 0xca, 0xce, 0xd2:
				payload = 4
			case 0xcb, 0xcf, 0xd3:
				payload = 8
			case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1..16 plus a type byte
				payload = 1 + 1<<(c-0xd4)
			case 0xdc:
				kind, lenSize = mpArray, 2
			case 0xdd:
				kind, lenSize = mpArray, 4
			case 0xde:
				kind, lenSize = mpMap, 2
			case 0xdf:
				kind, lenSize = mpMap, 4
			default: // 0xc1 is never used
				return fmt.Errorf("invalid msgpack code 0x%x at offset %d", c, i-1)
			}
		}
		if lenSize > 0 {
			if len(b)-i < lenSize {
				return io.ErrUnexpectedEOF
			}
			var n uint64
			for _, x := range b[i : i+lenSize] {
				n = n<<8 | uint64(x)
			}
			i += lenSize
			if kind == mpScalar {
				payload += n
			} else {
				elems = n
			}
		}
		if kind == mpMap {
			elems *= 2 // cannot overflow: at most 2*(2^32-1)
		}
		left := uint64(len(b) - i)
		if payload > left {
			return io.ErrUnexpectedEOF
		}
		i += int(payload)
		if elems == 0 {
			continue
		}
		// Every element takes at least one byte.
		if elems > left {
			return fmt.Errorf("container at offset %d announces %d elements in %d bytes", i-1-lenSize, elems, left)
		}
		if depth == frameMaxDepth {
			return fmt.Errorf("containers nested deeper than %d", frameMaxDepth)
		}
		outer[depth] = due
		depth++
		due = elems
	}
	if i != len(b) {
		return fmt.Errorf("%d bytes left after the value", len(b)-i)
	}
	return nil
}

// frameWriter writes frames. net/rpc already serializes writes on each side;
// the lock makes the codec safe on its own.
type frameWriter struct {
	mu          sync.Mutex
	bw          *bufio.Writer
	max         int
	dl          deadliner // with timeout, bounds each write
	timeout     time.Duration
	deadlineSet time.Time // when the write deadline was last moved
	buf         frameBuffer
	enc         *msgpack.Encoder
}

func (w *frameWriter) init(dst io.Writer, limit int) {
	w.bw = bufio.NewWriter(dst)
	w.max = limit
	w.buf.limit = 4 + limit
	w.enc = msgpack.NewEncoder(&w.buf)
	w.enc.SetCustomStructTag("msgpack")
	w.enc.UseCompactInts(true)
}

// writeFrame encodes a header (with msg when response is true) and body into
// one frame and sends it. Nothing is sent when anything fails before the write.
// The caller holds w.mu.
func (w *frameWriter) writeFrame(method string, seq uint64, response bool, msg string, body any) error {
	w.buf.reset()
	defer w.shrink()
	var zero [4]byte
	err := w.buf.write(zero[:]) // the length, patched below
	fields := 2
	if response {
		fields = 3
	}
	if err == nil {
		err = w.enc.EncodeArrayLen(fields)
	}
	if err == nil {
		err = w.enc.EncodeString(method)
	}
	if err == nil {
		err = w.enc.EncodeUint(seq)
	}
	if err == nil && response {
		err = w.enc.EncodeString(msg)
	}
	if err == nil {
		err = w.enc.Encode(body)
	}
	if w.buf.over {
		return fmt.Errorf("%w: %s needs more than %d bytes (MaxFrameSize)", errFrameTooLarge, strings.TrimPrefix(method, "Exraft."), w.max)
	}
	if err != nil {
		return fmt.Errorf("%w %s #%d: %w", errEncoding, method, seq, err)
	}
	frame := w.buf.b.Bytes()
	binary.BigEndian.PutUint32(frame, uint32(len(frame)-4))
	if w.dl != nil {
		// Moving the deadline costs more than reading the clock, so it
		// moves only once half the timeout has passed: a write may then
		// stall for between half the timeout and all of it.
		if now := time.Now(); now.After(w.deadlineSet.Add(w.timeout / 2)) {
			w.dl.SetWriteDeadline(now.Add(w.timeout))
			w.deadlineSet = now
		}
	}
	if _, err := w.bw.Write(frame); err != nil {
		return err
	}
	return w.bw.Flush()
}

func (w *frameWriter) shrink() {
	if w.buf.b.Cap() > frameKeepCap {
		w.buf.b = bytes.Buffer{}
	}
}

// frameBuffer is the encoder's output. It refuses to grow past limit, so an
// oversized body fails as soon as it crosses the limit instead of being
// encoded whole first.
type frameBuffer struct {
	b     bytes.Buffer
	limit int
	over  bool
}

func (f *frameBuffer) reset() {
	f.b.Reset()
	f.over = false
}

func (f *frameBuffer) write(p []byte) error {
	if len(p) > f.limit-f.b.Len() {
		f.over = true
		return errFrameTooLarge
	}
	f.b.Write(p)
	return nil
}

func (f *frameBuffer) Write(p []byte) (int, error) {
	if err := f.write(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (f *frameBuffer) WriteByte(c byte) error {
	if f.b.Len() >= f.limit {
		f.over = true
		return errFrameTooLarge
	}
	return f.b.WriteByte(c)
}
