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

// Entry is one log entry, as sent and as handed out to apply; the log
// stores it differently (entryRec).
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
// A chunk holds no pointer per entry: each entry is a fixed record (entryRec)
// and its payload is copied into the chunk's byte blocks. An Entry per
// retained entry, with a Data slice to a payload of its own, would give the
// garbage collector millions of objects to mark and pointers to follow in
// every cycle, a cost that grows with the log and is paid in the writes'
// latency; pointer-free arrays are not even scanned. It also costs a
// 16-byte command 33 heap bytes rather than 65.
//
// Entries up to floor are gone: covered by a snapshot (snapshot.go). The log
// still knows floor's term, which the entry after it is matched against
// (§5.3); a log never compacted has floor 0, the empty prefix of term 0 that
// every log shares. Below floor, the chunks that are wholly below it are
// dropped; an entry of a kept chunk below floor is never read.
//
// The Entries that slice hands out are built from the records, their Data
// views of the blocks, capped so that appending to one cannot reach the
// bytes after it. They are shared with messages on their way to peers and with the
// applier, so the log never writes over a payload byte it has stored: blocks
// are only ever filled past their length, which truncation leaves as it is.
type raftLog struct {
	chunks    []chunk
	base      uint64 // the chunk number of chunks[0]
	last      uint64
	floor     uint64
	floorTerm uint64
	// lastOut is slice's last result, entries from lastOutLo on. The
	// leader asks for the same entries for each follower and then for the
	// applier, and as nobody modifies them one array serves all, instead
	// of an allocation each. Only appends leave it as it is.
	lastOut   []Entry
	lastOutLo uint64
}

const logChunk = 4096

// chunk holds logChunk consecutive entries, from the first index of its
// chunk number.
type chunk struct {
	recs []entryRec
	// types are the entries' types, apart from recs so that a record
	// takes 16 bytes rather than 24.
	types []EntryType
	// blocks hold the payloads. Small ones are packed into the open block,
	// of logBlock bytes, until the next does not fit; a large one gets a
	// block of its own, of its exact size, so that no block wastes more
	// than a small payload's worth of room.
	blocks [][]byte
	open   int // the index in blocks of the block small payloads go to; -1 for none
}

// entryRec is an entry of a chunk, its index implied by its position.
type entryRec struct {
	term  uint64
	n     uint32 // payload length
	start uint16 // where its payload starts in its block; 0 in a block of its own
	block uint16 // index in the chunk's blocks, when n > 0 (a chunk has at most one block per entry)
}

const (
	logBlock = 64 << 10
	// A payload above logBlock/8 bytes gets a block of its own; one at or
	// below it wastes at most an eighth of an open block it does not fit
	// in.
	logBigPayload = logBlock / 8
)

// A payload's start in an open block must fit entryRec.start, and a
// chunk's block numbers entryRec.block.
const (
	_ = uint16(logBlock - 1)
	_ = uint16(logChunk - 1)
)

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
	c, k := l.locate(i)
	return c.recs[k].term, true
}

// locate returns the chunk of entry i and its position there.
func (l *raftLog) locate(i uint64) (*chunk, int) {
	return &l.chunks[(i-1)/logChunk-l.base], int((i - 1) % logChunk)
}

// at returns the entry at i, which the log must hold.
func (l *raftLog) at(i uint64) Entry {
	c, k := l.locate(i)
	return c.entry(i, k)
}

func (c *chunk) entry(i uint64, k int) Entry {
	r := &c.recs[k]
	e := Entry{Index: i, Term: r.term, Type: c.types[k]}
	if r.n > 0 {
		start := uint32(r.start)
		end := start + r.n
		e.Data = c.blocks[r.block][start:end:end]
	}
	return e
}

