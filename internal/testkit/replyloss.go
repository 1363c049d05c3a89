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
type ReplyLoss struct {
	drop atomic.Int32
	gen  atomic.Int64
}

// DropNext arms the loss of the next k replies.
func (l *ReplyLoss) DropNext(k int) {
	l.gen.Add(1)
	l.drop.Store(int32(k))
}

// Pending returns how many armed losses have not happened yet.
func (l *ReplyLoss) Pending() int { return int(l.drop.Load()) }

// Dial is the Client.Dial to use.
func (l *ReplyLoss) Dial(ctx context.Context, addr string) (net.Conn, error) {
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

var errReplyLost = errors.New("testkit: reply lost on purpose")

func (c *lossyConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.born < c.loss.gen.Load() && c.loss.take() {
		c.Conn.Close()
		return 0, errReplyLost
	}
	return n, err
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
