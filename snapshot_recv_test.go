package exraft

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft/internal/raft"
	"github.com/exraft/exraft/internal/wire"
)

// The receiver's rules for chunks, one at a time: in order, within the
// announced size, one transfer per sender, dropped when it stalls.

func testReceiver(t *testing.T) *receiver {
	s := &Server{name: "b", cfg: Config{IOTimeout: 100 * time.Millisecond},
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	t.Cleanup(s.cancel)
	s.snaps.recv.init(s)
	return &s.snaps.recv
}

// testChunk encodes a chunk of the snapshot at index from sender from.
func testChunk(t *testing.T, from string, index, size, off uint64, last bool, data string) []byte {
	h := raft.Message{Type: raft.MsgSnap, From: from, FromInc: 7, To: "b", Term: 3, LastIndex: index, LastTerm: 2}
	var enc chunkEncoder
	b, err := enc.encode(&snapChunk{Header: wire.AppendMessages(nil, []raft.Message{h}), Size: size, Offset: off, Last: last, Data: []byte(data)})
	require.NoError(t, err)
	return append([]byte(nil), b...)
}

func TestReceiverTakesChunksInOrder(t *testing.T) {
	r := testReceiver(t)
	require.NoError(t, r.take(testChunk(t, "a", 100, 9, 0, false, "abc")).err)
	require.NoError(t, r.take(testChunk(t, "a", 100, 9, 3, false, "def")).err)
	out := r.take(testChunk(t, "a", 100, 9, 6, true, "ghi"))
	require.NoError(t, out.err)
	require.NotNil(t, out.done)
	assert.Equal(t, "abcdefghi", string(out.done.data.bytes()))
	assert.Equal(t, uint64(100), out.done.header.LastIndex)
	assert.Empty(t, r.senders, "a finished transfer is no longer buffered")
}

func TestReceiverRefusesChunksOutOfOrder(t *testing.T) {
	r := testReceiver(t)
	require.NoError(t, r.take(testChunk(t, "a", 100, 9, 0, false, "abc")).err)
	err := r.take(testChunk(t, "a", 100, 9, 6, false, "ghi")).err
	require.ErrorContains(t, err, "offset 6, after 3 bytes")
	err = r.take(testChunk(t, "a", 100, 9, 3, false, "def")).err
	require.ErrorContains(t, err, "start again from offset 0", "the transfer was dropped")
	assert.Empty(t, r.senders)
}

func TestReceiverBoundsTheSize(t *testing.T) {
	r := testReceiver(t)
	err := r.take(testChunk(t, "a", 100, maxSnapshotBytes+1, 0, false, "abc")).err
	require.ErrorContains(t, err, "above the limit")

	require.NoError(t, r.take(testChunk(t, "a", 100, 4, 0, false, "abc")).err)
	err = r.take(testChunk(t, "a", 100, 4, 3, true, "def")).err
	require.ErrorContains(t, err, "goes past the announced 4")

	require.NoError(t, r.take(testChunk(t, "a", 100, 9, 0, false, "abc")).err)
	err = r.take(testChunk(t, "a", 100, 9, 3, true, "def")).err
	require.ErrorContains(t, err, "the last chunk ends at 6 of 9 bytes")
	assert.Empty(t, r.senders)
}

func TestReceiverNewTransferReplacesOld(t *testing.T) {
	r := testReceiver(t)
	require.NoError(t, r.take(testChunk(t, "a", 100, 6, 0, false, "abc")).err)
	require.NoError(t, r.take(testChunk(t, "a", 200, 6, 0, false, "xyz")).err)
	err := r.take(testChunk(t, "a", 100, 6, 3, true, "def")).err
	require.ErrorContains(t, err, "no transfer of the snapshot at index 100")
	out := r.take(testChunk(t, "a", 200, 6, 3, true, "uvw"))
	require.NoError(t, out.err)
	assert.Equal(t, "xyzuvw", string(out.done.data.bytes()))

	// The same snapshot from offset 0 again starts over.
	require.NoError(t, r.take(testChunk(t, "a", 300, 6, 0, false, "abc")).err)
	require.NoError(t, r.take(testChunk(t, "a", 300, 6, 0, false, "123")).err)
	out = r.take(testChunk(t, "a", 300, 6, 3, true, "456"))
	require.NoError(t, out.err)
	assert.Equal(t, "123456", string(out.done.data.bytes()))
}

func TestReceiverDropsStalledTransfer(t *testing.T) {
	r := testReceiver(t)
	require.NoError(t, r.take(testChunk(t, "a", 100, 6, 0, false, "abc")).err)
	require.True(t, PollUntil(5*time.Second, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.senders) == 0
	}), "a transfer with no chunk for IOTimeout is dropped")
	err := r.take(testChunk(t, "a", 100, 6, 3, true, "def")).err
	require.ErrorContains(t, err, "timed out")
}

func TestReceiverBoundsTransfersAndChecksHeaders(t *testing.T) {
	r := testReceiver(t)
	for _, from := range []string{"a", "c", "d", "e"} {
		require.NoError(t, r.take(testChunk(t, from, 100, 6, 0, false, "abc")).err)
	}
	err := r.take(testChunk(t, "f", 100, 6, 0, false, "abc")).err
	require.ErrorContains(t, err, "transfers are in progress already")

	err = r.take([]byte{0xc1}).err
	require.ErrorIs(t, err, errMalformedChunk)

	h := raft.Message{Type: raft.MsgSnap, From: "a", To: "z", Term: 3, LastIndex: 100, LastTerm: 2}
	var enc chunkEncoder
	b, err := enc.encode(&snapChunk{Header: wire.AppendMessages(nil, []raft.Message{h}), Size: 1, Last: true, Data: []byte("x")})
	require.NoError(t, err)
	require.ErrorContains(t, r.take(b).err, `the snapshot is for "z"`)
}

func TestReceiverTakesAnEmptySnapshot(t *testing.T) {
	r := testReceiver(t)
	out := r.take(testChunk(t, "a", 100, 0, 0, true, ""))
	require.NoError(t, out.err)
	require.NotNil(t, out.done)
	assert.Zero(t, out.done.data.Len())
}

// FuzzReceiverTake: whatever bytes arrive as a chunk, the receiver answers
// with an outcome and does not panic.
func FuzzReceiverTake(f *testing.F) {
	h := wire.AppendMessages(nil, []raft.Message{{Type: raft.MsgSnap, From: "a", To: "b", Term: 3, LastIndex: 100, LastTerm: 2}})
	for _, c := range []snapChunk{
		{Header: h, Size: 3, Last: true, Data: []byte("abc")},
		{Header: h, Size: 6, Data: []byte("abc")},
		{Header: h, Size: 1 << 40, Data: []byte("a")},
		{Header: []byte{0x91, 0xc0}, Size: 1, Last: true, Data: []byte("a")},
	} {
		var enc chunkEncoder
		b, err := enc.encode(&c)
		require.NoError(f, err)
		f.Add(append([]byte(nil), b...))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		r := testReceiver(t)
		out := r.take(raw)
		if out.done != nil {
			require.NoError(t, out.err)
			require.Equal(t, "b", out.done.header.To)
		}
	})
}

// plainSM is a state machine without Snapshotter.
type plainSM struct{}

func (plainSM) Apply([]byte) []byte { return nil }
func (plainSM) Query([]byte) []byte { return nil }
