package exraft

import (
	"sync"

	"github.com/exraft/exraft/internal/wire"
)

// Replies announced by the applier. A remote write's handler announces its
// reply to the connection's codec (wire.ServerCodec.Queue) so that replies
// written meanwhile wait and go out together; announced as each handler
// wakes, they went out a few at a time, a write each. The applier knows the
// whole batch first: it announces the replies of every remote call whose
// entry it is about to apply before it answers any, and the last of those
// handlers to write its reply sends them all in one write.

// announcer is what a proposal's submitter gives commit to hear, from the
// applier, that its result is about to come.
type announcer interface {
	// lend tells it that the applier may announce it from now on.
	lend()
	// announce runs on the applier, before it answers the proposal.
	announce()
}

// announce announces the proposals of an apply task that have an announcer.
func announce(waiters []*proposal) {
	for _, p := range waiters {
		if p.ann != nil {
			p.ann.announce()
		}
	}
}

// replyAnnouncement is a remote call's announcer. The applier and the call's
// handler race: the handler may have given up before the entry is applied,
// and then writes its reply unannounced; whichever of them is first decides
// (settle), under mu, so that a reply is announced only if it is yet to be
// written, and at most once: a reply announced and never written would hold
// up every later reply on its connection.
type replyAnnouncement struct {
	mu    sync.Mutex
	out   *wire.ServerCodec // nil: no codec to announce to
	reply *[]byte
	state announceState
	lent  bool
}

type announceState uint8

const (
	replyPending   announceState = iota
	replyAnnounced               // by the applier
	replySettled                 // by the handler, which announces it itself
)

func (a *replyAnnouncement) init(out *wire.ServerCodec, reply *[]byte) {
	a.out, a.reply = out, reply
}

func (a *replyAnnouncement) lend() {
	a.mu.Lock()
	a.lent = true
	a.mu.Unlock()
}

func (a *replyAnnouncement) announce() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.state == replyPending && a.out != nil {
		a.out.Queue(a.reply)
		a.state = replyAnnounced
	}
}

// settle decides, for the handler once its reply is set, whether the
// applier announced it, and reports too whether the applier could have
// (lend) and so may yet look at a.
func (a *replyAnnouncement) settle() (announced, lent bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.state == replyPending {
		a.state = replySettled
	}
	return a.state == replyAnnounced, a.lent
}
