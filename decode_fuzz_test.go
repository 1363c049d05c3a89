package exraft

import (
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// FuzzDecodeCall feeds client requests and replies, as the RPC service and
// the Client decode them, with arbitrary bytes: no panic, no allocation
// beyond what the bytes hold.
func FuzzDecodeCall(f *testing.F) {
	req, _ := msgpack.Marshal(&callRequest{Data: []byte("set k v"), Peer: Peer{Name: "n", Addr: "127.0.0.1:1"}, Timeout: 1e9})
	rep, _ := msgpack.Marshal(&callReply{Data: []byte("ok"), Code: codeRedirect, Leader: Peer{Name: "l"}, Status: Status{Members: []Peer{{Name: "a"}}}})
	f.Add(req)
	f.Add(rep)
	f.Add([]byte{0x96, 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if checkMsgpackValue(b) != nil {
			return
		}
		var q callRequest
		_ = msgpack.Unmarshal(b, &q)
		var r callReply
		if msgpack.Unmarshal(b, &r) == nil {
			_ = decodeErr(&r)
		}
	})
}
