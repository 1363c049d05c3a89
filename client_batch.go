package exraft

import (
	"context"
	"errors"
	"fmt"
	"net/rpc"
	"strings"
	"sync"
	"time"

	"github.com/exraft/exraft/internal/gather"
	"github.com/exraft/exraft/internal/wire"
)

// Writes that share a call. A remote write spent most of its processor time
// on what every net/rpc call costs (headers, the codec, reflection, the
// hand-offs between goroutines and the system calls on both ends), not on
// its command. So the Writes of a Client to one address take turns: while
// one call to that address is in flight, the Writes that come meanwhile
// queue, and go together in the next call, WriteBatch, as soon as it ends.
// A lone writer never waits for company: its call goes at once, alone.
// A Session's writes (SessionWrite) share calls the same way: each keeps
// its session, sequence number and lowest, and its attempt's bound.
//
// Only an address whose server is known to serve WriteBatch gets shared
// calls (client_probe.go).

const (
	// maxBatchItems and maxBatchBytes bound a batch's request, counting
	// each command at its most (40 bytes beside its own). The bytes stay
	// below the smallest frame a server may be configured with (4096), so
	// that no server refuses a batch for its size.
	maxBatchItems = 256
	maxBatchBytes = 3 << 10
	// maxBatchedCommand is the largest command that waits for company:
	// a larger one goes in a call of its own, whose cost it dwarfs anyway.
	maxBatchedCommand = 512
)

// writeBatcher queues the Writes of a connection that wait for the next
// call.
type writeBatcher struct {
	mu      sync.Mutex
	busy    bool // a Write's call, or a batch, is in flight
	queue   []*batchWaiter
	batched uint64 // writes sent in batches, for tests
	calls   uint64 // shared calls answered, for tests
	// sent is where the sender hands on batches. The writers a batch
	// answers come back together, and by the rule of package gather they
	// get to queue before the next batch is taken: else the next one
	// holds only the writers that came during the call, and two groups
	// take turns, each a half of what one batch would carry.
	sent gather.Point
}

// batchWaiter is a queued Write. Its caller may give up (ctx) at any time;
// the waiter is then left to the sender, which skips it if it is not sent
// yet.
type batchWaiter struct {
	ctx context.Context
	// item's Data is a copy: the caller may reuse its buffer once it gave
	// up. Its Timeout is set as the batch is sent.
	item     batchCommand
	deadline time.Time // the earlier of ctx's and the attempt's; zero: none
	done     chan batchOutcome
	watch    watched // while the ctx watcher may answer it
}

// batchOutcome is a queued Write's answer. resend: it is to be made as a
// call of its own, as it was not sent, or (sent too) as a Session's write
// applied whose result did not fit in the batch's reply. sent: it may have
// reached the server.
type batchOutcome struct {
	val    []byte
	err    error
	resend bool
	sent   bool
}

// sharedWrite is a write that may share a call: a plain Write's command, or
// a Session's (its session, sequence number and lowest), and the bound of
// a Session's attempt (within), if any.
type sharedWrite struct {
	cmd                  []byte
	session, seq, lowest uint64
	within               *deadlineSlot
}

// batchWaiters recycles waiters, each with room in done for its outcome
// and for the ctx watcher's answer (ctxwatch.go), which wake sends; the
// waiter keeps its wake as it is recycled.
var batchWaiters = sync.Pool{New: func() any {
	q := &batchWaiter{done: make(chan batchOutcome, 2)}
	q.watch.wake = func() { q.done <- batchOutcome{err: errWatchedCtxEnded} }
	return q
}}

