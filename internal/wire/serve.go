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
// Workers take turns to read: the one that has read a request hands the
// turn to an idle worker, or starts one, before it runs the handler. So
// reading never waits on a handler, and the hooks of ServerConfig see the
// requests in arrival order as before.
func Serve(srv *rpc.Server, c *ServerCodec) {
	newServePool(srv, c).serve()
}

// serveIdle is how many workers may wait for their turn at once; those done
// with a request beyond that end. It is as many as a busy client keeps
// calls in flight: any fewer, and each burst of its calls starts
// goroutines anew.
const serveIdle = 64

type servePool struct {
	srv     *rpc.Server
	c       *ServerCodec
	wg      sync.WaitGroup
	turn    chan struct{} // an idle worker's turn to read; closed at the end
	idle    atomic.Int32  // workers waiting on turn
	started atomic.Int64  // workers started, for tests
}

func newServePool(srv *rpc.Server, c *ServerCodec) *servePool {
	p := &servePool{srv: srv, c: c, turn: make(chan struct{})}
	c.afterRead = p.readDone
	return p
}

func (p *servePool) serve() {
	p.start()
	p.wg.Wait()
	p.c.Close()
}

// start starts a worker whose turn it is to read.
func (p *servePool) start() {
	p.started.Add(1)
	p.wg.Add(1)
	go p.work()
}

func (p *servePool) work() {
	defer p.wg.Done()
	for {
		// The error is net/rpc's, for a request it answered itself or
		// for the end of the connection, after which turn is closed.
		p.srv.ServeRequest(p.c)
		if !p.awaitTurn() {
			return
		}
	}
}

// awaitTurn waits until it is this worker's turn to read, and reports
// whether it is; false: the worker is to end.
func (p *servePool) awaitTurn() bool {
	if p.idle.Add(1) > serveIdle {
		p.idle.Add(-1)
		return false
	}
	_, ok := <-p.turn
	p.idle.Add(-1)
	return ok
}

// readDone runs, on the worker whose turn it was, once it has read a
// request or failed to: it hands the turn on, or ends every idle worker's
// wait when reading has ended.
func (p *servePool) readDone(ended bool) {
	if ended {
		close(p.turn) // once: no one reads after this
		return
	}
	select {
	case p.turn <- struct{}{}:
	default:
		p.start()
	}
}
