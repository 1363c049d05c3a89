package exraft

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/rpc"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// net/rpc only serves methods whose argument and reply types are exported.

type CodecTestItem struct {
	Name string
	Data []byte
	N    uint64
}

type CodecTestArgs struct {
	N     uint64
	Text  string
	Blob  []byte
	Items []CodecTestItem
	Fail  string // the handler returns an error with this text
}

type CodecTestReply struct {
	Echo CodecTestArgs
	Sum  uint64
}

type codecTestService struct{}

func (codecTestService) Echo(args *CodecTestArgs, reply *CodecTestReply) error {
	if args.Fail != "" {
		return errors.New(args.Fail)
	}
	reply.Echo = *args
	reply.Sum = args.N
	for _, it := range args.Items {
		reply.Sum += it.N
	}
	return nil
}

// Blob replies with n bytes, to make replies of a chosen size.
func (codecTestService) Blob(n int, reply *[]byte) error {
	*reply = bytes.Repeat([]byte{'b'}, n)
	return nil
}

const codecTestWait = 20 * time.Second

// codecServeTCP serves codecTestService on a loopback listener with the
// msgpack codec and returns its address.
func codecServeTCP(t testing.TB, maxFrame int, onBody func(string, any)) string {
	t.Helper()
	srv := rpc.NewServer()
	if err := srv.RegisterName("CodecTest", codecTestService{}); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				srv.ServeCodec(newServerCodec(c, maxFrame, onBody))
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String()
}

func codecDialTCP(t testing.TB, addr string, maxFrame int) (*rpc.Client, net.Conn) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	client := rpc.NewClientWithCodec(newClientCodec(conn, maxFrame))
	t.Cleanup(func() { client.Close() })
	return client, conn
}

// codecCall makes a call that fails with an error of its own if no answer
// comes in time (it may run on goroutines other than the test's).
func codecCall(client *rpc.Client, method string, args, reply any) error {
	call := client.Go(method, args, reply, make(chan *rpc.Call, 1))
	select {
	case <-call.Done:
		return call.Error
	case <-time.After(codecTestWait):
		return fmt.Errorf("%s: no answer within %v", method, codecTestWait)
	}
}

