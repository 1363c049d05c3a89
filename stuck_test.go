package exraft

// Tests of a server that must keep answering: a connection's later calls
// after one it refused, and accepting after the listener fails for a while.

import (
	"context"
	"net/rpc"
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
