package raft

import "fmt"

// EntryType tells what an entry carries.
type EntryType uint8

const (
	EntryNormal EntryType = iota
	EntryNoop             // the leader's first entry of its term
	EntryConfig           // Data is an encoded membership
	// EntrySession is a command of the driver's own (a client session's
	// record): the core treats it as EntryNormal.
	EntrySession
)

// Entry is one log entry, as stored and as sent.
type Entry struct {
	_msgpack struct{} `msgpack:",as_array"`
	Index    uint64
	Term     uint64
	Type     EntryType
	Data     []byte
}

// raftLog is the in-memory log. Entry i lives in chunk (i-1)/logChunk, at
// chunks[(i-1)/logChunk - base]. Fixed-size chunks keep appends O(1) with no
// copying of the whole log as it grows, so a long log costs the same per
// write as a short one, and compaction frees memory by dropping whole chunks.
//
// Entries up to floor are gone: covered by a snapshot (snapshot.go). The log
// still knows floor's term, which the entry after it is matched against
// (§5.3); a log never compacted has floor 0, the empty prefix of term 0 that
// every log shares. Below floor, the chunks that are wholly below it are
// dropped; an entry of a kept chunk below floor is never read.
//
// Slices handed out by slice are shared with messages on their way to peers
// and with the applier, so the log never writes into an element it has
// handed out: truncation copies the kept part of a chunk into a fresh one,
// and appends only write past the old length.
type raftLog struct {
	chunks    [][]Entry
	base      uint64 // the chunk number of chunks[0]
	last      uint64
	floor     uint64
	floorTerm uint64
}

const logChunk = 4096

func (l *raftLog) lastIndex() uint64 { return l.last }

// firstIndex is the first index the log holds an entry for (last+1 when it
// holds none).
func (l *raftLog) firstIndex() uint64 { return l.floor + 1 }

func (l *raftLog) lastTerm() uint64 {
	t, _ := l.term(l.last)
	return t
}

// term returns the term of the entry at i, and false when the log does not
// know it: i is past the end, or compacted away.
func (l *raftLog) term(i uint64) (uint64, bool) {
	switch {
	case i == l.floor:
		return l.floorTerm, true
	case i < l.floor || i > l.last:
		return 0, false
	}
	return l.at(i).Term, true
}

func (l *raftLog) at(i uint64) *Entry {
	return &l.chunks[(i-1)/logChunk-l.base][(i-1)%logChunk]
}

// append adds entries that continue the log; their indexes must follow on.
func (l *raftLog) append(es ...Entry) {
	for _, e := range es {
		if e.Index != l.last+1 {
			panic(fmt.Sprintf("raft: log append of index %d after %d", e.Index, l.last))
		}
		ci := int(l.last/logChunk - l.base)
		if ci == len(l.chunks) {
			l.chunks = append(l.chunks, make([]Entry, 0, logChunk))
		}
		l.chunks[ci] = append(l.chunks[ci], e)
		l.last++
	}
}

// truncateAfter drops every entry above index i, which must not be below
// floor.
func (l *raftLog) truncateAfter(i uint64) {
	if i >= l.last {
		return
	}
	ci, off := int(i/logChunk-l.base), int(i%logChunk)
	keep := ci
	if off > 0 {
		fresh := make([]Entry, off, logChunk)
		copy(fresh, l.chunks[ci][:off])
		l.chunks[ci] = fresh
		keep = ci + 1
	}
	clear(l.chunks[keep:])
	l.chunks = l.chunks[:keep]
	l.last = i
}

// compact forgets the entries up to i, which the log must hold (floor <= i
// <= last), and frees the chunks wholly below it.
func (l *raftLog) compact(i uint64) {
	if i <= l.floor {
		return
	}
	l.floorTerm, _ = l.term(i)
	l.floor = i
	drop := int(i/logChunk - l.base) // chunks whose last index is at most i
	if drop > 0 {
		clear(l.chunks[:drop])
		l.chunks = l.chunks[drop:]
		l.base += uint64(drop)
	}
}

// restart empties the log, which from now on continues the entry (index,
// term) that a snapshot covers.
func (l *raftLog) restart(index, term uint64) {
	clear(l.chunks)
	l.chunks = l.chunks[:0]
	l.base = index / logChunk
	if off := index % logChunk; off > 0 {
		// The chunk of index+1 begins with slots for the entries the
		// snapshot covers, which are never read.
		l.chunks = append(l.chunks, make([]Entry, off, logChunk))
	}
	l.last, l.floor, l.floorTerm = index, index, term
}

// slice returns the entries lo..hi inclusive, at most maxBytes of payload
// (but always at least one entry when lo <= hi); lo must be past floor.
// Within one chunk it is a view of the log; across chunks, a copy. The
// result must not be modified.
func (l *raftLog) slice(lo, hi uint64, maxBytes int) []Entry {
	lo = max(lo, l.floor+1)
	if hi > l.last {
		hi = l.last
	}
	if lo > hi {
		return nil
	}
	size := 0
	end := lo
	for ; end <= hi; end++ {
		size += len(l.at(end).Data) + 16
		if size > maxBytes && end > lo {
			break
		}
	}
	// end is one past the last entry returned.
	first, lastIn := (lo-1)/logChunk, (end-2)/logChunk
	if first == lastIn {
		c := l.chunks[first-l.base]
		a, b := (lo-1)%logChunk, (end-2)%logChunk+1
		return c[a:b:b]
	}
	out := make([]Entry, 0, end-lo)
	for i := lo; i < end; i++ {
		out = append(out, *l.at(i))
	}
	return out
}

// isUpToDate is the election restriction (Raft §5.4.1): a log ending in
// (lastTerm, lastIndex) is at least as up to date as this one.
func (l *raftLog) isUpToDate(lastIndex, lastTerm uint64) bool {
	return lastTerm > l.lastTerm() || (lastTerm == l.lastTerm() && lastIndex >= l.lastIndex())
}