func codecTestArgs(n uint64) *CodecTestArgs {
	return &CodecTestArgs{
		N:    n,
		Text: fmt.Sprintf("call %d ünïcödé", n),
		Blob: []byte{0, 1, 2, byte(n), 0xff},
		Items: []CodecTestItem{
			{Name: "a", Data: []byte("x"), N: 1},
			{Name: "b", Data: []byte{0}, N: 1 << 40},
		},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	addr := codecServeTCP(t, 0, nil)
	client, _ := codecDialTCP(t, addr, 0)

	const workers, calls = 16, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers*calls)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < calls; i++ {
				args := codecTestArgs(uint64(w*calls + i))
				var reply CodecTestReply
				if err := codecCall(client, "CodecTest.Echo", args, &reply); err != nil {
					errs <- err
					return
				}
				if !reflect.DeepEqual(reply.Echo, *args) {
					errs <- fmt.Errorf("echo: got %+v, want %+v", reply.Echo, *args)
					return
				}
				if want := args.N + 1 + 1<<40; reply.Sum != want {
					errs <- fmt.Errorf("sum: got %d, want %d", reply.Sum, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// A handler's error arrives as its text; the connection goes on.
	var reply CodecTestReply
	err := codecCall(client, "CodecTest.Echo", &CodecTestArgs{Fail: "no such key: ✗"}, &reply)
	var se rpc.ServerError
	if !errors.As(err, &se) || string(se) != "no such key: ✗" {
		t.Fatalf("handler error: got %#v, want rpc.ServerError(%q)", err, "no such key: ✗")
	}
	if err := codecCall(client, "CodecTest.Echo", codecTestArgs(7), &reply); err != nil || reply.Sum != 8+1<<40 {
		t.Fatalf("call after an error: %v, sum %d", err, reply.Sum)
	}

	// So does net/rpc's own error for an unknown method.
	err = codecCall(client, "CodecTest.Nope", codecTestArgs(1), &reply)
	if !errors.As(err, &se) || !strings.Contains(string(se), "can't find method") {
		t.Fatalf("unknown method: got %v", err)
	}
}

func TestCodecOnBodyInArrivalOrder(t *testing.T) {
	const calls = 1000
	var (
		mu      sync.Mutex
		seen    []uint64
		methods = map[string]int{}
	)
	onBody := func(method string, body any) {
		mu.Lock()
		defer mu.Unlock()
		methods[method]++
		if a, ok := body.(*CodecTestArgs); ok {
			seen = append(seen, a.N)
		}
	}
	addr := codecServeTCP(t, 0, onBody)
	client, _ := codecDialTCP(t, addr, 0)

	done := make(chan *rpc.Call, calls)
	for i := 0; i < calls; i++ {
		client.Go("CodecTest.Echo", &CodecTestArgs{N: uint64(i)}, new(CodecTestReply), done)
	}
	deadline := time.After(codecTestWait)
	for i := 0; i < calls; i++ {
		select {
		case call := <-done:
			if call.Error != nil {
				t.Fatal(call.Error)
			}
		case <-deadline:
			t.Fatalf("only %d of %d calls answered within %v", i, calls, codecTestWait)
		}
	}
	// A body net/rpc discards (unknown service) is not handed on.
	var se rpc.ServerError
	if err := codecCall(client, "Nobody.Echo", &CodecTestArgs{N: 1 << 60}, new(CodecTestReply)); !errors.As(err, &se) {
		t.Fatalf("unknown service: got %v, want a ServerError", err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(seen) != calls {
		t.Fatalf("onBody saw %d bodies, want %d", len(seen), calls)
	}
	for i, n := range seen {
		if n != uint64(i) {
			t.Fatalf("onBody saw %d at position %d: bodies were reordered", n, i)
		}
	}
	if len(methods) != 1 || methods["CodecTest.Echo"] != calls {
		t.Fatalf("onBody methods: %v", methods)
	}
}

// codecTestConn is a connection that reads from a fixed input and records
// what is written.
type codecTestConn struct {
	in     *bytes.Reader
	mu     sync.Mutex
	out    bytes.Buffer
	closes atomic.Int32
}

func newCodecTestConn(in []byte) *codecTestConn { return &codecTestConn{in: bytes.NewReader(in)} }

func (c *codecTestConn) Read(p []byte) (int, error) { return c.in.Read(p) }
func (c *codecTestConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}
func (c *codecTestConn) Close() error { c.closes.Add(1); return nil }

func (c *codecTestConn) written() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Bytes())
}

// codecRequestFrames returns the frames a client codec writes for these calls.
func codecRequestFrames(t testing.TB, bodies ...any) []byte {
	t.Helper()
	conn := newCodecTestConn(nil)
	c := newClientCodec(conn, 0)
	for i, b := range bodies {
		if err := c.WriteRequest(&rpc.Request{ServiceMethod: "CodecTest.Echo", Seq: uint64(i)}, b); err != nil {
			t.Fatal(err)
		}
	}
	return conn.written()
}

// codecResponseFrames returns the frames a server codec writes for these replies;
// a string reply is sent as an error response.
func codecResponseFrames(t testing.TB, replies ...any) []byte {
	t.Helper()
	conn := newCodecTestConn(nil)
	c := newServerCodec(conn, 0, nil)
	for i, r := range replies {
		resp := &rpc.Response{ServiceMethod: "CodecTest.Echo", Seq: uint64(i)}
		if s, ok := r.(string); ok {
			resp.Error, r = s, struct{}{}
		}
		if err := c.WriteResponse(resp, r); err != nil {
			t.Fatal(err)
		}
	}
	return conn.written()
}

// codecRawFrame frames content by hand.
func codecRawFrame(content ...[]byte) []byte {
	body := bytes.Join(content, nil)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

func codecMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCodecDirectRoundTrip(t *testing.T) {
	in := codecRequestFrames(t, codecTestArgs(1), nil, codecTestArgs(3))
	var got []any
	c := newServerCodec(newCodecTestConn(in), 0, func(_ string, b any) { got = append(got, b) })

	var req rpc.Request
	var a CodecTestArgs
	if err := c.ReadRequestHeader(&req); err != nil || req.Seq != 0 || req.ServiceMethod != "CodecTest.Echo" {
		t.Fatalf("header: %+v, %v", req, err)
	}
	if err := c.ReadRequestBody(&a); err != nil || !reflect.DeepEqual(&a, codecTestArgs(1)) {
		t.Fatalf("body: %+v, %v", a, err)
	}
	if len(got) != 1 || got[0] != any(&a) {
		t.Fatalf("onBody must get the pointer net/rpc passed: got %v", got)
	}
	// A nil body on the wire decodes into a struct as its zero value.
	var b CodecTestArgs
	if err := c.ReadRequestHeader(&req); err != nil || req.Seq != 1 {
		t.Fatalf("header: %+v, %v", req, err)
	}
	if err := c.ReadRequestBody(&b); err != nil || !reflect.DeepEqual(b, CodecTestArgs{}) {
		t.Fatalf("nil body: %+v, %v", b, err)
	}
	// A nil target skips the body and is not handed to onBody.
	if err := c.ReadRequestHeader(&req); err != nil || req.Seq != 2 {
		t.Fatalf("header: %+v, %v", req, err)
	}
	if err := c.ReadRequestBody(nil); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("onBody calls: %d, want 2", len(got))
	}
	if err := c.ReadRequestHeader(&req); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}

	// Responses, including the error response net/rpc sends with an empty
	// struct body, which the client discards with a nil target.
	in = codecResponseFrames(t, &CodecTestReply{Sum: 5}, "boom", &CodecTestReply{Sum: 6})
	cc := newClientCodec(newCodecTestConn(in), 0)
	var resp rpc.Response
	var r CodecTestReply
	if err := cc.ReadResponseHeader(&resp); err != nil || resp.Seq != 0 || resp.Error != "" {
		t.Fatalf("response header: %+v, %v", resp, err)
	}
	if err := cc.ReadResponseBody(&r); err != nil || r.Sum != 5 {
		t.Fatalf("response body: %+v, %v", r, err)
	}
	if err := cc.ReadResponseHeader(&resp); err != nil || resp.Seq != 1 || resp.Error != "boom" || resp.ServiceMethod != "CodecTest.Echo" {
		t.Fatalf("error response header: %+v, %v", resp, err)
	}
	if err := cc.ReadResponseBody(nil); err != nil {
		t.Fatalf("error response body: %v", err)
	}
	if err := cc.ReadResponseHeader(&resp); err != nil || resp.Seq != 2 || resp.Error != "" {
		t.Fatalf("response header: %+v, %v", resp, err)
	}
	if err := cc.ReadResponseBody(&r); err != nil || r.Sum != 6 {
		t.Fatalf("response body: %+v, %v", r, err)
	}
	if err := cc.ReadResponseHeader(&resp); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
}

func TestCodecEOF(t *testing.T) {
	type reads struct{ header, body func() error }
	sides := []struct {
		name string
		good []byte // one frame
		open func(in []byte) reads
	}{
		{"server", codecRequestFrames(t, codecTestArgs(1)), func(in []byte) reads {
			c := newServerCodec(newCodecTestConn(in), 0, nil)
			return reads{
				func() error { return c.ReadRequestHeader(new(rpc.Request)) },
				func() error { return c.ReadRequestBody(new(CodecTestArgs)) },
			}
		}},
		{"client", codecResponseFrames(t, &CodecTestReply{Sum: 1}), func(in []byte) reads {
			c := newClientCodec(newCodecTestConn(in), 0)
			return reads{
				func() error { return c.ReadResponseHeader(new(rpc.Response)) },
				func() error { return c.ReadResponseBody(new(CodecTestReply)) },
			}
		}},
	}
	cases := []struct {
		name  string
		after []byte              // what follows one good frame
		tail  func([]byte) []byte // or, computed from the good frame
		want  error
	}{
		{name: "clean", want: io.EOF},
		{name: "in the length", after: []byte{0, 0}, want: io.ErrUnexpectedEOF},
		{name: "after the length", after: []byte{0, 0, 0, 9}, want: io.ErrUnexpectedEOF},
		{name: "in the frame", tail: func(g []byte) []byte { return g[:len(g)-1] }, want: io.ErrUnexpectedEOF},
	}
	for _, side := range sides {
		for _, tc := range cases {
			t.Run(side.name+"/"+tc.name, func(t *testing.T) {
				if r := side.open(nil); r.header() != io.EOF {
					t.Fatal("no input: want io.EOF")
				}
				in := append(bytes.Clone(side.good), tc.after...)
				if tc.tail != nil {
					in = append(in, tc.tail(side.good)...)
				}
				r := side.open(in)
				if err := r.header(); err != nil {
					t.Fatalf("first header: %v", err)
				}
				if err := r.body(); err != nil {
					t.Fatalf("first body: %v", err)
				}
				// net/rpc compares with ==: a wrapped io.EOF would count as an error.
				for i := 0; i < 2; i++ {
					if err := r.header(); err != tc.want {
						t.Fatalf("read %d: got %v, want exactly %v", i, err, tc.want)
					}
				}
			})
		}
	}
}

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
			c := newServerCodec(newCodecTestConn(append(bytes.Clone(tc.frame), next...)), 0, nil)
			var req rpc.Request
			err := c.ReadRequestHeader(&req)
			if tc.inHeader {
				if !errors.Is(err, errMalformedFrame) {
					t.Fatalf("header: got %v, want an errMalformedFrame", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("header: %v", err)
			}
			var a CodecTestArgs
			if err := c.ReadRequestBody(&a); !errors.Is(err, errMalformedFrame) {
				t.Fatalf("body: got %v, want an errMalformedFrame", err)
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
	if !errors.As(err, &se) || !strings.Contains(string(se), errMalformedFrame.Error()) {
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
	c := newServerCodec(newCodecTestConn(in), maxFrame, func(string, any) {})
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
	c := newClientCodec(newCodecTestConn(in), maxFrame)
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
	for _, announced := range []uint32{defaultMaxFrame + 1, 1 << 31, 1<<32 - 1} {
		in := binary.BigEndian.AppendUint32(nil, announced)
		in = append(in, 0x92, 0xa1, 'x', 1) // data that must not be read

		sconn := newCodecTestConn(in)
		s := newServerCodec(sconn, 0, nil)
		cconn := newCodecTestConn(in)
		c := newClientCodec(cconn, 0)

		var serr, cerr error
		grew := codecHeapGrowth(func() {
			serr = s.ReadRequestHeader(new(rpc.Request))
			cerr = c.ReadResponseHeader(new(rpc.Response))
		})
		if !errors.Is(serr, errFrameTooLarge) || !strings.Contains(serr.Error(), fmt.Sprint(announced)) {
			t.Fatalf("server, %d bytes announced: got %v, want errFrameTooLarge with the size", announced, serr)
		}
		if !errors.Is(cerr, errFrameTooLarge) {
			t.Fatalf("client, %d bytes announced: got %v, want errFrameTooLarge", announced, cerr)
		}
		// Generous for what other goroutines of the test binary may allocate
		// meanwhile; far below what the announcement would cost.
		if grew > 4<<20 {
			t.Fatalf("%d bytes announced: the reads allocated %d bytes", announced, grew)
		}
		// The stream is out of step for good.
		if err := s.ReadRequestHeader(new(rpc.Request)); !errors.Is(err, errFrameTooLarge) {
			t.Fatalf("server, again: %v", err)
		}

		allocs := testing.AllocsPerRun(50, func() {
			s.r.err = nil
			sconn.in.Reset(in)
			s.r.br.Reset(sconn)
			if err := s.ReadRequestHeader(new(rpc.Request)); !errors.Is(err, errFrameTooLarge) {
				t.Fatal(err)
			}
		})
		if allocs > 8 {
			t.Fatalf("%d bytes announced: %.0f allocations per read, want only the error's", announced, allocs)
		}
	}

	// Within the limit, a frame that announces much and then ends costs
	// about what arrived, not what was announced.
	in := binary.BigEndian.AppendUint32(nil, defaultMaxFrame)
	in = append(in, make([]byte, 1000)...)
	var err error
	grew := codecHeapGrowth(func() {
		err = newServerCodec(newCodecTestConn(in), 0, nil).ReadRequestHeader(new(rpc.Request))
	})
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("announced %d bytes, sent 1000: got %v, want io.ErrUnexpectedEOF", defaultMaxFrame, err)
	}
	if grew > 4<<20 {
		t.Fatalf("announced %d bytes, sent 1000: allocated %d", defaultMaxFrame, grew)
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
// errFrameTooLarge, which net/rpc passes through unchanged.
func TestCodecClientDropsOversizedResponse(t *testing.T) {
	cconn, sconn := net.Pipe()
	defer sconn.Close()
	client := rpc.NewClientWithCodec(newClientCodec(cconn, 1024))
	defer client.Close()

	served := make(chan error, 1)
	go func() {
		s := newServerCodec(sconn, 0, nil)
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
	if !errors.Is(err, errFrameTooLarge) {
		t.Fatalf("got %v, want errFrameTooLarge", err)
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
	client := rpc.NewClientWithCodec(newClientCodec(cc, 4096))
	defer client.Close()

	var reply CodecTestReply
	if err := codecCall(client, "CodecTest.Echo", codecTestArgs(1), &reply); err != nil {
		t.Fatal(err)
	}
	sent := cc.n.Load()
	big := codecTestArgs(2)
	big.Blob = make([]byte, 8192)
	err = codecCall(client, "CodecTest.Echo", big, &reply)
	if !errors.Is(err, errFrameTooLarge) {
		t.Fatalf("oversized request: got %v, want errFrameTooLarge", err)
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
	if !errors.As(err, &se) || !strings.HasPrefix(string(se), errFrameTooLarge.Error()) {
		t.Fatalf("oversized reply: got %v, want a ServerError starting with %q", err, errFrameTooLarge)
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
		err := newClientCodec(conn, limit).WriteRequest(&rpc.Request{ServiceMethod: "CodecTest.Echo"}, codecTestArgs(1))
		rerr := newServerCodec(conn, limit, nil).ReadRequestHeader(new(rpc.Request))
		if limit == size && (err != nil || rerr != nil) {
			t.Fatalf("limit %d = frame size: write %v, read %v", limit, err, rerr)
		}
		if limit < size && (!errors.Is(err, errFrameTooLarge) || !errors.Is(rerr, errFrameTooLarge)) {
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
			c := newServerCodec(newCodecTestConn(in), 0, nil)
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
	c := newServerCodec(newCodecTestConn(in), 0, nil)
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

	w := newClientCodec(newCodecTestConn(nil), 0)
	if err := w.WriteRequest(&rpc.Request{ServiceMethod: "CodecTest.Echo"}, big); err != nil {
		t.Fatal(err)
	}
	if w.w.buf.b.Cap() > frameKeepCap {
		t.Fatalf("write buffer kept %d bytes after a big frame", w.w.buf.b.Cap())
	}
}

// The codec's own lock keeps frames whole when used without net/rpc.
func TestCodecConcurrentWriters(t *testing.T) {
	cconn, sconn := net.Pipe()
	defer sconn.Close()
	c := newClientCodec(cconn, 0)
	defer c.Close()
	const writers, each = 8, 100
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				seq := uint64(w*each + i)
				if err := c.WriteRequest(&rpc.Request{ServiceMethod: "CodecTest.Echo", Seq: seq}, codecTestArgs(seq)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	s := newServerCodec(sconn, 0, nil)
	seen := make(map[uint64]bool)
	sconn.SetReadDeadline(time.Now().Add(codecTestWait))
	for len(seen) < writers*each {
		var req rpc.Request
		var a CodecTestArgs
		if err := s.ReadRequestHeader(&req); err != nil {
			t.Fatal(err)
		}
		if err := s.ReadRequestBody(&a); err != nil {
			t.Fatal(err)
		}
		if a.N != req.Seq || !reflect.DeepEqual(&a, codecTestArgs(req.Seq)) || seen[req.Seq] {
			t.Fatalf("frame %d: body %+v", req.Seq, a)
		}
		seen[req.Seq] = true
	}
	wg.Wait()
}

func TestCodecCloseIsIdempotent(t *testing.T) {
	conn := newCodecTestConn(nil)
	s := newServerCodec(conn, 0, nil)
	c := newClientCodec(conn, 0)
	for i := 0; i < 3; i++ {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if n := conn.closes.Load(); n != 2 {
		t.Fatalf("the connection was closed %d times, want once per codec", n)
	}
}

func TestCheckMsgpackValue(t *testing.T) {
	type item struct {
		A int
		B string
	}
	values := []any{
		nil, true, false, 0, 1, -1, -32, -33, 127, 128, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32,
		int8(-100), int16(-1000), int32(-1 << 20), int64(-1 << 40), uint64(1<<64 - 1),
		float32(1.5), 2.25, "", "a", strings.Repeat("s", 31), strings.Repeat("s", 32),
		strings.Repeat("s", 255), strings.Repeat("s", 256), strings.Repeat("s", 65536),
		[]byte{}, []byte{1}, make([]byte, 256), make([]byte, 65536),
		[]int{}, []int{1, 2, 3}, make([]int, 15), make([]int, 16), make([]int, 70000),
		map[string]int{}, map[string]int{"a": 1}, map[int]bool{1: true, 2: false},
		make(map[int]int), item{A: 1, B: "x"}, []item{{1, "a"}, {2, "b"}},
		time.Unix(1, 2), time.Unix(1<<40, 5), map[string]any{"x": []any{nil, map[string]any{"y": 1.5}}},
		codecTestArgs(9),
	}
	big := make(map[int]int)
	for i := 0; i < 70000; i++ {
		big[i] = i
	}
	values = append(values, big)
	for _, v := range values {
		b := codecMarshal(t, v)
		if err := checkMsgpackValue(b); err != nil {
			t.Fatalf("%T %.40v (% x...): %v", v, v, b[:min(len(b), 8)], err)
		}
		if err := checkMsgpackValue(append(bytes.Clone(b), 0xc0)); err == nil {
			t.Fatalf("%T %.40v with a trailing byte: no error", v, v)
		}
		cuts := []int{0, 1, len(b) / 2, len(b) - 1}
		if len(b) < 200 {
			cuts = cuts[:0]
			for i := 0; i < len(b); i++ {
				cuts = append(cuts, i)
			}
		}
		for _, n := range cuts {
			if n >= 0 && n < len(b) && checkMsgpackValue(b[:n]) == nil {
				t.Fatalf("%T %.40v cut to %d of %d bytes: no error", v, v, n, len(b))
			}
		}
	}
}

func BenchmarkCodecRoundTrip(b *testing.B) {
	addr := codecServeTCP(b, 0, nil)
	client, _ := codecDialTCP(b, addr, 0)
	args := codecTestArgs(1)
	var reply CodecTestReply
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := client.Call("CodecTest.Echo", args, &reply); err != nil {
			b.Fatal(err)
		}
	}
}
