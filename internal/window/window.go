// Package window holds a run of values indexed by their distance from the
// first: sequence numbers from the lowest still wanted, which both ends of
// a session keep (the client the numbers in flight, the table the results
// not yet acknowledged). The numbers come mostly in order and are dropped
// from the front, so a ring serves them without hashing.
package window

// Window is a ring of T, the zero value empty. Values dropped or not yet
// set are T's zero value.
type Window[T any] struct {
	ring []T // a power of two long, or empty
	head int // the ring's index of the first value
	n    int // values in use from head
}

// Len is the number of values from the first to the last in use.
func (w *Window[T]) Len() int { return w.n }

// At returns the value d after the first; d must be below Len.
func (w *Window[T]) At(d int) *T { return &w.ring[w.index(d)] }

// Extend makes Len at least n, the new values zero.
func (w *Window[T]) Extend(n int) {
	if n > len(w.ring) {
		w.grow(n)
	}
	w.n = max(w.n, n)
}

// Drop drops the first k values (all of them if k is larger than Len, none
// if k is not positive).
func (w *Window[T]) Drop(k int) {
	k = min(k, w.n)
	if k <= 0 {
		return
	}
	var zero T
	for i := range k {
		w.ring[w.index(i)] = zero
	}
	w.n -= k
	if w.n == 0 {
		w.head = 0
		return
	}
	w.head = w.index(k)
}

func (w *Window[T]) index(d int) int { return (w.head + d) & (len(w.ring) - 1) }

// grow makes the ring hold at least n values, the first at 0.
func (w *Window[T]) grow(n int) {
	size := max(16, len(w.ring))
	for size < n {
		size *= 2
	}
	ring := make([]T, size)
	for i := range w.n {
		ring[i] = w.ring[w.index(i)]
	}
	w.ring, w.head = ring, 0
}
