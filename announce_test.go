package exraft

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exraft/exraft/internal/wire"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type countingAnnouncer struct{ lent, announced atomic.Int32 }

func (a *countingAnnouncer) lend()     { a.lent.Add(1) }
func (a *countingAnnouncer) announce() { a.announced.Add(1) }

// The applier announces a remote write's reply before it answers the
// write, once.
func TestApplierAnnouncesReplies(t *testing.T) {
	s := startAlone(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := s.AwaitLeader(ctx)
	require.NoError(t, err)
	for range 3 {
		ann := new(countingAnnouncer)
		_, err := s.write(ctx, []byte("x"), callerOwns, ann)
		require.NoError(t, err)
		assert.Equal(t, int32(1), ann.lent.Load())
		assert.Equal(t, int32(1), ann.announced.Load())
	}
}

// Whichever of the applier and the handler comes first decides: a reply
// is announced only while its handler has not settled it, and once.
func TestReplyAnnouncementRace(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	out := wire.NewServerCodec(server, wire.ServerConfig{})
	defer out.Close()
	var applierFirst replyAnnouncement
	applierFirst.init(out, new([]byte))
	applierFirst.lend()
	applierFirst.announce()
	applierFirst.announce()
	announced, lent := applierFirst.settle()
	assert.True(t, announced)
	assert.True(t, lent)
	assert.Equal(t, replyAnnounced, applierFirst.state)

	var handlerFirst replyAnnouncement
	handlerFirst.init(out, new([]byte))
	handlerFirst.lend()
	announced, lent = handlerFirst.settle()
	handlerFirst.announce()
	assert.False(t, announced)
	assert.True(t, lent)
	assert.Equal(t, replySettled, handlerFirst.state)

	var noCodec replyAnnouncement
	noCodec.init(nil, new([]byte))
	noCodec.announce()
	announced, lent = noCodec.settle()
	assert.False(t, announced)
	assert.False(t, lent)
}