// writeShared makes w by way of the connection's batcher. ok is false if
// the caller is to make the call itself: then, if turn is not nil, the
// caller holds the connection's turn and must hand it on
// (writeBatcher.release). sent reports whether the write may have reached
// the server, as callWithin's does.
func (c *Client) writeShared(ctx context.Context, addr string, w sharedWrite) (val []byte, sent bool, err error, ok bool, turn *clientConn) {
	if len(w.cmd) > maxBatchedCommand || !c.batches(addr) {
		return nil, false, nil, false, nil
	}
	cc := c.lookup(addr)
	if cc == nil {
		return nil, false, nil, false, nil // the call dials
	}
	b := &cc.batch
	b.mu.Lock()
	if !b.busy {
		b.busy = true
		b.mu.Unlock()
		return nil, false, nil, false, cc
	}
	q := queuedWaiter(ctx, w)
	b.queue = append(b.queue, q)
	b.mu.Unlock()
	if time.Until(q.deadline) >= minWatchedTimeout {
		return awaitShared(ctx, addr, q, w.within)
	}
	var expired <-chan struct{}
	if w.within != nil {
		expired = w.within.done
	}
	select {
	case o := <-q.done:
		q.ctx = nil
		batchWaiters.Put(q)
		return o.val, o.sent, o.err, !o.resend, nil
	case <-ctx.Done():
		return nil, true, noReply(methodWrite, addr, ctx.Err()), true, nil
	case <-expired:
		return nil, true, noReply(methodWrite, addr, context.DeadlineExceeded), true, nil
	}
}

// awaitShared waits for a queued write's outcome alone, as awaitWatched
// does for a Server's calls: the ctx watcher answers instead once ctx, or
// the attempt's bound within, ends.
func awaitShared(ctx context.Context, addr string, q *batchWaiter, within *deadlineSlot) (val []byte, sent bool, err error, ok bool, turn *clientConn) {
	q.watch.ctx, q.watch.until = ctx, time.Time{}
	if within != nil {
		q.watch.until = within.at
	}
	watcher.add(&q.watch)
	o := <-q.done
	if o.err == errWatchedCtxEnded {
		// Left to the sender, which answers it or skips it, with room.
		err := ctx.Err()
		if err == nil {
			err = context.DeadlineExceeded // the attempt's bound
		}
		return nil, true, noReply(methodWrite, addr, err), true, nil
	}
	if watcher.remove(&q.watch) {
		<-q.done // the watcher's answer, sent after the outcome
	}
	q.watch.ctx, q.ctx = nil, nil
	batchWaiters.Put(q)
	return o.val, o.sent, o.err, !o.resend, nil
}

// queuedWaiter is a waiter for w.
func queuedWaiter(ctx context.Context, w sharedWrite) *batchWaiter {
	q := batchWaiters.Get().(*batchWaiter)
	q.ctx = ctx
	q.item = batchCommand{Data: append(q.item.Data[:0], w.cmd...), Session: w.session, Seq: w.seq, Lowest: w.lowest}
	var ok bool
	q.deadline, ok = ctx.Deadline()
	if w.within != nil && (!ok || w.within.at.Before(q.deadline)) {
		q.deadline = w.within.at
	}
	return q
}

// release hands on the connection's turn: what queued meanwhile goes, in
// batches, from a goroutine of its own, so that the caller returns.
func (b *writeBatcher) release(c *Client, addr string, cc *clientConn) {
	if items := b.next(); items != nil {
		go c.sendBatches(addr, cc, items)
	}
}

// next takes the next batch off the queue, or, with none queued, ends the
// turn.
func (b *writeBatcher) next() []*batchWaiter {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) == 0 {
		b.busy = false
		return nil
	}
	n, size := 0, 0
	for n < len(b.queue) && n < maxBatchItems {
		size += len(b.queue[n].item.Data) + 40
		if n > 0 && size > maxBatchBytes {
			break
		}
		n++
	}
	items := make([]*batchWaiter, n)
	copy(items, b.queue)
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	return items
}

// sendBatches sends batches until the queue is empty.
func (c *Client) sendBatches(addr string, cc *clientConn, items []*batchWaiter) {
	for items != nil {
		c.sendBatch(addr, cc, items)
		cc.batch.sent.HandedOn(len(items))
		cc.batch.sent.Yield()
		items = cc.batch.next()
	}
}

