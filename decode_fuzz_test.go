package exraft

import (
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// FuzzDecodeMembership feeds configuration entries, which arrive from peers,
// to their decoder: it must fail cleanly or round-trip.
func FuzzDecodeMembership(f *testing.F) {
	f.Add(encodeMembership(newMembership(Peer{Name: "a", Addr: "127.0.0.1:1"}, []Peer{{Name: "b", Addr: "127.0.0.1:2"}})))
	f.Add([]byte{0x91, 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMembership(b)
		if err != nil {
			return
		}
		again, err := decodeMembership(encodeMembership(m))
		if err != nil || !reflect.DeepEqual(again.Voters, m.Voters) && len(m.Voters) > 0 {
			t.Fatalf("round trip of %+v gave %+v, %v", m, again, err)
		}
	})
}

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
