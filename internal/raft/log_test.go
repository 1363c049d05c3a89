package raft

import "testing"

// TestLogChunks checks the log across chunk boundaries against a plain
// slice, including truncation into a chunk whose entries were handed out.
func TestLogChunks(t *testing.T) {
	var l raftLog
	var model []Entry
	add := func(n int, term uint64) {
		for i := 0; i < n; i++ {
			e := Entry{Index: l.lastIndex() + 1, Term: term, Data: []byte{byte(len(model))}}
			l.append(e)
			model = append(model, e)
		}
	}
	check := func() {
		t.Helper()
		if l.lastIndex() != uint64(len(model)) {
			t.Fatalf("lastIndex %d, want %d", l.lastIndex(), len(model))
		}
		for i := range model {
			if got := *l.at(uint64(i + 1)); got.Index != model[i].Index || got.Term != model[i].Term {
				t.Fatalf("entry %d: got %+v want %+v", i+1, got, model[i])
			}
		}
		if got := l.slice(1, l.lastIndex(), 1<<30); len(got) != len(model) {
			t.Fatalf("slice returned %d entries, want %d", len(got), len(model))
		}
	}
	add(logChunk*2+10, 1)
	check()
	handed := l.slice(logChunk+1, logChunk+20, 1<<30) // a view of the second chunk
	before := append([]Entry(nil), handed...)
	l.truncateAfter(logChunk + 5)
	model = model[:logChunk+5]
	add(30, 2)
	check()
	for i := range handed {
		if handed[i].Term != before[i].Term {
			t.Fatalf("truncate and append wrote into a handed-out entry %d", handed[i].Index)
		}
	}
	across := l.slice(logChunk-2, logChunk+3, 1<<30)
	if len(across) != 6 || across[0].Index != logChunk-2 || across[5].Index != logChunk+3 {
		t.Fatalf("slice across chunks: %d entries from %d", len(across), across[0].Index)
	}
	if got := l.slice(1, 100, 40); len(got) != 2 {
		t.Fatalf("maxBytes 40 with 17-byte entries gave %d entries, want 2", len(got))
	}
	l.truncateAfter(logChunk)
	model = model[:logChunk]
	check()
	l.truncateAfter(0)
	model = nil
	check()
}