// sendBatch makes one WriteBatch call of the items still waiting, and
// answers each.
func (c *Client) sendBatch(addr string, cc *clientConn, items []*batchWaiter) {
	sent, args, last := encodeBatch(items)
	if len(sent) == 0 {
		return
	}
	var raw []byte
	call := cc.send(methodWriteBatch, &args, &raw, make(chan *rpc.Call, 1))
	answered, atOnce := awaitBatch(call, last)
	if !answered {
		finishAll(sent, batchOutcome{err: context.DeadlineExceeded, sent: true})
		return
	}
	if atOnce && call.Error == rpc.ErrShutdown {
		// Refused at once: the connection had ended, and nothing was
		// sent. (Later, the same error may come of a connection closed
		// under a call sent.)
		c.forget(addr, cc)
		finishAll(sent, batchOutcome{resend: true})
		return
	}
	if call.Error != nil {
		c.batchFailed(addr, cc, sent, call.Error)
		return
	}
	var rep batchReply
	if err := rep.decode(raw); err != nil || len(rep.Items) != len(sent) {
		if err == nil {
			err = fmt.Errorf("%d results for %d writes", len(rep.Items), len(sent))
		}
		finishAll(sent, batchOutcome{err: fmt.Errorf("exraft: bad reply from %s: %w", addr, err), sent: true})
		return
	}
	cc.batch.mu.Lock()
	cc.batch.batched += uint64(len(sent))
	cc.batch.calls++
	cc.batch.mu.Unlock()
	for i, w := range sent {
		r := &rep.Items[i]
		if r.Code == codeAskAlone && w.item.Session != 0 {
			// Applied, and kept in the session table: a call of its
			// own gets the result.
			w.done <- batchOutcome{resend: true, sent: true}
			continue
		}
		w.done <- batchOutcome{val: r.Data, err: r.err(), sent: true}
	}
}

// awaitBatch waits for call's answer, and reports false if every caller
// has given up first (last, when not zero): the next batch need not wait
// for this one any longer. atOnce: the call was over as soon as made.
func awaitBatch(call *rpc.Call, last time.Time) (answered, atOnce bool) {
	select {
	case <-call.Done:
		return true, true
	default:
	}
	var expired <-chan time.Time
	if !last.IsZero() {
		t := time.NewTimer(time.Until(last))
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-call.Done:
		return true, false
	case <-expired:
		return false, false
	}
}

// encodeBatch encodes the items whose callers still wait, and answers the
// others. last is the latest deadline among those sent, zero if one has
// none.
func encodeBatch(items []*batchWaiter) (sent []*batchWaiter, args []byte, last time.Time) {
	sent = items[:0]
	hasNone := false
	for _, w := range items {
		if err := w.ctx.Err(); err != nil {
			w.done <- batchOutcome{err: err}
			continue
		}
		w.item.Timeout = 0
		if !w.deadline.IsZero() {
			w.item.Timeout = int64(time.Until(w.deadline))
			if w.item.Timeout <= 0 {
				w.done <- batchOutcome{err: context.DeadlineExceeded}
				continue
			}
			if w.deadline.After(last) {
				last = w.deadline
			}
		} else {
			hasNone = true
		}
		if len(sent) == 0 {
			args = make([]byte, 0, maxBatchBytes+64)
		}
		sent = append(sent, w)
		args = w.item.appendTo(args)
	}
	if hasNone {
		last = time.Time{}
	}
	head := wire.AppendArrayLen(wire.AppendArrayLen(nil, 1), len(sent))
	return sent, append(head, args...), last
}

// batchFailed answers the items of a batch whose call failed. A server
// that answers that it does not know WriteBatch (probeBatch tells most
// apart first) did nothing: the items are made as calls of their own, as
// the address's Writes from then on.
func (c *Client) batchFailed(addr string, cc *clientConn, sent []*batchWaiter, err error) {
	var se rpc.ServerError
	if errors.As(err, &se) {
		if strings.Contains(string(se), "can't find method") {
			c.probes.of(addr).Store(int32(batchNo))
			finishAll(sent, batchOutcome{resend: true})
			return
		}
		finishAll(sent, batchOutcome{err: serverError(string(se)), sent: true})
		return
	}
	// The server there may have changed since it was asked: one restarted
	// into an older build ends the connection at every WriteBatch. So the
	// next connection asks again rather than fail every shared call.
	c.probes.of(addr).CompareAndSwap(int32(batchYes), int32(batchUnknown))
	c.forget(addr, cc)
	finishAll(sent, batchOutcome{err: fmt.Errorf("exraft: Write on %s: the connection failed: %w", addr, err), sent: true})
}

func finishAll(items []*batchWaiter, o batchOutcome) {
	for _, w := range items {
		w.done <- o
	}
}
