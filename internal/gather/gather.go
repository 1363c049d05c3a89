// Package gather is the one rule by which exraft's goroutines let others
// join a batch before they hand it on: the driver's proposals and read
// rounds, a Client's shared write calls, the messages queued for a peer,
// the replies and requests that share a connection's write.
//
// The rule: a goroutine about to hand on a batch yields once first if the
// last batch it handed on at the same place was shared. A shared batch
// means that what fills it comes from many goroutines, readied together by
// one event (a commit answering many writers, a round releasing many
// reads, a frame of many replies); on few processors those are runnable
// rather than running, and none would find the others' work queued unless
// they got to run first. A batch of one means the goroutine is alone, and
// a yield would only delay it: a lone caller pays nothing.
//
// The driver's batches follow it (driver.go), and so does a Client's
// sender of shared write calls (client_batch.go). Three other yields keep
// triggers of their own. The peer stream's, before a batch when no call is
// in flight (transport.go), is for one goroutine, the driver, queueing the
// several messages of one Ready: a batch of one there does not mean the
// driver is done, and under this rule 64 writers took 13 to 29% more CPU
// per write and 40 to 50% longer at the median. The yield before a
// connection's write of replies (rpc.go) gained nothing measurable under
// it, and the one before a write of requests (internal/wire's Unqueue)
// was not tried: both stay as they are.
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
