package wire

import (
	"net/rpc"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// A body of bytes, which the codecs encode and decode without reflection,
// is in the frame what reflection makes of it, and decodes the same.
func TestCodecBytesBodies(t *testing.T) {
	for _, p := range [][]byte{nil, {}, {1}, make([]byte, 255), make([]byte, 256), make([]byte, 70000)} {
		frame := codecRequestFrames(t, &p)
		body, err := msgpack.Marshal(&p)
		require.NoError(t, err)
		assert.Equal(t, codecRawFrame(codecMarshal(t, []any{"CodecTest.Echo", 0}), body), frame, "%d bytes", len(p))

		s := NewServerCodec(newCodecTestConn(frame), ServerConfig{})
		var req rpc.Request
		require.NoError(t, s.ReadRequestHeader(&req))
		var got []byte
		require.NoError(t, s.ReadRequestBody(&got))
		var want []byte
		require.NoError(t, msgpack.Unmarshal(body, &want))
		assert.Equal(t, want == nil, got == nil, "nil or not, for %d bytes", len(p))
		assert.Equal(t, want, got)
	}
}

// A Reader reads what the Append functions write, and fails on anything
// else rather than guess.
func TestReader(t *testing.T) {
	var b []byte
	b = AppendArrayLen(b, 3)
	b = AppendMapLen(b, 1)
	b = AppendStr(b, "Key")
	b = AppendInt64(b, -5)
	b = AppendUint8(b, 200)
	b = AppendBin(b, []byte("data"))
	want, err := msgpack.Marshal([]any{map[string]int64{"Key": -5}, uint8(200), []byte("data")})
	require.NoError(t, err)
	assert.Equal(t, want, b)

	r := NewReader(b)
	assert.Equal(t, 3, r.ArrayLen())
	assert.Equal(t, 1, r.MapLen())
	assert.True(t, r.Key("Key"))
	assert.EqualValues(t, -5, r.Int64())
	assert.EqualValues(t, 200, r.Uint8())
	assert.Equal(t, []byte("data"), r.Bin())
	assert.True(t, r.Done())

	for _, bad := range [][]byte{{}, {0x01}, {0xc4, 0x05, 'a'}, {0xdc, 0, 1, 0}} {
		r := NewReader(bad)
		r.ArrayLen()
		r.Bin()
		assert.False(t, r.OK(), "% x", bad)
	}
	r = NewReader(AppendStr(nil, "Name"))
	assert.False(t, r.Key("Addr"))
	assert.False(t, r.OK())
}
