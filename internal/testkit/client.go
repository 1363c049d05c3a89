package testkit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"

	"github.com/exraft/exraft"
)

// OpTimeout bounds one operation of a Client, retries included: long
// enough to ride out an election, short enough that a client stuck behind
// a partition gives up and tries elsewhere.
const OpTimeout = time.Second

// Outcome is what a client learned of an operation.
type Outcome int

const (
	Succeeded Outcome = iota
	Failed            // certainly had no effect
	Unknown           // may or may not have taken effect
)

// A session client's operation gets a deadline drawn between these, as a
// Session retries on its own until its deadline: the short ones end often
// with an unknown outcome (and a retry of it may still be in flight), the
// long ones ride out an election.
const (
	SessionOpMin = 50 * time.Millisecond
	SessionOpMax = 1500 * time.Millisecond
)

// Client issues one operation at a time on a Cluster, following redirects
// and retrying elsewhere when nothing was proposed. A recording client
// (History.NewClient) writes values no other client writes and records
// every operation whose outcome bears on linearizability.
type Client struct {
	c      *Cluster
	h      *History // nil: records nothing
	index  int      // unique across the run; names the values it writes
	id     int      // porcupine ClientId: a new one after each unknown outcome
	rng    *rand.Rand
	remote *exraft.Client // nil: call the Server methods in process
	target string
	seq    int

	// A session client (History.NewSessionClient) calls through sess.
	// If it is the only one to use sess, its writes of unknown outcome
	// are bounded by its next acknowledged write: unbounded lists them.
	sess      *exraft.Session
	exclusive bool
	unbounded []int // indexes in History.ops
}

// NewClient returns a client of c that records nothing, and sends its
// first operation to target.
func NewClient(c *Cluster, index int, rng *rand.Rand, target string) *Client {
	return &Client{c: c, index: index, id: index, rng: rng, target: target}
}

// NewClient returns a client that records into h; remote, if not nil,
// carries its calls over the wire instead of in process.
func (h *History) NewClient(index int, rng *rand.Rand, target string, remote *exraft.Client) *Client {
	cl := NewClient(h.c, index, rng, target)
	cl.h, cl.remote = h, remote
	return cl
}

// NewSessionClient returns a client that records into h and makes every
// call through sess, whose writes are applied once: an acknowledged write
// is recorded with its result, one whose outcome is unknown (its ctx
// ended, or ErrSessionExpired) as one that may have been applied.
//
// exclusive says that no other client uses sess. Then a write of unknown
// outcome is known to have been applied before the client's next
// acknowledged write returned, or never: that write told the cluster the
// Session had moved on, and a Session that moved on never applies an
// earlier write (session.go). The history records it so, instead of as
// pending until the end, and porcupine checks that bound.
func (h *History) NewSessionClient(index int, rng *rand.Rand, sess *exraft.Session, exclusive bool) *Client {
	cl := NewClient(h.c, index, rng, "")
	cl.h, cl.sess, cl.exclusive = h, sess, exclusive
	return cl
}

// Run issues random puts and gets on the history's keys until stop closes.
func (cl *Client) Run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		cl.one()
	}
}

func (cl *Client) one() {
	h := cl.h
	in := KVInput{Put: cl.rng.IntN(2) == 0, Key: h.keys[cl.rng.IntN(len(h.keys))]}
	payload := "get " + in.Key
	if in.Put {
		cl.seq++
		in.Val = fmt.Sprintf("c%d.%d", cl.index, cl.seq)
		payload = "set " + in.Key + " " + in.Val
	}
	call := h.Now()
	res, outcome := cl.Execute(in.Put, []byte(payload))
	op := operation{client: cl.id, in: in, call: call, ret: h.Now()}
	switch {
	case outcome == Succeeded && in.Put:
		op.out.Val = string(res)
		if op.out.Val == "ok" { // KV's answer when the key had no value
			op.out.Val = ""
		}
		h.writesOK.Add(1)
		if cl.exclusive {
			h.bound(cl.unbounded, op.ret)
			cl.unbounded = nil
		}
	case outcome == Succeeded:
		op.out.Val = string(res)
		h.readsOK.Add(1)
	case in.Put && outcome == Unknown:
		op.out.Unknown = true
		op.ret = -1 // set to the end of the history once it is known
		h.writesUnknown.Add(1)
		// Like a crashed process, the client goes on under a new identity:
		// its unknown operation stays pending until the end, or for an
		// exclusive session client until its next acknowledged write.
		cl.id = int(h.nextID.Add(1) - 1)
		i := h.record(op)
		if cl.exclusive {
			cl.unbounded = append(cl.unbounded, i)
		}
		return
	case in.Put:
		h.writesFailed.Add(1)
		return // certainly not applied: leave it out
	default:
		h.readsFailed.Add(1)
		return // a failed read tells nothing
	}
	h.record(op)
}

