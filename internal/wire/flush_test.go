package wire

import (
	"net/rpc"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// gatedConn holds its first Write until released.
type gatedConn struct {
	*codecTestConn
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (c *gatedConn) Write(p []byte) (int, error) {
	c.once.Do(func() {
		close(c.entered)
		<-c.release
	})
	return c.codecTestConn.Write(p)
}

// A frame written while another write is in the system call is buffered
// without waiting for it, and goes after it, in order.
func TestCodecWritesWithoutHoldingFrames(t *testing.T) {
	conn := &gatedConn{codecTestConn: newCodecTestConn(nil), entered: make(chan struct{}), release: make(chan struct{})}
	c := NewClientCodec(conn, ClientConfig{})
	first := make(chan error, 1)
	go func() {
		first <- c.WriteRequest(&rpc.Request{ServiceMethod: "CodecTest.Echo", Seq: 1}, codecTestArgs(1))
	}()
	<-conn.entered // the first frame's write is under way, and held

	second := make(chan error, 1)
	go func() {
		second <- c.WriteRequest(&rpc.Request{ServiceMethod: "CodecTest.Echo", Seq: 2}, codecTestArgs(2))
	}()
	select {
	case err := <-second:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		close(conn.release)
		require.FailNow(t, "a frame waited for another's write to end")
	}
	require.Empty(t, conn.written(), "the held write has not gone yet")
	close(conn.release)
	require.NoError(t, <-first)

	s := NewServerCodec(newCodecTestConn(conn.written()), ServerConfig{})
	for seq := uint64(1); seq <= 2; seq++ {
		var req rpc.Request
		var a CodecTestArgs
		require.NoError(t, s.ReadRequestHeader(&req))
		require.NoError(t, s.ReadRequestBody(&a))
		require.Equal(t, seq, req.Seq, "frames in the order written")
		require.Equal(t, seq, a.N)
	}
}
