package exraft

// Tests of a server that must keep answering: a connection's later calls
// after one it refused, and accepting after the listener fails for a while.

import (
	"context"
	"net"
	"net/rpc"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/exraft/exraft/internal/wire"
)

// TestRefusedCallLeavesTheConnectionAnswering: a call whose request does not
// decode is answered with an error, and the calls after it on the same
// connection are answered as before. net/rpc writes a failed call's
// response with a placeholder body, not the reply the handler announced to
// the codec; had the announcement stayed, every later response on the
// connection would have waited behind it, unsent, for good.
func TestRefusedCallLeavesTheConnectionAnswering(t *testing.T) {
	s := startAlone(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := dialConn(ctx, nil, s.Addr(), nil, s.identity, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cc := wire.NewClientCodec(conn, wire.ClientConfig{})
	conn.SetDeadline(time.Now().Add(20 * time.Second))

	// Bytes, as every call carries, but not a request: 0xc1 is no msgpack.
	bad := []byte{0xc1}
	if err := cc.WriteRequest(&rpc.Request{ServiceMethod: methodStatus, Seq: 1}, &bad); err != nil {
		t.Fatal(err)
	}
	good := (&callRequest{}).appendTo(nil)
	if err := cc.WriteRequest(&rpc.Request{ServiceMethod: methodStatus, Seq: 2}, &good); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		var resp rpc.Response
		if err := cc.ReadResponseHeader(&resp); err != nil {
			t.Fatalf("no response on the connection after a refused call: %v", err)
		}
		var body []byte
		var into any = &body
		if resp.Error != "" {
			into = nil // net/rpc's placeholder, not bytes
		}
		if err := cc.ReadResponseBody(into); err != nil {
			t.Fatal(err)
		}
		switch resp.Seq {
		case 1:
			if resp.Error == "" {
				t.Errorf("the call that does not decode succeeded")
			}
		case 2:
			var rep callReply
			if resp.Error != "" || rep.decode(body) != nil || rep.Status.Name != s.Name() {
				t.Errorf("Status after a refused call: error %q, status %+v", resp.Error, rep.Status)
			}
		}
	}
}

// emfileListener fails its first accepts as a process out of file
// descriptors does.
type emfileListener struct {
	net.Listener
	fails atomic.Int32 // accepts still to fail
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestAcceptOutlivesRunningOutOfDescriptors: accepts that fail for want of
// file descriptors pass once connections close; the server pauses and
// accepts again, rather than serving no new connection for the rest of its
// life.
func TestAcceptOutlivesRunningOutOfDescriptors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &emfileListener{Listener: ln}
	fl.fails.Store(5)
	var lg TestLog
	s, err := StartServer(&counterSM{}, Config{Name: "alone", Listener: fl, Logger: lg.Logger(),
		InitialConfig: []Peer{{Name: "alone", Addr: ln.Addr().String()}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()

	c := &Client{}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.GetStatus(ctx, s.Addr()); err != nil {
		t.Fatalf("no call answered after accepts failed with EMFILE: %v\nlog:\n%s", err, lg.Tail(5))
	}
	if !lg.Has("accept failed") {
		t.Errorf("the failed accepts were not logged:\n%s", lg.Tail(5))
	}
}
