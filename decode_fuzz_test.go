package exraft

import (
	"testing"

	"github.com/exraft/exraft/internal/wire"
)

// FuzzDecodeCall feeds client requests and replies, as the RPC service and
// the Client decode them, with arbitrary bytes: no panic, no allocation
// beyond what the bytes hold.
func FuzzDecodeCall(f *testing.F) {
	req, _ := wire.Marshal(&callRequest{Data: []byte("set k v"), Peer: Peer{Name: "n", Addr: "127.0.0.1:1"}, Timeout: 1e9})
	rep, _ := wire.Marshal(&callReply{Data: []byte("ok"), Code: codeRedirect, Leader: Peer{Name: "l"}, Status: Status{Members: []Peer{{Name: "a"}}}})
	f.Add(req)
	f.Add(rep)
	f.Add([]byte{0x96, 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var q callRequest
		_ = wire.Unmarshal(b, &q)
		var r callReply
		if wire.Unmarshal(b, &r) == nil {
			_ = decodeErr(&r)
		}
	})
}
