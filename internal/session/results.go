package session

import (
	"maps"
	"slices"
)

// results holds a session's results from its lowest sequence number on.
// A client hands out sequence numbers in order and has a few writes in
// flight, so the numbers kept are nearly consecutive: most live in a ring
// indexed by their distance from lowest, which costs no hashing and no map
// deletes on the applier of every server (a map was the table's largest
// cost). A number further ahead than maxRing, which only a client that
// skips numbers sends, goes in a map, so that no record can make the ring
// grow without bound.
type results struct {
	lowest uint64
	ring   []slot // a power of two long, or empty
	head   int    // the slot of lowest
	n      int    // slots in use from head: the last kept is lowest+n-1
	far    map[uint64][]byte
	count  int // results kept, in the ring and in far
}

type slot struct {
	val []byte
	ok  bool
}

// maxRing bounds the ring: a result further than this from lowest goes in
// far.
const maxRing = 1 << 12

func (r *results) len() int { return r.count }

// get returns seq's result. seq is at least lowest.
func (r *results) get(seq uint64) ([]byte, bool) {
	if d := seq - r.lowest; d < uint64(r.n) {
		if s := r.ring[r.at(int(d))]; s.ok {
			return s.val, true
		}
	}
	val, ok := r.far[seq]
	return val, ok
}

// put keeps seq's result. seq is at least lowest, and has none yet.
func (r *results) put(seq uint64, val []byte) {
	r.count++
	d := seq - r.lowest
	if d >= maxRing {
		if r.far == nil {
			r.far = map[uint64][]byte{}
		}
		r.far[seq] = val
		return
	}
	if int(d) >= len(r.ring) {
		r.grow(int(d) + 1)
	}
	r.n = max(r.n, int(d)+1)
	r.ring[r.at(int(d))] = slot{val: val, ok: true}
}

// ack forgets every result below lowest.
func (r *results) ack(lowest uint64) {
	if lowest <= r.lowest {
		return
	}
	k := min(lowest-r.lowest, uint64(r.n))
	for i := 0; i < int(k); i++ {
		s := &r.ring[r.at(i)]
		if s.ok {
			r.count--
		}
		*s = slot{}
	}
	r.lowest = lowest
	r.n -= int(k)
	if r.n == 0 {
		r.head = 0
	} else {
		r.head = r.at(int(k))
	}
	for seq := range r.far {
		if seq < lowest {
			delete(r.far, seq)
			r.count--
		}
	}
}

// at is the ring's index of the slot d after lowest's.
func (r *results) at(d int) int { return (r.head + d) & (len(r.ring) - 1) }

// grow makes the ring hold at least n slots, lowest's first.
func (r *results) grow(n int) {
	size := max(8, len(r.ring))
	for size < n {
		size *= 2
	}
	ring := make([]slot, size)
	for i := range r.n {
		ring[i] = r.ring[r.at(i)]
	}
	r.ring, r.head = ring, 0
}

// sorted returns the sequence numbers kept, in order.
func (r *results) sorted() []uint64 {
	seqs := make([]uint64, 0, r.count)
	for i := range r.n {
		if r.ring[r.at(i)].ok {
			seqs = append(seqs, r.lowest+uint64(i))
		}
	}
	if len(r.far) > 0 {
		seqs = append(seqs, slices.Collect(maps.Keys(r.far))...)
		slices.Sort(seqs)
	}
	return seqs
}
