package exraft

import (
	"context"
	"errors"
	"io"
	"net/rpc"
	"sync"
	"sync/atomic"
	"time"
)

// Whether a server knows WriteBatch. One that predates it ends the
// connection that calls it (admitCall), and with it the replies of every
// call in flight there, writes whose outcome their callers would then not
// know. So a Client asks first, on each new connection to an address it
// knows nothing of (or whose last shared call lost its connection: the
// server there may have been replaced), before any other call uses it: an
// empty WriteBatch, which a server that knows the method answers with no
// results. Until the answer, that address's Writes go in calls of their
// own, as before.

// batchSupport is what a Client knows of an address.
type batchSupport int32

const (
	batchUnknown batchSupport = iota
	batchYes
	batchNo
)

// batchProbes maps addresses to their *atomic.Int32 (a batchSupport).
type batchProbes struct{ m sync.Map }

func (p *batchProbes) of(addr string) *atomic.Int32 {
	if v, ok := p.m.Load(addr); ok {
		return v.(*atomic.Int32)
	}
	v, _ := p.m.LoadOrStore(addr, new(atomic.Int32))
	return v.(*atomic.Int32)
}

// batches reports whether Writes to addr may share calls.
func (c *Client) batches(addr string) bool {
	return batchSupport(c.probes.of(addr).Load()) == batchYes
}

// settleBatch asks a new connection's server, before the connection is
// used, whether it knows WriteBatch, unless that is known of addr. It
// reports false if the server ended the connection at the question.
func (c *Client) settleBatch(ctx context.Context, addr string, cc *clientConn) bool {
	st := c.probes.of(addr)
	if batchSupport(st.Load()) != batchUnknown {
		return true
	}
	answer, usable := probeBatch(ctx, cc.rc, c.ioTimeout())
	if answer != batchUnknown {
		st.Store(int32(answer))
	}
	if !usable {
		cc.rc.Close()
	}
	return usable
}

func (c *Client) ioTimeout() time.Duration {
	if c.IOTimeout <= 0 {
		return defaultIOTimeout
	}
	return c.IOTimeout
}

// probeBatch calls WriteBatch without commands on rc, and says what the
// answer tells, and whether the connection is still of use. A question
// left unanswered (ctx, timeout) leaves the address unknown, to be asked
// again on its next connection.
func probeBatch(ctx context.Context, rc *rpc.Client, timeout time.Duration) (answer batchSupport, usable bool) {
	args := (&batchRequest{}).appendTo(nil)
	var raw []byte
	call := rc.Go(methodWriteBatch, &args, &raw, make(chan *rpc.Call, 1))
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-call.Done:
	case <-ctx.Done():
		return batchUnknown, true
	case <-t.C:
		return batchUnknown, true
	}
	var se rpc.ServerError
	switch {
	case call.Error == nil:
		return batchYes, true
	case errors.As(call.Error, &se):
		return batchNo, true // net/rpc's "can't find method"
	case errors.Is(call.Error, io.ErrUnexpectedEOF), isConnEnd(call.Error):
		// The server ended the connection at the call. (A server that
		// stops then does too: its address gets a call per Write from
		// this Client, which is slower, not wrong.)
		return batchNo, false
	}
	return batchUnknown, true // the call that follows meets the failure
}
