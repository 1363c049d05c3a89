package exraft_test

import (
	"net/rpc"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft"
	"github.com/exraft/exraft/internal/raft"
	"github.com/exraft/exraft/internal/testkit"
	"github.com/exraft/exraft/internal/wire"
)

// wireChunk is an InstallSnapshot call's argument as a peer sends it: the
// snapshot's header (a MsgSnap, encoded as Step encodes messages), the
// whole size, this chunk's offset, whether it is the last, and its bytes.
type wireChunk struct {
	_msgpack struct{} `msgpack:",as_array"`
	Header   []byte
	Size     uint64
	Offset   uint64
	Last     bool
	Data     []byte
}

// TestInstallSnapshotOverTheWire: chunks that decode get an answer each,
// a refusal included, on a connection that stays open; a chunk that does
// not decode closes the connection and is logged; a snapshot sent whole
// to a server that cannot restore one is refused, saying why.
func TestInstallSnapshotOverTheWire(t *testing.T) {
	var logs exraft.TestLog
	cfg := testkit.FastConfig("b")
	cfg.Logger = logs.Logger()
	s := testkit.Start(t, testkit.NewKV(), cfg) // no Snapshotter

	conn, err := dialPastHandshake(s.Addr())
	require.NoError(t, err)
	defer conn.Close()
	cc := wire.NewClientCodec(conn, wire.ClientConfig{})
	call := func(seq uint64, off, size uint64, last bool, data string) string {
		h := raft.Message{Type: raft.MsgSnap, From: "a", FromInc: 7, To: "b", Term: 3, LastIndex: 100, LastTerm: 2}
		chunk, err := wire.Marshal(&wireChunk{Header: wire.AppendMessages(nil, []raft.Message{h}),
			Size: size, Offset: off, Last: last, Data: []byte(data)})
		require.NoError(t, err)
		conn.SetDeadline(time.Now().Add(testkit.WaitLong))
		defer conn.SetDeadline(time.Time{})
		_, err = conn.Write(frame(requestHeader("Exraft.InstallSnapshot", seq), encodeMsgpack(chunk)))
		require.NoError(t, err)
		var resp rpc.Response
		require.NoError(t, cc.ReadResponseHeader(&resp))
		require.Equal(t, seq, resp.Seq)
		require.NoError(t, cc.ReadResponseBody(nil))
		return resp.Error
	}
	assert.Empty(t, call(1, 0, 6, false, "abc"))
	assert.Contains(t, call(2, 5, 6, false, "abc"), "a chunk at offset 5, after 3 bytes")
	assert.Contains(t, call(3, 0, 6, true, "abcdef"), "not a Snapshotter")

	_, err = conn.Write(frame(requestHeader("Exraft.InstallSnapshot", 4), encodeMsgpack([]byte{0x93, 0x01})))
	require.NoError(t, err)
	require.NoError(t, awaitClosed(conn, testkit.WaitLong))
	require.True(t, testkit.PollUntil(testkit.WaitLong, func() bool { return logs.Has("malformed snapshot chunk") }), "logged:\n%s", logs.Tail(10))
}
