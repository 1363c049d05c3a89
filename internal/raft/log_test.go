package raft

import (
	"bytes"
	"testing"
)

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

// FuzzLog drives raftLog with appends (one to a few entries, or thousands at
// once, so that any internal chunking is crossed), truncations, slices and
// lookups decoded from the input, and compares every answer with a plain
// slice. It also checks the log's promise that what slice handed out is never
// written to afterwards.
func FuzzLog(f *testing.F) {
	f.Add([]byte{0, 3, 0, 2, 2, 1, 9, 200})
	f.Add([]byte{0, 4, 1, 0, 4, 2, 1, 2, 0, 2, 3, 2, 0, 9, 3, 1, 3})
	f.Add([]byte{0, 1, 0, 0, 1, 0, 0, 1, 1, 2, 1, 3, 1, 0, 0, 2, 0, 1, 2, 0, 8, 9, 3, 2, 2})
	f.Add([]byte{2, 0, 0, 0, 1, 5, 3, 0, 0, 0, 4, 5, 1, 1, 2, 3, 2, 4, 7, 40})
	// Thousands of entries, then slices, lookups and truncations around
	// index 4096 and 8192.
	f.Add([]byte{5, 255, 1, 5, 255, 0, 5, 255, 1, 2, 16, 0, 16, 10, 200, 3, 16, 0, 1, 15, 254, 2, 15, 250, 16, 5, 255, 0, 5, 255, 1, 5, 40, 0, 2, 31, 250, 32, 8, 255})
	f.Fuzz(func(t *testing.T, data []byte) {
		in := fuzzInput{b: data}
		var l raftLog
		var model []Entry
		type handed struct {
			got  []Entry
			want []Entry
		}
		var out []handed
		lastTerm := func() uint64 {
			if len(model) == 0 {
				return 0
			}
			return model[len(model)-1].Term
		}
		pos := func() uint64 { return uint64(in.byte())<<8 | uint64(in.byte()) }
		appendModel := func(k int, newTerm func(i int) bool, dataLen func() int) {
			var es []Entry
			term := max(lastTerm(), 1)
			for i := 0; i < k; i++ {
				if newTerm(i) {
					term++
				}
				d := bytes.Repeat([]byte{byte('a' + (len(model)+i)%26)}, dataLen())
				es = append(es, Entry{Index: uint64(len(model) + 1 + i), Term: term, Type: EntryType(i % 3), Data: d})
			}
			l.append(es...)
			model = append(model, es...)
		}
		for ops := 0; in.more() && ops < 200; ops++ {
			switch in.byte() % 6 {
			case 0: // append 1..4 entries continuing the log
				appendModel(1+int(in.byte()%4), func(int) bool { return in.byte()%4 == 0 }, func() int { return int(in.byte() % 40) })
			case 5: // append many
				if len(model) < 20000 {
					n := 1 + 16*int(in.byte())
					bump := int(in.byte()) * 16
					appendModel(n, func(i int) bool { return i == bump }, func() int { return n % 3 })
				}
			case 1: // truncate
				i := pos() % uint64(len(model)+3)
				l.truncateAfter(i)
				if i < uint64(len(model)) {
					model = model[:i:i]
				}
			case 2: // slice
				lo := pos() % uint64(len(model)+3)
				hi := lo + uint64(in.byte()%64)
				maxBytes := int(in.byte())
				if maxBytes%2 == 1 {
					maxBytes *= 64
				}
				got := l.slice(lo, hi, maxBytes)
				var want []Entry
				lo = max(lo, 1)
				hi = min(hi, uint64(len(model)))
				size := 0
				for i := lo; i <= hi; i++ {
					size += len(model[i-1].Data) + 16
					if size > maxBytes && i > lo {
						break
					}
					want = append(want, model[i-1])
				}
				if !entriesEqual(got, want) {
					t.Fatalf("slice(%d, %d, %d) = %v, want %v", lo, hi, maxBytes, got, want)
				}
				if cap(got) != len(got) {
					t.Fatalf("slice(%d, %d, %d) has room to append into the log: len %d cap %d", lo, hi, maxBytes, len(got), cap(got))
				}
				out = append(out, handed{got, append([]Entry(nil), want...)})
			case 3: // lookups
				i := pos() % uint64(len(model)+3)
				tm, ok := l.term(i)
				wantOK := i <= uint64(len(model))
				var wantT uint64
				if i > 0 && wantOK {
					wantT = model[i-1].Term
				}
				if tm != wantT || ok != wantOK {
					t.Fatalf("term(%d) = %d, %v; want %d, %v", i, tm, ok, wantT, wantOK)
				}
				if i > 0 && wantOK {
					if e := l.at(i); !entriesEqual([]Entry{*e}, model[i-1:i]) {
						t.Fatalf("at(%d) = %v, want %v", i, *e, model[i-1])
					}
				}
			case 4: // the election restriction
				li := pos() % uint64(len(model)+3)
				lt := lastTerm() + uint64(in.byte()%3) - min(lastTerm(), 1)
				want := lt > lastTerm() || (lt == lastTerm() && li >= uint64(len(model)))
				if got := l.isUpToDate(li, lt); got != want {
					t.Fatalf("isUpToDate(%d, %d) = %v with last %d/%d", li, lt, got, len(model), lastTerm())
				}
			}
			if l.lastIndex() != uint64(len(model)) || l.lastTerm() != lastTerm() {
				t.Fatalf("last = %d/%d, want %d/%d", l.lastIndex(), l.lastTerm(), len(model), lastTerm())
			}
			for _, h := range out {
				if !entriesEqual(h.got, h.want) {
					t.Fatalf("a slice handed out changed: %v, was %v", h.got, h.want)
				}
			}
		}
		for i := range model {
			if e := l.at(uint64(i + 1)); !entriesEqual([]Entry{*e}, model[i:i+1]) {
				t.Fatalf("at(%d) = %v, want %v", i+1, *e, model[i])
			}
		}
		if all := l.slice(1, l.lastIndex(), int(^uint(0)>>1)); !entriesEqual(all, model) {
			t.Fatalf("the whole log reads back as %d entries, want %d", len(all), len(model))
		}
		// Appending out of sequence must be refused.
		func() {
			defer func() {
				if recover() == nil {
					t.Fatalf("append of index %d after %d did not panic", l.lastIndex()+2, l.lastIndex())
				}
			}()
			l.append(Entry{Index: l.lastIndex() + 2, Term: lastTerm()})
		}()
	})
}

func entriesEqual(a, b []Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Index != b[i].Index || a[i].Term != b[i].Term || a[i].Type != b[i].Type || !bytes.Equal(a[i].Data, b[i].Data) {
			return false
		}
	}
	return true
}
