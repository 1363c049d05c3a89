package wire

// Frames that are malformed, garbage, too large or built to make the
// decoder allocate or recurse without bound: each must fail alone, at the
// cost of its own bytes, and leave the stream in step wherever it can.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/rpc"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestCodecMalformedFrames(t *testing.T) {
	body := codecMarshal(t, codecTestArgs(1))
	hdr := codecMarshal(t, []any{"CodecTest.Echo", 1})
	cases := []struct {
		name     string
		frame    []byte
		inHeader bool // the header read fails, else the body read
	}{
		{"empty frame", codecRawFrame(), true},
		{"header not an array", codecRawFrame(codecMarshal(t, "CodecTest.Echo"), body), true},
		{"header too short", codecRawFrame(codecMarshal(t, []any{"CodecTest.Echo"}), body), true},
		{"header too long", codecRawFrame(codecMarshal(t, []any{"CodecTest.Echo", 1, "x"}), body), true},
		{"method not a string", codecRawFrame(codecMarshal(t, []any{7, 1}), body), true},
		{"method longer than the frame", codecRawFrame([]byte{0x92, 0xdb, 0x7f, 0xff, 0xff, 0xff, 'a'}), true},
		{"seq not a number", codecRawFrame(codecMarshal(t, []any{"CodecTest.Echo", "1"}), body), true},
		{"header cut short", codecRawFrame([]byte{0x92, 0xa3, 'a'}), true},
		{"no body", codecRawFrame(hdr), false},
		{"trailing bytes", codecRawFrame(hdr, body, []byte{0}), false},
		{"two bodies", codecRawFrame(hdr, body, body), false},
		{"body cut short", codecRawFrame(hdr, body[:len(body)-1]), false},
		{"unused code", codecRawFrame(hdr, []byte{0xc1}), false},
		{"wrong body type", codecRawFrame(hdr, codecMarshal(t, "not a struct")), false},
		{"field of the wrong type", codecRawFrame(hdr, codecMarshal(t, map[string]any{"N": "x"})), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A good frame follows: after a bad body the stream is still in step.
			next := codecRequestFrames(t, codecTestArgs(2))
			c := NewServerCodec(newCodecTestConn(append(bytes.Clone(tc.frame), next...)), ServerConfig{})
			var req rpc.Request
			err := c.ReadRequestHeader(&req)
			if tc.inHeader {
				if !errors.Is(err, ErrMalformedFrame) {
					t.Fatalf("header: got %v, want an ErrMalformedFrame", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("header: %v", err)
			}
			var a CodecTestArgs
			if err := c.ReadRequestBody(&a); !errors.Is(err, ErrMalformedFrame) {
				t.Fatalf("body: got %v, want an ErrMalformedFrame", err)
			}
			if err := c.ReadRequestHeader(&req); err != nil {
				t.Fatalf("next header: %v", err)
			}
			var b CodecTestArgs
			if err := c.ReadRequestBody(&b); err != nil || b.N != 2 {
				t.Fatalf("next body: %+v, %v", b, err)
			}
		})
	}
}

// A request body that does not decode gets an error response, and the
// connection serves the next call: frames keep the stream in step.
func TestCodecBadBodyKeepsConnection(t *testing.T) {
	addr := codecServeTCP(t, 0, nil)
	client, _ := codecDialTCP(t, addr, 0)
	var reply CodecTestReply
	err := codecCall(client, "CodecTest.Echo", "a string, not CodecTestArgs", &reply)
	var se rpc.ServerError
	if !errors.As(err, &se) || !strings.Contains(string(se), ErrMalformedFrame.Error()) {
		t.Fatalf("got %v, want a ServerError about a malformed frame", err)
	}
	if err := codecCall(client, "CodecTest.Echo", codecTestArgs(3), &reply); err != nil || reply.Echo.N != 3 {
		t.Fatalf("next call: %+v, %v", reply, err)
	}
}

func TestCodecGarbageNeverPanics(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	good := append(codecRequestFrames(t, codecTestArgs(1), nil), codecResponseFrames(t, &CodecTestReply{Sum: 1}, "x")...)
	for i := 0; i < 2000; i++ {
		var in []byte
		switch i % 3 {
		case 0: // noise
			in = make([]byte, rng.Intn(64))
			rng.Read(in)
		case 1: // a plausible length, then noise
			in = binary.BigEndian.AppendUint32(nil, uint32(rng.Intn(48)))
			noise := make([]byte, rng.Intn(64))
			rng.Read(noise)
			in = append(in, noise...)
		default: // good frames with a few bytes flipped
			in = bytes.Clone(good)
			for j := 0; j < 1+rng.Intn(4); j++ {
				in[rng.Intn(len(in))] ^= byte(1 + rng.Intn(255))
			}
		}
		codecDrainServer(t, in, 1<<16)
		codecDrainClient(t, in, 1<<16)
	}
}

