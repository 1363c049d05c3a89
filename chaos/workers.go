package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/exraft/exraft"
)

// opTimeout is a client's deadline for one operation: short, so that
// operations end with unknown outcomes under faults, as they do for users.
const opTimeout = time.Second

// worker is one client: half of them write and read through a Session of
// their own, the others call one server at a time with a plain Client and
// follow redirects themselves. Each writes values no one else writes.
type worker struct {
	index   int
	id      int
	tag     string // makes values unique across rounds
	rng     *rand.Rand
	h       *history
	keys    []string
	addrs   []string
	session *exraft.Session
	client  *exraft.Client
	target  string
	seq     int

	unbounded []int // session writes of unknown outcome, bounded by the next acknowledged one

	// dirty, if set, sends the plain worker's reads to these addresses
	// with ReadDirty: the broken client path the checker must catch.
	dirty []string
}

// runWorkers runs n workers until ctx ends and waits for them.
func runWorkers(ctx context.Context, n int, seed uint64, tag string, h *history, keys, addrs, dirty []string) {
	var wg sync.WaitGroup
	for i := range n {
		w := &worker{index: i, id: i, tag: tag, rng: rand.New(rand.NewPCG(seed, uint64(i))), h: h, keys: keys, addrs: addrs,
			client: &exraft.Client{AttemptTimeout: 300 * time.Millisecond, IOTimeout: time.Second}}
		if i%2 == 0 {
			w.session = w.client.NewSession(addrs...)
		} else {
			w.target = addrs[i%len(addrs)]
			w.dirty = dirty
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx)
		}()
	}
	wg.Wait()
}

func (w *worker) run(ctx context.Context) {
	defer w.client.Close()
	defer w.closeSession()
	for ctx.Err() == nil {
		key := w.keys[w.rng.IntN(len(w.keys))]
		if w.rng.IntN(2) == 0 {
			w.write(key)
		} else {
			w.read(key)
		}
		// Pacing: enough operations to overlap, few enough that the
		// check stays quick.
		time.Sleep(time.Duration(2+w.rng.IntN(8)) * time.Millisecond)
	}
}

func (w *worker) write(key string) {
	w.seq++
	val := fmt.Sprintf("%s.%d.%d", w.tag, w.index, w.seq)
	cmd := []byte("put " + key + " " + val)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	call := w.h.now()
	var res []byte
	var err error
	if w.session != nil {
		res, err = w.session.Write(ctx, cmd)
	} else {
		res, err = w.client.Write(ctx, w.target, cmd)
	}
	ret := w.h.now()
	op := operation{client: w.id, in: kvInput{put: true, key: key, val: val}, call: call, ret: ret, session: w.session != nil}
	switch {
	case err == nil:
		w.h.counts.writesOK.Add(1)
		op.out.val = string(res)
		w.h.record(op)
		w.h.bound(w.unbounded, ret)
		w.unbounded = nil
	case w.notApplied(err):
		w.h.counts.writesFailed.Add(1)
	default:
		w.h.counts.writesUnknown.Add(1)
		op.out.unknown, op.ret = true, -1
		i := w.h.record(op)
		// A session write is never applied after the session's next
		// write; ErrSessionExpired ends that promise.
		if w.session != nil && !errors.Is(err, exraft.ErrSessionExpired) {
			w.unbounded = append(w.unbounded, i)
		}
		w.id = w.h.freshID()
		w.retarget(err)
	}
}

func (w *worker) read(key string) {
	q := []byte("get " + key)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	call := w.h.now()
	var res []byte
	var err error
	switch {
	case w.session != nil:
		res, err = w.session.Read(ctx, q)
	case w.dirty != nil:
		res, err = w.client.ReadDirty(ctx, w.dirty[w.rng.IntN(len(w.dirty))], q)
	default:
		res, err = w.client.Read(ctx, w.target, q)
	}
	if err != nil {
		w.h.counts.readsFailed.Add(1)
		w.retarget(err)
		return
	}
	w.h.counts.readsOK.Add(1)
	w.h.record(operation{client: w.id, in: kvInput{key: key}, out: kvOutput{val: string(res)}, call: call, ret: w.h.now()})
}

// notApplied says whether a plain write's error proves that nothing was
// appended: the server refused it as not the leader (a Session handles
// that itself, so its errors never prove it).
func (w *worker) notApplied(err error) bool {
	if w.session != nil {
		return errors.Is(err, exraft.ErrRejected) || errors.Is(err, exraft.ErrTooLarge)
	}
	if errors.Is(err, exraft.ErrNotLeader) {
		w.retarget(err)
		return true
	}
	return false
}

// retarget moves a plain worker to the leader a redirect names, or to a
// random server.
func (w *worker) retarget(err error) {
	if w.session != nil {
		return
	}
	var re *exraft.RedirectError
	if errors.As(err, &re) && re.Leader.Addr != "" {
		w.target = re.Leader.Addr
		return
	}
	w.target = w.addrs[w.rng.IntN(len(w.addrs))]
}

// closeSession lets the cluster forget the session now rather than at its
// expiry; a cluster without a leader forgets it then anyway.
func (w *worker) closeSession() {
	if w.session == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_ = w.session.Close(ctx)
}
