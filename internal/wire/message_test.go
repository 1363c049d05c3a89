package wire

import (
	"reflect"
	"strings"
	"testing"

	"github.com/exraft/exraft/internal/raft"
	"github.com/vmihailenco/msgpack/v5"
)

func wireSamples() [][]raft.Message {
	big := strings.Repeat("x", 300)
	return [][]raft.Message{
		nil,
		{{Type: raft.MsgVote, Term: 7, From: "a", FromInc: 1 << 40, FromAddr: "127.0.0.1:1", To: "b", LastIndex: 300, LastTerm: 6, Force: true}},
		{{Type: raft.MsgApp, Term: 1<<32 + 5, From: big, FromAddr: big, To: "c", PrevIndex: 70000, PrevTerm: 2,
			Entries: []raft.Entry{{Index: 70001, Term: 3, Type: raft.EntryNoop}, {Index: 70002, Term: 3, Data: []byte("hello")},
				{Index: 70003, Term: 3, Type: raft.EntryConfig, Data: make([]byte, 70000)}, {Index: 70004, Term: 3, Data: []byte{}}},
			Commit: 69999, Seq: 12},
			{Type: raft.MsgAppResp, Term: 3, From: "c", To: "a", Reject: true, HintIndex: 10, HintTerm: 2, Match: 0, LastIndex: 12},
			{Type: raft.MsgApp, Term: 3, Entries: []raft.Entry{}}},
	}
}

// TestWireMatchesReflection: the hand-written encoding is msgpack's own, in
// both directions.
func TestWireMatchesReflection(t *testing.T) {
	for i, msgs := range wireSamples() {
		mine := AppendMessages(nil, msgs)
		var back []raft.Message
		if err := msgpack.Unmarshal(mine, &back); err != nil {
			t.Fatalf("sample %d: msgpack cannot read the hand encoding: %v", i, err)
		}
		theirs, err := msgpack.Marshal(msgs)
		if err != nil {
			t.Fatal(err)
		}
		var d, d2 MessageDecoder // Decode's result lasts until the next call
		got, err := d.Decode(theirs)
		if err != nil {
			t.Fatalf("sample %d: cannot decode msgpack's encoding: %v", i, err)
		}
		got2, err := d2.Decode(mine)
		if err != nil {
			t.Fatalf("sample %d: cannot decode the hand encoding: %v", i, err)
		}
		want := msgs
		if len(want) == 0 && len(got) == 0 && len(got2) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(got2, want) {
			t.Fatalf("sample %d: round trip changed the messages:\n got %+v\nwant %+v", i, got2, want)
		}
	}
}

func TestWireRejectsGarbage(t *testing.T) {
	good := AppendMessages(nil, wireSamples()[2])
	var d MessageDecoder
	for cut := 0; cut < len(good)-1; cut += 97 {
		if _, err := d.Decode(good[:cut]); err == nil {
			t.Fatalf("a batch cut at %d of %d bytes decoded", cut, len(good))
		}
	}
	for _, bad := range [][]byte{
		{0xdd, 0xff, 0xff, 0xff, 0xff}, // four billion messages in five bytes
		{0x91, 0x92, 0x01, 0x02},       // a raft.Message of two fields
		{0x91, 0xdc, 0x00, 0x12},       // eighteen fields promised, none there
		append(good, 0x00),             // trailing byte
		{0x91, 0xde, 0x00, 0x00},       // a map where a raft.Message belongs
	} {
		if _, err := d.Decode(bad); err == nil {
			t.Fatalf("% x decoded", bad)
		}
	}
}

func FuzzDecodeMessages(f *testing.F) {
	for _, msgs := range wireSamples() {
		f.Add(AppendMessages(nil, msgs))
	}
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var d, d2 MessageDecoder
		msgs, err := d.Decode(b)
		if err != nil {
			return
		}
		// What decodes must encode and decode to the same messages.
		again, err := d2.Decode(AppendMessages(nil, msgs))
		if err != nil || !reflect.DeepEqual(normalize(again), normalize(msgs)) {
			t.Fatalf("re-encoding changed %+v into %+v (%v)", msgs, again, err)
		}
	})
}

// normalize makes empty and nil slices compare equal.
func normalize(msgs []raft.Message) []raft.Message {
	out := make([]raft.Message, len(msgs))
	for i, m := range msgs {
		if len(m.Entries) == 0 {
			m.Entries = nil
		}
		for j := range m.Entries {
			if len(m.Entries[j].Data) == 0 {
				m.Entries[j].Data = nil
			}
		}
		out[i] = m
	}
	return out
}