// codecDrainServer reads requests from in as net/rpc would, until an error
// ends the connection.
func codecDrainServer(t testing.TB, in []byte, maxFrame int) {
	c := NewServerCodec(newCodecTestConn(in), ServerConfig{MaxFrame: maxFrame, OnBody: func(string, any) {}})
	for i := 0; ; i++ {
		var req rpc.Request
		if err := c.ReadRequestHeader(&req); err != nil {
			return
		}
		if cap(c.r.buf) > maxFrame {
			t.Fatalf("frame buffer of %d bytes, limit %d", cap(c.r.buf), maxFrame)
		}
		var err error
		switch i % 3 {
		case 0:
			err = c.ReadRequestBody(new(CodecTestArgs))
		case 1:
			err = c.ReadRequestBody(new(any))
		default:
			err = c.ReadRequestBody(nil)
		}
		_ = err // net/rpc answers a bad body and goes on reading
	}
}

// codecDrainClient reads responses from in as net/rpc would, until an error.
func codecDrainClient(t testing.TB, in []byte, maxFrame int) {
	c := NewClientCodec(newCodecTestConn(in), ClientConfig{MaxFrame: maxFrame})
	for i := 0; ; i++ {
		var resp rpc.Response
		if err := c.ReadResponseHeader(&resp); err != nil {
			return
		}
		if cap(c.r.buf) > maxFrame {
			t.Fatalf("frame buffer of %d bytes, limit %d", cap(c.r.buf), maxFrame)
		}
		var body any
		switch {
		case resp.Error != "":
		case i%2 == 0:
			body = new(CodecTestReply)
		default:
			body = new(any)
		}
		if err := c.ReadResponseBody(body); err != nil {
			return // net/rpc's client gives up on the connection
		}
	}
}

// codecHeapGrowth returns how many bytes f allocates in total.
func codecHeapGrowth(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestCodecFrameTooLarge(t *testing.T) {
	for _, announced := range []uint32{DefaultMaxFrame + 1, 1 << 31, 1<<32 - 1} {
		in := binary.BigEndian.AppendUint32(nil, announced)
		in = append(in, 0x92, 0xa1, 'x', 1) // data that must not be read

		sconn := newCodecTestConn(in)
		s := NewServerCodec(sconn, ServerConfig{})
		cconn := newCodecTestConn(in)
		c := NewClientCodec(cconn, ClientConfig{})

		var serr, cerr error
		grew := codecHeapGrowth(func() {
			serr = s.ReadRequestHeader(new(rpc.Request))
			cerr = c.ReadResponseHeader(new(rpc.Response))
		})
		if !errors.Is(serr, ErrFrameTooLarge) || !strings.Contains(serr.Error(), fmt.Sprint(announced)) {
			t.Fatalf("server, %d bytes announced: got %v, want ErrFrameTooLarge with the size", announced, serr)
		}
		if !errors.Is(cerr, ErrFrameTooLarge) {
			t.Fatalf("client, %d bytes announced: got %v, want ErrFrameTooLarge", announced, cerr)
		}
		// Generous for what other goroutines of the test binary may allocate
		// meanwhile; far below what the announcement would cost.
		if grew > 4<<20 {
			t.Fatalf("%d bytes announced: the reads allocated %d bytes", announced, grew)
		}
		// The stream is out of step for good.
		if err := s.ReadRequestHeader(new(rpc.Request)); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("server, again: %v", err)
		}

		allocs := testing.AllocsPerRun(50, func() {
			s.r.err = nil
			sconn.in.Reset(in)
			s.r.br.Reset(sconn)
			if err := s.ReadRequestHeader(new(rpc.Request)); !errors.Is(err, ErrFrameTooLarge) {
				t.Fatal(err)
			}
		})
		if allocs > 8 {
			t.Fatalf("%d bytes announced: %.0f allocations per read, want only the error's", announced, allocs)
		}
	}

	// Within the limit, a frame that announces much and then ends costs
	// about what arrived, not what was announced.
	in := binary.BigEndian.AppendUint32(nil, DefaultMaxFrame)
	in = append(in, make([]byte, 1000)...)
	var err error
	grew := codecHeapGrowth(func() {
		err = NewServerCodec(newCodecTestConn(in), ServerConfig{}).ReadRequestHeader(new(rpc.Request))
	})
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("announced %d bytes, sent 1000: got %v, want io.ErrUnexpectedEOF", DefaultMaxFrame, err)
	}
	if grew > 4<<20 {
		t.Fatalf("announced %d bytes, sent 1000: allocated %d", DefaultMaxFrame, grew)
	}
}

