package testkit

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
)

// ReplyLoss is a client's Dial that loses replies on purpose: after
// DropNext(k), the next k reads of its connections discard what arrived and
// break the connection, as a network that fails after the server has acted
// on a call, so that the caller cannot know whether it did. Only
// connections made before DropNext lose anything, so that no handshake
// does (the connections dialed again afterwards work).
//
// LoseNextAndCut also cuts the client off once the reply is lost, until
// Mend: the write whose outcome the client does not know then waits to be
// retried while the test changes the cluster under it.
type ReplyLoss struct {
	drop     atomic.Int32
	gen      atomic.Int64
	cutAfter atomic.Bool // the next loss cuts the client off
	cut      atomic.Bool // dials fail and connections break
}

// DropNext arms the loss of the next k replies.
func (l *ReplyLoss) DropNext(k int) {
	l.gen.Add(1)
	l.drop.Store(int32(k))
}

// LoseNextAndCut arms the loss of the next reply, and cuts the client off
// from every server when it happens: until Mend, its dials fail and its
// connections break, so that it cannot retry.
func (l *ReplyLoss) LoseNextAndCut() {
	l.cutAfter.Store(true)
	l.DropNext(1)
}

// IsCut reports whether the client is cut off: the loss LoseNextAndCut
// armed happened, and Mend did not follow yet.
func (l *ReplyLoss) IsCut() bool { return l.cut.Load() }

// Mend ends the cut of LoseNextAndCut: the client dials again.
func (l *ReplyLoss) Mend() { l.cut.Store(false) }

// Pending returns how many armed losses have not happened yet.
func (l *ReplyLoss) Pending() int { return int(l.drop.Load()) }

// Dial is the Client.Dial to use.
func (l *ReplyLoss) Dial(ctx context.Context, addr string) (net.Conn, error) {
	if l.cut.Load() {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errClientCut}
	}
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &lossyConn{Conn: c, loss: l, born: l.gen.Load()}, nil
}

type lossyConn struct {
	net.Conn
	loss *ReplyLoss
	born int64 // DropNext calls before the dial
}

var (
	errReplyLost = errors.New("testkit: reply lost on purpose")
	errClientCut = errors.New("testkit: client cut off on purpose")
)

func (c *lossyConn) Read(p []byte) (int, error) {
	if c.loss.cut.Load() {
		c.Conn.Close()
		return 0, errClientCut
	}
	n, err := c.Conn.Read(p)
	if n > 0 && c.born < c.loss.gen.Load() && c.loss.take() {
		// Cut before the caller hears of the loss, so that its retry
		// finds the client cut off already.
		if c.loss.cutAfter.CompareAndSwap(true, false) {
			c.loss.cut.Store(true)
		}
		c.Conn.Close()
		return 0, errReplyLost
	}
	return n, err
}

func (c *lossyConn) Write(p []byte) (int, error) {
	if c.loss.cut.Load() {
		c.Conn.Close()
		return 0, errClientCut
	}
	return c.Conn.Write(p)
}

func (l *ReplyLoss) take() bool {
	for {
		k := l.drop.Load()
		if k <= 0 {
			return false
		}
		if l.drop.CompareAndSwap(k, k-1) {
			return true
		}
	}
}
