package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/rpc"
	"reflect"
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
				Serve(srv, NewServerCodec(c, ServerConfig{MaxFrame: maxFrame, OnBody: onBody}))
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
	client := rpc.NewClientWithCodec(NewClientCodec(conn, ClientConfig{MaxFrame: maxFrame}))
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
	c := NewClientCodec(conn, ClientConfig{})
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
	c := NewServerCodec(conn, ServerConfig{})
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
	c := NewServerCodec(newCodecTestConn(in), ServerConfig{OnBody: func(_ string, b any) { got = append(got, b) }})

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
	cc := NewClientCodec(newCodecTestConn(in), ClientConfig{})
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
			c := NewServerCodec(newCodecTestConn(in), ServerConfig{})
			return reads{
				func() error { return c.ReadRequestHeader(new(rpc.Request)) },
				func() error { return c.ReadRequestBody(new(CodecTestArgs)) },
			}
		}},
		{"client", codecResponseFrames(t, &CodecTestReply{Sum: 1}), func(in []byte) reads {
			c := NewClientCodec(newCodecTestConn(in), ClientConfig{})
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

// The codec's own lock keeps frames whole when used without net/rpc.
func TestCodecConcurrentWriters(t *testing.T) {
	cconn, sconn := net.Pipe()
	defer sconn.Close()
	c := NewClientCodec(cconn, ClientConfig{})
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
	s := NewServerCodec(sconn, ServerConfig{})
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
	s := NewServerCodec(conn, ServerConfig{})
	c := NewClientCodec(conn, ClientConfig{})
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