// The server hangs up on a peer that announces a frame over the limit.
func TestCodecServerDropsOversizedRequest(t *testing.T) {
	addr := codecServeTCP(t, 1024, nil)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(binary.BigEndian.AppendUint32(nil, 1025)); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(codecTestWait))
	if n, err := conn.Read(make([]byte, 16)); err != io.EOF {
		t.Fatalf("read after an oversized frame: %d bytes, %v; want the server to close", n, err)
	}
}

// A response frame over the client's limit fails the pending call with
// ErrFrameTooLarge, which net/rpc passes through unchanged.
func TestCodecClientDropsOversizedResponse(t *testing.T) {
	cconn, sconn := net.Pipe()
	defer sconn.Close()
	client := rpc.NewClientWithCodec(NewClientCodec(cconn, ClientConfig{MaxFrame: 1024}))
	defer client.Close()

	served := make(chan error, 1)
	go func() {
		s := NewServerCodec(sconn, ServerConfig{})
		var req rpc.Request
		if err := s.ReadRequestHeader(&req); err != nil {
			served <- err
			return
		}
		if err := s.ReadRequestBody(nil); err != nil {
			served <- err
			return
		}
		_, err := sconn.Write(binary.BigEndian.AppendUint32(nil, 1<<32-1))
		served <- err
	}()
	err := codecCall(client, "CodecTest.Echo", codecTestArgs(1), new(CodecTestReply))
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

// codecCountingConn counts the bytes written through it.
type codecCountingConn struct {
	net.Conn
	n atomic.Int64
}

func (c *codecCountingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func TestCodecWriteTooLarge(t *testing.T) {
	addr := codecServeTCP(t, 4096, nil)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cc := &codecCountingConn{Conn: conn}
	client := rpc.NewClientWithCodec(NewClientCodec(cc, ClientConfig{MaxFrame: 4096}))
	defer client.Close()

	var reply CodecTestReply
	if err := codecCall(client, "CodecTest.Echo", codecTestArgs(1), &reply); err != nil {
		t.Fatal(err)
	}
	sent := cc.n.Load()
	big := codecTestArgs(2)
	big.Blob = make([]byte, 8192)
	err = codecCall(client, "CodecTest.Echo", big, &reply)
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized request: got %v, want ErrFrameTooLarge", err)
	}
	if n := cc.n.Load(); n != sent {
		t.Fatalf("the oversized request wrote %d bytes, want none", n-sent)
	}
	if err := codecCall(client, "CodecTest.Echo", codecTestArgs(3), &reply); err != nil || reply.Echo.N != 3 {
		t.Fatalf("next call: %+v, %v", reply, err)
	}

	// A reply over the server's limit becomes an error response rather than
	// a call that never ends.
	var blob []byte
	err = codecCall(client, "CodecTest.Blob", 8192, &blob)
	var se rpc.ServerError
	if !errors.As(err, &se) || !strings.HasPrefix(string(se), ErrFrameTooLarge.Error()) {
		t.Fatalf("oversized reply: got %v, want a ServerError starting with %q", err, ErrFrameTooLarge)
	}
	if err := codecCall(client, "CodecTest.Blob", 100, &blob); err != nil || len(blob) != 100 {
		t.Fatalf("next reply: %d bytes, %v", len(blob), err)
	}
}

func TestCodecFrameLimitIsExact(t *testing.T) {
	// Find the size of a frame, then check that a limit of exactly that size
	// passes it both ways and one byte less refuses it.
	frame := codecRequestFrames(t, codecTestArgs(1))
	size := len(frame) - 4
	for _, limit := range []int{size, size - 1} {
		conn := newCodecTestConn(frame)
		err := NewClientCodec(conn, ClientConfig{MaxFrame: limit}).WriteRequest(&rpc.Request{ServiceMethod: "CodecTest.Echo"}, codecTestArgs(1))
		rerr := NewServerCodec(conn, ServerConfig{MaxFrame: limit}).ReadRequestHeader(new(rpc.Request))
		if limit == size && (err != nil || rerr != nil) {
			t.Fatalf("limit %d = frame size: write %v, read %v", limit, err, rerr)
		}
		if limit < size && (!errors.Is(err, ErrFrameTooLarge) || !errors.Is(rerr, ErrFrameTooLarge)) {
			t.Fatalf("limit %d < frame size %d: write %v, read %v", limit, size, err, rerr)
		}
	}
}

// Big bodies that announce more elements than the frame holds, or nest
// deeper than the stack should go, fail without costing memory or the process.
func TestCodecHostileBodies(t *testing.T) {
	hdr := codecMarshal(t, []any{"CodecTest.Echo", 1})
	deep := bytes.Repeat([]byte{0x91}, 100000)
	deep = append(deep, 0xc0)
	fine := bytes.Repeat([]byte{0x91}, frameMaxDepth)
	fine = append(fine, 0xc0)
	cases := []struct {
		name string
		body []byte
		into func() any
		ok   bool
	}{
		{"4G items into a slice of structs", append([]byte{0x85, 0xa5, 'I', 't', 'e', 'm', 's', 0xdd, 0xff, 0xff, 0xff, 0xff}, bytes.Repeat([]byte{0x80}, 1000)...), func() any { return new(CodecTestArgs) }, false},
		{"4G items into an interface", append([]byte{0xdd, 0xff, 0xff, 0xff, 0xff}, bytes.Repeat([]byte{0xc0}, 1000)...), func() any { return new(any) }, false},
		{"4G map entries", append([]byte{0xdf, 0xff, 0xff, 0xff, 0xff}, bytes.Repeat([]byte{0xc0}, 1000)...), func() any { return new(any) }, false},
		{"4G string", append([]byte{0x81, 0xa4, 'T', 'e', 'x', 't', 0xdb, 0xff, 0xff, 0xff, 0xff}, make([]byte, 1000)...), func() any { return new(CodecTestArgs) }, false},
		{"4G bytes", append([]byte{0x81, 0xa4, 'B', 'l', 'o', 'b', 0xc6, 0xff, 0xff, 0xff, 0xff}, make([]byte, 1000)...), func() any { return new(CodecTestArgs) }, false},
		{"100000 levels", deep, func() any { return new(any) }, false},
		{"frameMaxDepth levels", fine, func() any { return new(any) }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := codecRawFrame(hdr, tc.body)
			c := NewServerCodec(newCodecTestConn(in), ServerConfig{})
			var err error
			grew := codecHeapGrowth(func() {
				if err = c.ReadRequestHeader(new(rpc.Request)); err == nil {
					err = c.ReadRequestBody(tc.into())
				}
			})
			if tc.ok != (err == nil) {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
			if grew > 8<<20 {
				t.Fatalf("allocated %d bytes for a frame of %d", grew, len(in))
			}
		})
	}
}

func TestCodecBuffersShrink(t *testing.T) {
	big := codecTestArgs(1)
	big.Blob = make([]byte, 2*frameKeepCap)
	in := codecRequestFrames(t, big, codecTestArgs(2), codecTestArgs(3))
	c := NewServerCodec(newCodecTestConn(in), ServerConfig{})
	var req rpc.Request
	var a CodecTestArgs
	if err := c.ReadRequestHeader(&req); err != nil {
		t.Fatal(err)
	}
	if err := c.ReadRequestBody(&a); err != nil || len(a.Blob) != len(big.Blob) {
		t.Fatalf("big body: %d bytes, %v", len(a.Blob), err)
	}
	if cap(c.r.buf) > frameKeepCap {
		t.Fatalf("read buffer kept %d bytes after a big frame", cap(c.r.buf))
	}
	// Small frames reuse one buffer.
	if err := c.ReadRequestHeader(&req); err != nil {
		t.Fatal(err)
	}
	if err := c.ReadRequestBody(&a); err != nil {
		t.Fatal(err)
	}
	first := cap(c.r.buf)
	if err := c.ReadRequestHeader(&req); err != nil {
		t.Fatal(err)
	}
	if err := c.ReadRequestBody(&a); err != nil || a.N != 3 {
		t.Fatal(a.N, err)
	}
	if cap(c.r.buf) != first || first == 0 {
		t.Fatalf("small frames: buffer capacity %d then %d", first, cap(c.r.buf))
	}

	w := NewClientCodec(newCodecTestConn(nil), ClientConfig{})
	if err := w.WriteRequest(&rpc.Request{ServiceMethod: "CodecTest.Echo"}, big); err != nil {
		t.Fatal(err)
	}
	if w.w.buf.b.Cap() > frameKeepCap {
		t.Fatalf("write buffer kept %d bytes after a big frame", w.w.buf.b.Cap())
	}
}