// add stores e after the chunk's last entry, copying its payload.
func (c *chunk) add(e *Entry) {
	r := entryRec{term: e.Term}
	if n := len(e.Data); n > 0 {
		if uint64(n) > 1<<32-1 {
			panic(fmt.Sprintf("raft: an entry's payload of %d bytes", n))
		}
		r.n = uint32(n)
		if n > logBigPayload {
			c.blocks = append(c.blocks, append(make([]byte, 0, n), e.Data...))
			r.block = uint16(len(c.blocks) - 1)
		} else {
			if c.open < 0 || len(c.blocks[c.open])+n > cap(c.blocks[c.open]) {
				c.blocks = append(c.blocks, make([]byte, 0, logBlock))
				c.open = len(c.blocks) - 1
			}
			b := c.blocks[c.open]
			r.block, r.start = uint16(c.open), uint16(len(b))
			c.blocks[c.open] = append(b, e.Data...)
		}
	}
	c.recs = append(c.recs, r)
	c.types = append(c.types, e.Type)
}

func newChunk() chunk {
	return chunk{recs: make([]entryRec, 0, logChunk), types: make([]EntryType, 0, logChunk), open: -1}
}

// append adds entries that continue the log; their indexes must follow on.
// The log keeps copies of their payloads, not the entries' own.
func (l *raftLog) append(es ...Entry) {
	for i := range es {
		if es[i].Index != l.last+1 {
			panic(fmt.Sprintf("raft: log append of index %d after %d", es[i].Index, l.last))
		}
		ci := int(l.last/logChunk - l.base)
		if ci == len(l.chunks) {
			l.chunks = append(l.chunks, newChunk())
		}
		l.chunks[ci].add(&es[i])
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
		l.chunks[ci].truncate(off)
		keep = ci + 1
	}
	clear(l.chunks[keep:])
	l.chunks = l.chunks[:keep]
	l.last = i
	l.lastOut = nil
}

// truncate keeps the chunk's first n entries. The payloads of the dropped
// ones may have been handed out, so the blocks keep their length, and the
// next payloads go after them rather than over them. The blocks only the
// dropped entries used are let go.
func (c *chunk) truncate(n int) {
	c.recs, c.types = c.recs[:n], c.types[:n]
	used := 0
	for k := range c.recs {
		if c.recs[k].n > 0 {
			used = max(used, int(c.recs[k].block)+1)
		}
	}
	clear(c.blocks[used:])
	c.blocks = c.blocks[:used]
	if c.open >= used {
		c.open = -1
	}
}

// compact forgets the entries up to i, which the log must hold (floor <= i
// <= last), and frees the chunks wholly below it.
func (l *raftLog) compact(i uint64) {
	if i <= l.floor {
		return
	}
	l.floorTerm, _ = l.term(i)
	l.floor = i
	l.lastOut = nil
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
		// The chunk of index+1 begins with records for the entries the
		// snapshot covers, which are never read.
		c := newChunk()
		c.recs, c.types = c.recs[:off], c.types[:off]
		l.chunks = append(l.chunks, c)
	}
	l.last, l.floor, l.floorTerm = index, index, term
	l.lastOut = nil
}

// slice returns the entries lo..hi inclusive, at most maxBytes of payload
// (but always at least one entry when lo <= hi); lo must be past floor.
// The result may be shared with earlier and later callers, and has no room
// to append into; it must not be modified, nor its payloads, which are
// views of the log.
func (l *raftLog) slice(lo, hi uint64, maxBytes int) []Entry {
	lo = max(lo, l.floor+1)
	if hi > l.last {
		hi = l.last
	}
	if lo > hi {
		return nil
	}
	size := 0
	end := lo // one past the last entry returned
	for ; end <= hi; end++ {
		c, k := l.locate(end)
		size += int(c.recs[k].n) + 16
		if size > maxBytes && end > lo {
			break
		}
	}
	if from := l.lastOutLo; lo >= from && end <= from+uint64(len(l.lastOut)) {
		a, b := lo-from, end-from
		return l.lastOut[a:b:b]
	}
	out := make([]Entry, end-lo)
	for i := lo; i < end; i++ {
		c, k := l.locate(i)
		out[i-lo] = c.entry(i, k)
	}
	l.lastOut, l.lastOutLo = out, lo
	return out
}

// isUpToDate is the election restriction (Raft §5.4.1): a log ending in
// (lastTerm, lastIndex) is at least as up to date as this one.
func (l *raftLog) isUpToDate(lastIndex, lastTerm uint64) bool {
	return lastTerm > l.lastTerm() || (lastTerm == l.lastTerm() && lastIndex >= l.lastIndex())
}
