package exraft

import "fmt"

type entryType uint8

const (
	entryNormal entryType = iota
	entryNoop             // the leader's first entry of its term
	entryConfig           // Data is an encoded membership
)

// entry is one log entry, as stored and as sent.
type entry struct {
	_msgpack struct{} `msgpack:",as_array"`
	Index    uint64
	Term     uint64
	Type     entryType
	Data     []byte
}

// raftLog is the in-memory log: entries[i] holds index i+1. Index 0 is the
// empty prefix, of term 0, that every log shares.
//
// Slices handed out by slice are shared with messages on their way to peers,
// so the log never writes into an element it has handed out: truncation
// copies the kept prefix into a fresh array, and appends only write past the
// old length.
type raftLog struct {
	entries []entry
}

func (l *raftLog) lastIndex() uint64 { return uint64(len(l.entries)) }

func (l *raftLog) lastTerm() uint64 {
	if len(l.entries) == 0 {
		return 0
	}
	return l.entries[len(l.entries)-1].Term
}

// term returns the term of the entry at i, and false when there is none.
func (l *raftLog) term(i uint64) (uint64, bool) {
	if i == 0 {
		return 0, true
	}
	if i > uint64(len(l.entries)) {
		return 0, false
	}
	return l.entries[i-1].Term, true
}

func (l *raftLog) at(i uint64) *entry { return &l.entries[i-1] }

// append adds entries that continue the log; their indexes must follow on.
func (l *raftLog) append(es ...entry) {
	for _, e := range es {
		if e.Index != l.lastIndex()+1 {
			panic(fmt.Sprintf("exraft: log append of index %d after %d", e.Index, l.lastIndex()))
		}
		l.entries = append(l.entries, e)
	}
}

// truncateAfter drops every entry above index i.
func (l *raftLog) truncateAfter(i uint64) {
	if i >= l.lastIndex() {
		return
	}
	kept := make([]entry, i, i+1+i/4)
	copy(kept, l.entries[:i])
	l.entries = kept
}

// slice returns the entries lo..hi inclusive, at most maxBytes of payload
// (but always at least one entry when lo <= hi). The result must not be
// modified.
func (l *raftLog) slice(lo, hi uint64, maxBytes int) []entry {
	if lo == 0 {
		lo = 1
	}
	if hi > l.lastIndex() {
		hi = l.lastIndex()
	}
	if lo > hi {
		return nil
	}
	size := 0
	end := lo
	for ; end <= hi; end++ {
		size += len(l.entries[end-1].Data) + 16
		if size > maxBytes && end > lo {
			break
		}
	}
	return l.entries[lo-1 : end-1 : end-1]
}

// isUpToDate is the election restriction (Raft §5.4.1): a log ending in
// (lastTerm, lastIndex) is at least as up to date as this one.
func (l *raftLog) isUpToDate(lastIndex, lastTerm uint64) bool {
	return lastTerm > l.lastTerm() || (lastTerm == l.lastTerm() && lastIndex >= l.lastIndex())
}
