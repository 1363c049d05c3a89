package wire

import (
	"net"
	"net/rpc"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ServeTestService's Block waits for release once entered is told.
type ServeTestService struct {
	entered chan int
	release chan struct{}
}

func (s *ServeTestService) Block(n int, reply *int) error {
	s.entered <- n
	<-s.release
	*reply = n
	return nil
}

// serveEndConn tells when a read failed: the server saw the connection end.
type serveEndConn struct {
	net.Conn
	ended chan struct{}
	once  sync.Once
}

func (c *serveEndConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.once.Do(func() { close(c.ended) })
	}
	return n, err
}

// Serve runs handlers side by side, on workers that serve request after
// request rather than a goroutine each, and closes the codec once the
// connection ended and every handler returned.
func TestServe(t *testing.T) {
	const calls = 16
	svc := &ServeTestService{entered: make(chan int, calls), release: make(chan struct{})}
	srv := rpc.NewServer()
	require.NoError(t, srv.Register(svc))
	cconn, pipe := net.Pipe()
	sconn := &serveEndConn{Conn: pipe, ended: make(chan struct{})}
	p := newServePool(srv, NewServerCodec(sconn, ServerConfig{}))
	served := make(chan struct{})
	go func() { p.serve(); close(served) }()
	client := rpc.NewClientWithCodec(NewClientCodec(cconn, ClientConfig{}))
	defer client.Close()

	round := func() {
		var pending []*rpc.Call
		for i := 0; i < calls; i++ {
			pending = append(pending, client.Go("ServeTestService.Block", i, new(int), nil))
		}
		for i := 0; i < calls; i++ {
			select {
			case <-svc.entered:
			case <-time.After(codecTestWait):
				t.Fatalf("%d handlers running, want %d side by side", i, calls)
			}
		}
		for range pending {
			svc.release <- struct{}{} // to any of them
		}
		for _, call := range pending {
			<-call.Done
			require.NoError(t, call.Error)
		}
	}
	round()
	started := p.started.Load()
	assert.LessOrEqual(t, started, int64(calls+1))
	require.Eventually(t, func() bool { return int64(p.idle.Load()) == started-1 },
		codecTestWait, time.Millisecond, "every worker but the reader idle")
	round()
	assert.Equal(t, started, p.started.Load(), "workers started for a second round")

	// A handler still running when the connection ends holds Serve up.
	blocked := client.Go("ServeTestService.Block", 0, new(int), nil)
	<-svc.entered
	client.Close()
	<-sconn.ended
	select {
	case <-served:
		t.Fatal("Serve returned with a handler running")
	default:
	}
	svc.release <- struct{}{}
	<-blocked.Done
	select {
	case <-served:
	case <-time.After(codecTestWait):
		t.Fatal("Serve did not return once the connection ended")
	}
}
