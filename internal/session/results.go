package session

import (
	"cmp"
	"slices"

	"github.com/exraft/exraft/internal/window"
)

// results holds a session's results from its lowest sequence number on.
// A client hands out sequence numbers in order and has a few writes in
// flight, so the numbers kept are nearly consecutive: most live in a
// window indexed by their distance from lowest, which costs no hashing and
// no map deletes on the applier of every server (a map was the table's
// largest cost). A number further ahead than maxRing (a client with more
// writes than that in flight, or one that skips numbers) goes in far, so
// that no record can make the window grow without bound.
type results struct {
	lowest uint64
	near   window.Window[slot] // from lowest on
	// far is in order of seq, so that ack drops those below lowest by
	// cutting a prefix: a client with thousands of writes in flight keeps
	// far full, and each of its writes moves lowest.
	far []farResult
}

type slot struct {
	val []byte
	ok  bool
}

type farResult struct {
	seq uint64
	val []byte
}

// maxRing bounds the window: a result further than this from lowest goes
// in far.
const maxRing = 1 << 12

func (r *results) len() int { return len(r.sorted()) }

// get returns seq's result. seq is at least lowest.
func (r *results) get(seq uint64) ([]byte, bool) {
	if d := seq - r.lowest; d < uint64(r.near.Len()) {
		if s := r.near.At(int(d)); s.ok {
			return s.val, true
		}
	}
	if i, ok := r.findFar(seq); ok {
		return r.far[i].val, true
	}
	return nil, false
}

// findFar returns where seq is, or would go, in far.
func (r *results) findFar(seq uint64) (int, bool) {
	return slices.BinarySearchFunc(r.far, seq, func(f farResult, seq uint64) int {
		return cmp.Compare(f.seq, seq)
	})
}

// put keeps seq's result. seq is at least lowest, and has none yet.
func (r *results) put(seq uint64, val []byte) {
	d := seq - r.lowest
	if d >= maxRing {
		i, ok := r.findFar(seq) // at the end, most often
		if ok {
			r.far[i].val = val
			return
		}
		r.far = slices.Insert(r.far, i, farResult{seq: seq, val: val})
		return
	}
	r.near.Extend(int(d) + 1)
	*r.near.At(int(d)) = slot{val: val, ok: true}
}

// ack forgets every result below lowest.
func (r *results) ack(lowest uint64) {
	if lowest <= r.lowest {
		return
	}
	r.near.Drop(int(min(lowest-r.lowest, uint64(r.near.Len()))))
	r.lowest = lowest
	below, _ := r.findFar(lowest)
	clear(r.far[:below]) // let go of the values
	r.far = r.far[below:]
}

// sorted returns the sequence numbers kept, in order.
func (r *results) sorted() []uint64 {
	seqs := make([]uint64, 0, r.near.Len()+len(r.far))
	for d := range r.near.Len() {
		if r.near.At(d).ok {
			seqs = append(seqs, r.lowest+uint64(d))
		}
	}
	if len(r.far) > 0 {
		// A far number may now lie below a near one put since.
		for _, f := range r.far {
			seqs = append(seqs, f.seq)
		}
		slices.Sort(seqs)
	}
	return seqs
}
