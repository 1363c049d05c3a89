package exraft

import (
	"fmt"
	"testing"

	"github.com/exraft/exraft/internal/wire"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzDecodeCall feeds client requests and replies, as the RPC service and
// the Client decode them, with arbitrary bytes: no panic, no allocation
// beyond what the bytes hold, and the same result by hand as by reflection.
func FuzzDecodeCall(f *testing.F) {
	for _, s := range callBodySamples() {
		req, _ := wire.Marshal(&s.req)
		rep, _ := wire.Marshal(&s.rep)
		f.Add(req)
		f.Add(rep)
	}
	for _, s := range batchBodySamples() {
		req, _ := wire.Marshal(&s.req)
		rep, _ := wire.Marshal(&s.rep)
		f.Add(req)
		f.Add(rep)
	}
	f.Add([]byte{0x96, 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x91, 0xdc, 0xff, 0xff}) // a batch of 65535 in 4 bytes
	f.Fuzz(func(t *testing.T, b []byte) {
		var q, qr callRequest
		err := q.decode(b)
		errr := wire.Unmarshal(b, &qr)
		require.Equal(t, errr == nil, err == nil, "request: by hand %v, by reflection %v", err, errr)
		if err == nil {
			require.Equal(t, qr, q)
		}
		var r, rr callReply
		err = r.decode(b)
		errr = wire.Unmarshal(b, &rr)
		require.Equal(t, errr == nil, err == nil, "reply: by hand %v, by reflection %v", err, errr)
		if err == nil {
			require.Equal(t, rr, r)
			_ = decodeErr(&r)
		}
		var bq, bqr batchRequest
		err = bq.decode(b)
		errr = wire.Unmarshal(b, &bqr)
		require.Equal(t, errr == nil, err == nil, "batch request: by hand %v, by reflection %v", err, errr)
		if err == nil {
			require.Equal(t, bqr, bq)
		}
		var br, brr batchReply
		err = br.decode(b)
		errr = wire.Unmarshal(b, &brr)
		require.Equal(t, errr == nil, err == nil, "batch reply: by hand %v, by reflection %v", err, errr)
		if err == nil {
			require.Equal(t, brr, br)
			for i := range br.Items {
				_ = br.Items[i].err()
			}
		}
	})
}

// TestBatchBodiesDecodeAsReflectionEncodes: the hand-made encodings of the
// batch bodies are the bytes reflection gives them, and decode back.
func TestBatchBodiesDecodeAsReflectionEncodes(t *testing.T) {
	for _, s := range batchBodySamples() {
		want, err := wire.Marshal(&s.req)
		require.NoError(t, err)
		require.Equal(t, want, s.req.appendTo(nil))
		var q batchRequest
		require.NoError(t, q.decode(want))
		require.Equal(t, s.req, q)
		want, err = wire.Marshal(&s.rep)
		require.NoError(t, err)
		require.Equal(t, want, s.rep.appendTo(nil))
		var r batchReply
		require.NoError(t, r.decode(want))
		require.Equal(t, s.rep, r)
	}
}

type batchBodySample struct {
	req batchRequest
	rep batchReply
}

func batchBodySamples() []batchBodySample {
	many := batchBodySample{}
	for i := range 20 {
		many.req.Items = append(many.req.Items, batchCommand{Data: []byte(fmt.Sprint("set k", i)), Timeout: int64(i) * 1e6})
		many.rep.Items = append(many.rep.Items, batchResult{Data: []byte("ok")})
	}
	return []batchBodySample{
		{batchRequest{Items: []batchCommand{}}, batchReply{Items: []batchResult{}}},
		{batchRequest{Items: []batchCommand{{Data: []byte("set a b"), Timeout: 5e9}, {Data: []byte{}}}},
			batchReply{Items: []batchResult{{Data: []byte("ok")}, {Code: codeRedirect, Msg: "not the leader", Leader: Peer{Name: "l", Addr: "127.0.0.1:1"}}}}},
		{batchRequest{Items: []batchCommand{{Data: make([]byte, 300), Timeout: -1}, {Data: []byte("cmd"), Session: 1 << 40, Seq: 7, Lowest: 3}}},
			batchReply{Items: []batchResult{{Code: codeDeadline, Msg: string(make([]byte, 300))}}}},
		many,
	}
}

type callBodySample struct {
	req callRequest
	rep callReply
}

func callBodySamples() []callBodySample {
	long := string(make([]byte, 300))
	return []callBodySample{
		{},
		{callRequest{Data: []byte{}}, callReply{Data: []byte{}}},
		{callRequest{Data: []byte("0123456789abcdef"), Timeout: 5e9}, callReply{Data: []byte("ok")}},
		{callRequest{Data: []byte("set k v"), Peer: Peer{Name: "n", Addr: "127.0.0.1:1"}, Name: long, Timeout: -1},
			callReply{Code: codeRedirect, Msg: long, Leader: Peer{Name: "l", Addr: long}}},
		{callRequest{Data: make([]byte, 70000)}, callReply{Data: make([]byte, 300), Status: &Status{Members: []Peer{{Name: "a"}}}}},
		{callRequest{}, callReply{Status: &Status{Name: "s", Role: Leader, Term: 3, Members: []Peer{}}}},
		{callRequest{Data: []byte("cmd"), Session: 1 << 40, Seq: 7, Lowest: 3}, callReply{Data: []byte("r"), Session: 12}},
		{callRequest{}, callReply{Status: &Status{Peers: []PeerStatus{{Peer: Peer{Name: "p"}, Voter: true, Match: 4}},
			Unreachable: []Unreachable{{Addr: "x:1", Err: "refused"}}}, Session: 1}},
	}
}

// The bodies encoded by hand are byte for byte those of reflection, so
// that either end can read what the other writes, and decode by hand into
// what reflection decodes.
func TestCallBodiesMatchReflection(t *testing.T) {
	for i, s := range callBodySamples() {
		want, err := wire.Marshal(&s.req)
		require.NoError(t, err)
		assert.Equal(t, want, s.req.appendTo(nil), "request %d", i)
		var q callRequest
		require.NoError(t, q.decode(want))
		assert.Equal(t, s.req, q, "request %d", i)

		want, err = wire.Marshal(&s.rep)
		require.NoError(t, err)
		got, err := s.rep.appendTo(nil)
		require.NoError(t, err)
		assert.Equal(t, want, got, "reply %d", i)
		var r callReply
		require.NoError(t, r.decode(want))
		assert.Equal(t, s.rep, r, "reply %d", i)
	}
}

// A reply without a Status, every reply but Status's, carries none: a Status
// of zero took three quarters of a Write's reply.
func TestCallReplyWithoutStatusIsSmall(t *testing.T) {
	b, err := (&callReply{Data: []byte("ok")}).appendTo(nil)
	require.NoError(t, err)
	assert.Less(t, len(b), 32, "a Write's reply of 2 bytes")
}

// A reply from a server that sent a Status, of zero, in every reply still
// decodes, as it did there.
func TestCallReplyReadsAStatusOfZero(t *testing.T) {
	old := struct {
		_msgpack struct{} `msgpack:",as_array"`
		Data     []byte
		Code     errCode
		Msg      string
		Leader   Peer
		Status   Status
		Session  uint64
	}{Data: []byte("ok"), Code: codeRedirect, Leader: Peer{Name: "l", Addr: "x:1"}, Session: 9}
	b, err := wire.Marshal(&old)
	require.NoError(t, err)
	var r callReply
	require.NoError(t, r.decode(b))
	assert.Equal(t, callReply{Data: []byte("ok"), Code: codeRedirect, Leader: Peer{Name: "l", Addr: "x:1"}, Status: &Status{}, Session: 9}, r)
}
