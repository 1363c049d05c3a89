package wire

import (
	"errors"
	"net"
	"net/rpc"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// codecWriteCounter counts the writes that reach the connection.
type codecWriteCounter struct {
	*codecTestConn
	writes atomic.Int32
}

func (c *codecWriteCounter) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.codecTestConn.Write(p)
}

// Requests written while others are queued go out together, in one write
// by the last of them to leave the queue.
func TestCodecCoalescesQueuedRequests(t *testing.T) {
	const n = 10
	conn := &codecWriteCounter{codecTestConn: newCodecTestConn(nil)}
	c := NewClientCodec(conn, ClientConfig{})
	var bodies []any
	for i := 0; i < n; i++ {
		c.Queue()
		bodies = append(bodies, codecTestArgs(uint64(i)))
	}
	for i, b := range bodies {
		require.NoError(t, c.WriteRequest(&rpc.Request{ServiceMethod: "CodecTest.Echo", Seq: uint64(i)}, b))
	}
	assert.Zero(t, conn.writes.Load(), "written while others were queued")
	for i := 0; i < n; i++ {
		c.Unqueue()
	}
	assert.EqualValues(t, 1, conn.writes.Load(), "writes for %d queued requests", n)
	assert.Equal(t, codecRequestFrames(t, bodies...), conn.written())

	// With none queued, each request goes at once.
	require.NoError(t, c.WriteRequest(&rpc.Request{ServiceMethod: "CodecTest.Echo", Seq: n}, codecTestArgs(n)))
	assert.EqualValues(t, 2, conn.writes.Load())
}

// Responses written while other replies are announced go out with the last.
func TestCodecCoalescesQueuedResponses(t *testing.T) {
	const n = 10
	conn := &codecWriteCounter{codecTestConn: newCodecTestConn(nil)}
	c := NewServerCodec(conn, ServerConfig{})
	var replies []any
	for i := 0; i < n; i++ {
		r := &CodecTestReply{Sum: uint64(i)}
		c.Queue(r)
		replies = append(replies, r)
	}
	// A response no handler announced (net/rpc's own, for a bad request)
	// waits for the announced ones too.
	require.NoError(t, c.WriteResponse(&rpc.Response{ServiceMethod: "CodecTest.Echo", Seq: 0, Error: "bad"}, struct{}{}))
	for i, r := range replies {
		require.NoError(t, c.WriteResponse(&rpc.Response{ServiceMethod: "CodecTest.Echo", Seq: uint64(i + 1)}, r))
	}
	assert.EqualValues(t, 1, conn.writes.Load(), "writes for %d queued responses", n+1)
	assert.Equal(t, codecResponseFrames(t, append([]any{"bad"}, replies...)...), conn.written())

	require.NoError(t, c.WriteResponse(&rpc.Response{ServiceMethod: "CodecTest.Echo", Seq: n + 1}, &CodecTestReply{}))
	assert.EqualValues(t, 2, conn.writes.Load(), "a response with none queued goes at once")
}

// codecFailingWrites is a connection whose writes fail.
type codecFailingWrites struct {
	net.Conn
	err error
}

func (c *codecFailingWrites) Write([]byte) (int, error) { return 0, c.err }

// A call whose request was buffered, and sent by another's flush that
// failed, fails with the write's error, as if it had written it itself.
func TestCodecFailedFlushFailsTheCalls(t *testing.T) {
	cconn, sconn := net.Pipe()
	defer sconn.Close()
	boom := errors.New("boom")
	c := NewClientCodec(&codecFailingWrites{Conn: cconn, err: boom}, ClientConfig{})
	client := rpc.NewClientWithCodec(c)
	defer client.Close()

	c.Queue()
	c.Queue()
	first := client.Go("CodecTest.Echo", codecTestArgs(1), new(CodecTestReply), nil)
	c.Unqueue()
	second := client.Go("CodecTest.Echo", codecTestArgs(2), new(CodecTestReply), nil)
	c.Unqueue()
	for _, call := range []*rpc.Call{first, second} {
		<-call.Done
		assert.ErrorIs(t, call.Error, boom)
	}
}
