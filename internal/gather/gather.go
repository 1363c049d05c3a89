// Package gather is the one rule by which exraft's goroutines let others
// join a batch before they hand it on: the driver's proposals and read
// rounds, the messages queued for a peer, the replies and requests that
// share a connection's write.
//
// The rule: a goroutine about to hand on a batch yields once first if the
// last batch it handed on at the same place was shared. A shared batch
// means that what fills it comes from many goroutines, readied together by
// one event (a commit answering many writers, a round releasing many
// reads, a frame of many replies); on few processors those are runnable
// rather than running, and none would find the others' work queued unless
// they got to run first. A batch of one means the goroutine is alone, and
// a yield would only delay it: a lone caller, or a peer that gets one
// heartbeat at a time, pays nothing.
package gather

import (
	"runtime"
	"sync/atomic"
)

// A Point is a place where batches are handed on. Its zero value is ready,
// and counts as unshared. Its methods may be called from any goroutine.
type Point struct {
	shared atomic.Bool
}

// Yield yields the processor once if the last batch handed on at p was
// shared, so that the goroutines readied with this one add theirs first.
func (p *Point) Yield() {
	if p.shared.Load() {
		gosched()
	}
}

// gosched is runtime.Gosched; a test counts the yields.
var gosched = runtime.Gosched

// HandedOn records that a batch of n items left p.
func (p *Point) HandedOn(n int) {
	if shared := n > 1; p.shared.Load() != shared {
		p.shared.Store(shared)
	}
}
