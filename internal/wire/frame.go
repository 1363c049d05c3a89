package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// The frames under the net/rpc codecs. Every request and every response is
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

// deadliner is the part of net.Conn that sets I/O deadlines.
type deadliner interface {
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
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
		return fmt.Errorf("%w: %d bytes announced, the limit is %d", ErrFrameTooLarge, n, r.max)
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
	return fmt.Errorf("%w: %s: %v", ErrMalformedFrame, part, err)
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
	if p, ok := body.(*[]byte); ok && r.bytesBody(p, rest) {
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

// bytesBody decodes rest, a body checked whole, into p if it is msgpack bytes
// or nil, as the decoder would, and reports whether it was.
func (r *frameReader) bytesBody(p *[]byte, rest []byte) bool {
	br := NewReader(rest)
	b := br.Bin()
	if !br.Done() {
		return false
	}
	switch {
	case b == nil:
		*p = nil
	case *p == nil:
		*p = append([]byte{}, b...) // empty bytes are not nil
	default:
		*p = append((*p)[:0], b...)
	}
	return true
}

// frameWriter writes frames. net/rpc already serializes writes on each side;
// the lock makes the codec safe on its own.
//
// Frames go through a buffer, which is flushed when no other frame is known
// to be on its way (see ClientCodec.Queue, ServerCodec.Queue): under load,
// one write carries the frames of many calls instead of one each.
//
// The system call is made without w.mu: the flush that finds no write under
// way takes the buffer, and writes on until it finds it empty, while others
// append frames to a second one; a flush that finds a write under way leaves
// its frames to it. Callers that held w.mu through the write queued behind
// it, on both sides of a connection, at every flush.
type frameWriter struct {
	mu          sync.Mutex
	dst         io.Writer
	pending     []byte // frames buffered, to be written in order
	spare       []byte // the other buffer, while writing is true
	writing     bool   // a flush is writing, without w.mu
	max         int
	dl          deadliner // with timeout, bounds each write
	timeout     time.Duration
	deadlineSet time.Time // when the write deadline was last moved
	buf         frameBuffer
	enc         *msgpack.Encoder
}

// frameWriteBuf is the size of the buffers that coalesce frames: once one
// holds as much, it is written at once.
const frameWriteBuf = 16 << 10

func (w *frameWriter) init(dst io.Writer, limit int) {
	w.dst = dst
	w.pending = make([]byte, 0, frameWriteBuf)
	w.spare = make([]byte, 0, frameWriteBuf)
	w.max = limit
	w.buf.limit = 4 + limit
	w.enc = msgpack.NewEncoder(&w.buf)
	w.enc.SetCustomStructTag("msgpack")
	w.enc.UseCompactInts(true)
}

// writeFrame encodes a header (with msg when response is true) and body into
// one frame and buffers it; flush sends it. Nothing is buffered when anything
// fails before the write. The caller holds w.mu.
func (w *frameWriter) writeFrame(method string, seq uint64, response bool, msg string, body any) error {
	if p, ok := body.(*[]byte); ok && p != nil {
		return w.writeBytesFrame(method, seq, response, msg, *p)
	}
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
		err = w.encodeBody(body)
	}
	if w.buf.over {
		return fmt.Errorf("%w: %s needs more than %d bytes (MaxFrameSize)", ErrFrameTooLarge, opName(method), w.max)
	}
	if err != nil {
		return fmt.Errorf("%w %s #%d: %w", errEncoding, method, seq, err)
	}
	frame := w.buf.b.Bytes()
	binary.BigEndian.PutUint32(frame, uint32(len(frame)-4))
	w.pending = append(w.pending, frame...)
	if len(w.pending) >= frameWriteBuf {
		return w.flush() // a full buffer goes at once
	}
	return nil
}

// writeBytesFrame is writeFrame for a body of bytes, which every exraft call
// and reply has: the frame, in the bytes the encoder would write, goes
// straight into the buffer to send, rather than through the encoder and a
// buffer of its own, which cost a copy and a call per value.
func (w *frameWriter) writeBytesFrame(method string, seq uint64, response bool, msg string, body []byte) error {
	fields := 2
	if response {
		fields = 3
	}
	// A frame certain to be over the limit is refused before it is
	// encoded; one close to it once encoded, when its size is known.
	if len(method)+len(msg)+len(body) > w.max {
		return fmt.Errorf("%w: %s needs more than %d bytes (MaxFrameSize)", ErrFrameTooLarge, opName(method), w.max)
	}
	start := len(w.pending)
	b := append(w.pending, 0, 0, 0, 0) // the length, patched below
	b = appendArrayLen(b, fields)
	b = appendStr(b, method)
	b = appendUint(b, seq)
	if response {
		b = appendStr(b, msg)
	}
	b = appendBin(b, body)
	n := len(b) - start - 4
	if n > w.max {
		w.pending = b[:start]
		return fmt.Errorf("%w: %s needs more than %d bytes (MaxFrameSize)", ErrFrameTooLarge, opName(method), w.max)
	}
	binary.BigEndian.PutUint32(b[start:], uint32(n))
	w.pending = b
	if len(w.pending) >= frameWriteBuf {
		return w.flush() // a full buffer goes at once
	}
	return nil
}

// encodeBody encodes body; the bytes that every exraft call carries without
// the reflection the encoder would use for them.
func (w *frameWriter) encodeBody(body any) error {
	if p, ok := body.(*[]byte); ok && p != nil {
		return w.enc.EncodeBytes(*p)
	}
	return w.enc.Encode(body)
}

// flush writes what is buffered, or leaves it to the flush that is writing.
// The caller holds w.mu, which flush lets go of while it writes.
func (w *frameWriter) flush() error {
	if w.writing || len(w.pending) == 0 {
		return nil
	}
	w.writing = true
	defer func() { w.writing = false }()
	for len(w.pending) > 0 {
		out := w.pending
		w.pending = w.spare[:0]
		w.armWrite()
		w.mu.Unlock()
		_, err := w.dst.Write(out)
		w.mu.Lock()
		if cap(out) > frameKeepCap {
			out = make([]byte, 0, frameWriteBuf)
		}
		w.spare = out[:0]
		if err != nil {
			return err
		}
	}
	return nil
}

// armWrite moves the write deadline forward before a write. Moving it costs
// more than reading the clock, so it moves only once half the timeout has
// passed: a write may then stall for between half the timeout and all of it.
func (w *frameWriter) armWrite() {
	if w.dl == nil {
		return
	}
	if now := time.Now(); now.After(w.deadlineSet.Add(w.timeout / 2)) {
		w.dl.SetWriteDeadline(now.Add(w.timeout))
		w.deadlineSet = now
	}
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
		return ErrFrameTooLarge
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
		return ErrFrameTooLarge
	}
	return f.b.WriteByte(c)
}