func (cl *Client) call(ctx context.Context, put bool, payload []byte) ([]byte, error) {
	if cl.remote != nil {
		addr := cl.c.Addr(cl.target)
		if put {
			return cl.remote.Write(ctx, addr, payload)
		}
		return cl.remote.Read(ctx, addr, payload)
	}
	s := cl.c.Server(cl.target)
	if put {
		return s.Write(ctx, payload)
	}
	return s.Read(ctx, payload)
}

// Execute runs one operation (a Write if put, else a Read) until it
// succeeds, fails for certain, or its outcome can no longer be known.
func (cl *Client) Execute(put bool, payload []byte) ([]byte, Outcome) {
	if cl.sess != nil {
		return cl.executeSession(put, payload)
	}
	ctx, cancel := context.WithTimeout(context.Background(), OpTimeout)
	defer cancel()
	redirects := 0
	for {
		if cl.c.IsDown(cl.target) {
			cl.retarget() // a stopped server answers nothing but ErrStopped
		}
		res, err := cl.call(ctx, put, payload)
		if err == nil {
			return res, Succeeded
		}
		var redirect *exraft.RedirectError
		switch {
		case errors.As(err, &redirect) && redirect.Leader.Name != cl.target && redirects < 3 && cl.c.nodes[redirect.Leader.Name] != nil:
			redirects++
			cl.target = redirect.Leader.Name
			continue
		case errors.Is(err, exraft.ErrNotLeader), notSent(err):
			// Nothing was proposed: no leader known, a stale redirect, or
			// the server could not be reached. Try another after a backoff.
			redirects = 0
			cl.retarget()
			if !backoff(ctx, cl.rng) {
				return nil, Failed
			}
			continue
		}
		cl.retarget()
		if !put {
			return nil, Failed
		}
		// ErrLeadershipLost, ErrStopped, a deadline or a broken connection:
		// the write may have been appended and may still commit.
		return nil, Unknown
	}
}

// executeSession runs one operation through the client's Session, which
// finds the leader and retries until the operation's deadline.
func (cl *Client) executeSession(put bool, payload []byte) ([]byte, Outcome) {
	ctx, cancel := context.WithTimeout(context.Background(), SessionOpMin+time.Duration(cl.rng.Int64N(int64(SessionOpMax-SessionOpMin))))
	defer cancel()
	var res []byte
	var err error
	if put {
		res, err = cl.sess.Write(ctx, payload)
	} else {
		res, err = cl.sess.Read(ctx, payload)
	}
	switch {
	case err == nil:
		return res, Succeeded
	case !put, errors.Is(err, exraft.ErrRejected), errors.Is(err, exraft.ErrTooLarge), errors.Is(err, exraft.ErrSessionClosed):
		return nil, Failed
	}
	// The ctx ended, or ErrSessionExpired: applied once or never.
	return nil, Unknown
}

// retarget picks another running server at random.
func (cl *Client) retarget() {
	names := cl.c.order
	for range 2 * len(names) {
		if cl.target = names[cl.rng.IntN(len(names))]; !cl.c.IsDown(cl.target) {
			return
		}
	}
}

// notSent reports errors that mean the request never reached a server.
func notSent(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// backoff waits a little before the next try; false when ctx ends first.
func backoff(ctx context.Context, rng *rand.Rand) bool {
	t := time.NewTimer(time.Duration(10+rng.IntN(30)) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
