package exraft

import (
	"context"
	"errors"
	"io"
	"net/rpc"
	"sync"
	"sync/atomic"
	"time"

	"github.com/exraft/exraft/internal/wire"
)

// Whether a server knows WriteBatch. One that predates it ends the
// connection that calls it (admitCall), and with it the replies of every
// call in flight there, writes whose outcome their callers would then not
// know. So a Client asks first, on a connection of its own that nothing
// else uses: an empty WriteBatch, which a server that knows the method
// answers with no results. Until the answer, that address's Writes go in
// calls of their own, as they did before.

// batchSupport is what a Client knows of an address.
type batchSupport int32

const (
	batchUnknown batchSupport = iota
	batchProbing
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

// batches reports whether Writes to addr may share calls, and starts
// finding out if nobody has.
func (c *Client) batches(addr string) bool {
	st := c.probes.of(addr)
	switch batchSupport(st.Load()) {
	case batchYes:
		return true
	case batchUnknown:
		if st.CompareAndSwap(int32(batchUnknown), int32(batchProbing)) {
			go func() { st.Store(int32(c.probeBatch(addr))) }()
		}
	}
	return false
}

// probeBatch calls WriteBatch without commands at addr, on a connection of
// its own, and says what the answer tells. An address it could not reach
// stays unknown, to be asked again by a later Write.
func (c *Client) probeBatch(addr string) batchSupport {
	timeout := c.IOTimeout
	if timeout <= 0 {
		timeout = defaultIOTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := dialConn(ctx, c.Dial, addr, c.TLS, identity{clusterID: c.ClusterID, secret: c.Secret}, timeout)
	if err != nil {
		return batchUnknown
	}
	rc := rpc.NewClientWithCodec(wire.NewClientCodec(conn, wire.ClientConfig{MaxFrame: c.MaxFrameSize, IOTimeout: timeout}))
	defer rc.Close()
	args := (&batchRequest{}).appendTo(nil)
	var raw []byte
	call := rc.Go(methodWriteBatch, &args, &raw, make(chan *rpc.Call, 1))
	select {
	case <-call.Done:
	case <-time.After(timeout):
		return batchUnknown
	}
	var se rpc.ServerError
	switch {
	case call.Error == nil:
		return batchYes
	case errors.As(call.Error, &se):
		return batchNo // net/rpc's "can't find method"
	case errors.Is(call.Error, io.ErrUnexpectedEOF), isConnEnd(call.Error):
		// The server ended the connection at the call. (A server that
		// stops then does too: its address gets a call per Write from
		// this Client, which is slower, not wrong.)
		return batchNo
	}
	return batchUnknown
}
