package raft

import (
	"bytes"
	"reflect"
	"runtime"
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
			if got := l.at(uint64(i + 1)); got.Index != model[i].Index || got.Term != model[i].Term {
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
	// Large payloads and small ones mixed, sliced, truncated in the middle
	// and appended to again.
	f.Add([]byte{0, 3, 0, 250, 0, 255, 0, 241, 0, 3, 0, 5, 0, 7, 0, 2, 0, 245, 0, 9, 2, 0, 1, 20, 255, 0, 3, 0, 248, 0, 1, 0, 9, 0, 4, 1, 0, 5, 0, 3, 0, 1, 0, 2, 0, 6, 0, 254, 2, 0, 1, 30, 255, 1, 0, 2, 0, 3, 0, 249, 0, 1, 0, 2})
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
				appendModel(1+int(in.byte()%4), func(int) bool { return in.byte()%4 == 0 }, func() int {
					// Mostly small payloads; from 240 up, sizes
					// around the one above which a payload gets a
					// block of its own, and enough to fill an open
					// block after a few.
					b := int(in.byte())
					if b >= 240 {
						return logBigPayload - 32 + (b-240)*4
					}
					return b % 40
				})
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
					if e := l.at(i); !entriesEqual([]Entry{e}, model[i-1:i]) {
						t.Fatalf("at(%d) = %v, want %v", i, e, model[i-1])
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
			if e := l.at(uint64(i + 1)); !entriesEqual([]Entry{e}, model[i:i+1]) {
				t.Fatalf("at(%d) = %v, want %v", i+1, e, model[i])
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

// TestLogKeepsPayloadsHandedOut: a payload that slice handed out keeps its
// bytes when the entries after it are truncated and others appended in their
// place, of small payloads and of ones with blocks of their own, and a
// handed-out payload has no room to append into the log's storage.
func TestLogKeepsPayloadsHandedOut(t *testing.T) {
	var l raftLog
	add := func(term uint64, fill byte, sizes ...int) {
		for _, n := range sizes {
			l.append(Entry{Index: l.lastIndex() + 1, Term: term, Data: bytes.Repeat([]byte{fill}, n)})
		}
	}
	add(1, 'a', 10, 10, logBigPayload+1, 10, 10, 10)
	handed := l.slice(1, l.lastIndex(), 1<<30)
	want := make([][]byte, len(handed))
	for i, e := range handed {
		want[i] = bytes.Clone(e.Data)
		if cap(e.Data) != len(e.Data) {
			t.Fatalf("entry %d's payload has room for %d more bytes of the log's", e.Index, cap(e.Data)-len(e.Data))
		}
	}
	_ = append(handed[1].Data, 'x') // must land in a copy, not over entry 2
	l.truncateAfter(2)
	add(2, 'b', 10, logBigPayload+1, 10, 10, 10)
	l.truncateAfter(4)
	add(3, 'c', 10, 10, 10, 10)
	for i, e := range handed {
		if !bytes.Equal(e.Data, want[i]) {
			t.Fatalf("entry %d handed out before the truncations now reads %q, was %q", e.Index, e.Data, want[i])
		}
	}
	got := l.slice(1, l.lastIndex(), 1<<30)
	wantNow := []byte("aabbcccc")
	if len(got) != len(wantNow) {
		t.Fatalf("log holds %d entries, want %d", len(got), len(wantNow))
	}
	for i, e := range got {
		if e.Data[0] != wantNow[i] || e.Data[len(e.Data)-1] != wantNow[i] {
			t.Fatalf("entry %d reads %q..., want %q", e.Index, e.Data[:1], wantNow[i])
		}
	}
	// A truncation that drops the block small payloads were going to.
	l.truncateAfter(0)
	add(4, 'd', logBigPayload+1, 10)
	l.truncateAfter(1)
	add(4, 'e', 10)
	if e := l.at(2); string(e.Data) != "eeeeeeeeee" {
		t.Fatalf("entry 2 reads %q after a truncation dropped its block", e.Data)
	}
}

// TestLogCopiesPayloads: the log keeps its own copy of a payload, so the
// caller may reuse its buffer, and a follower's log does not keep alive the
// message its entries were decoded from.
func TestLogCopiesPayloads(t *testing.T) {
	var l raftLog
	buf := []byte("first")
	big := bytes.Repeat([]byte{'b'}, logBigPayload+1)
	l.append(Entry{Index: 1, Term: 1, Data: buf}, Entry{Index: 2, Term: 1, Data: big})
	copy(buf, "XXXXX")
	big[0] = 'X'
	if e := l.at(1); string(e.Data) != "first" {
		t.Fatalf("entry 1 reads %q after its caller's buffer changed", e.Data)
	}
	if e := l.at(2); e.Data[0] != 'b' {
		t.Fatalf("entry 2 changed with its caller's buffer")
	}
}

// TestLogRetainsNoObjectPerEntry: what the log retains for small entries is
// a few large objects per chunk, not one per entry (as a payload slice per
// entry would be), and nothing in an entry's record is a pointer for the
// garbage collector to follow. Each entry's payload is allocated apart, as
// a leader's commands are.
func TestLogRetainsNoObjectPerEntry(t *testing.T) {
	if p := pointerIn(reflect.TypeOf(entryRec{})); p != "" {
		t.Fatalf("entryRec holds a pointer in %s: the collector would follow it for every entry", p)
	}
	const n = 4 * logChunk
	var l raftLog
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := uint64(1); i <= n; i++ {
		d := make([]byte, 16)
		d[0] = byte(i % 251)
		l.append(Entry{Index: i, Term: 1, Data: d})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if objs := float64(after.HeapObjects) - float64(before.HeapObjects); objs > n/100 {
		t.Fatalf("the log of %d entries keeps %.0f more heap objects alive", n, objs)
	}
	if e := l.at(n); e.Data[0] != byte(n%251) {
		t.Fatalf("entry %d reads %d", n, e.Data[0])
	}
}

// TestLogCompactionFreesChunks: compaction lets go of the chunks wholly
// below the new floor, payloads included.
func TestLogCompactionFreesChunks(t *testing.T) {
	const chunks, size = 8, 256
	var l raftLog
	var full, compacted runtime.MemStats
	for i := uint64(1); i <= chunks*logChunk; i++ {
		l.append(Entry{Index: i, Term: 1, Data: make([]byte, size)})
	}
	runtime.GC()
	runtime.ReadMemStats(&full)
	l.compact((chunks-1)*logChunk + 1)
	runtime.GC()
	runtime.ReadMemStats(&compacted)
	if len(l.chunks) != 1 {
		t.Fatalf("%d chunks kept after compacting into the last", len(l.chunks))
	}
	// Seven chunks of 4096 payloads of 256 bytes are 7 MiB, with their
	// records; allow for anything else the runtime does meanwhile.
	const least = (chunks - 1) * logChunk * size * 3 / 4
	if freed := int64(full.HeapAlloc) - int64(compacted.HeapAlloc); freed < least {
		t.Fatalf("compacting 7 of 8 chunks freed %d bytes, want at least %d", freed, least)
	}
	if e := l.at(chunks * logChunk); e.Index != chunks*logChunk || len(e.Data) != size {
		t.Fatalf("the last entry reads %+v after compaction", e)
	}
}

// pointerIn names a part of t that the garbage collector would have to
// follow, or returns "".
func pointerIn(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			if p := pointerIn(t.Field(i).Type); p != "" {
				return t.Field(i).Name + "." + p
			}
		}
		return ""
	case reflect.Array:
		return pointerIn(t.Elem())
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return ""
	}
	return t.Kind().String()
}

// BenchmarkLogGC measures a garbage collection while a log of a million
// 16-byte entries is held, each payload allocated apart as a leader's
// commands are, and reports the heap each entry keeps: the collector's work
// should not grow with the log.
func BenchmarkLogGC(b *testing.B) {
	const n = 1 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var l raftLog
	for i := uint64(1); i <= n; i++ {
		l.append(Entry{Index: i, Term: 1, Data: make([]byte, 16)})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		runtime.GC()
	}
	b.StopTimer()
	runtime.KeepAlive(&l)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heapB/entry")
}

// TestLogSliceAfterRestart: what slice handed out before the log restarted
// from a snapshot is not handed out again for the new entries at the same
// indexes.
func TestLogSliceAfterRestart(t *testing.T) {
	var l raftLog
	for i := uint64(1); i <= 10; i++ {
		l.append(Entry{Index: i, Term: 1, Data: []byte("old")})
	}
	_ = l.slice(5, 10, 1<<30)
	l.restart(4, 1)
	for i := uint64(5); i <= 10; i++ {
		l.append(Entry{Index: i, Term: 2, Data: []byte("new")})
	}
	for _, e := range l.slice(5, 10, 1<<30) {
		if e.Term != 2 || string(e.Data) != "new" {
			t.Fatalf("entry %d reads %d/%q after the restart, want 2/new", e.Index, e.Term, e.Data)
		}
	}
}
