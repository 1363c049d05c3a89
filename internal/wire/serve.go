package wire

import (
	"net/rpc"
	"sync"
	"sync/atomic"
)

// Serve serves srv over c until the connection ends, and closes c, as
// srv.ServeCodec(c) does, with one difference: the goroutines that run the
// handlers live on from one request to the next. net/rpc starts one per
// request, whose stack then grows, by copying, under any handler of some
// depth; for a client's Write that cost more than its system calls.
//
// Each worker reads a request and then runs its handler, after it made sure
// that another worker waits to read the next one: reads take turns (c's
// reads of a request's header and body go together), and the hooks of
// ServerConfig see the requests in arrival order as before.
func Serve(srv *rpc.Server, c *ServerCodec) {
	newServePool(srv, c).serve()
}

// serveIdle is how many workers may wait to read at once; those done with a
// request beyond that end. It is as many as a busy client keeps calls in
// flight: any fewer, and each burst of its calls starts goroutines anew.
const serveIdle = 64

type servePool struct {
	srv     *rpc.Server
	c       *ServerCodec
	wg      sync.WaitGroup
	idle    atomic.Int32 // workers waiting to read, or reading
	started atomic.Int64 // workers started, for tests
}

func newServePool(srv *rpc.Server, c *ServerCodec) *servePool {
	p := &servePool{srv: srv, c: c}
	c.afterRead = p.readDone
	return p
}

func (p *servePool) serve() {
	p.start()
	p.wg.Wait()
	p.c.Close()
}

func (p *servePool) start() {
	p.idle.Add(1)
	p.started.Add(1)
	p.wg.Add(1)
	go p.work()
}

func (p *servePool) work() {
	defer p.wg.Done()
	for {
		// The error is net/rpc's, for a request it answered itself or
		// for the end of the connection, which readEnded tells apart.
		p.srv.ServeRequest(p.c)
		if p.c.readEnded() || p.idle.Load() >= serveIdle {
			return
		}
		p.idle.Add(1)
	}
}

// readDone runs once a worker has read a request, or failed to: the last
// worker waiting to read starts another before it runs the handler.
func (p *servePool) readDone(ended bool) {
	if p.idle.Add(-1) == 0 && !ended {
		p.start()
	}
}
