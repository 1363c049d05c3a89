package exraft

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// reach remembers, per peer address, why the last attempt to connect to it
// failed, until one succeeds. Waits that depend on a peer answering (a
// bootstrap election, AddServer catching a server up) read it to say what
// they wait on, and it logs each episode once: when a peer becomes
// unreachable and when it is reached again, instead of a line per retry.
type reach struct {
	log     *slog.Logger
	mu      sync.Mutex
	failing map[string]error
	since   map[string]time.Time // the first failure of the episode
}

func newReach(log *slog.Logger) *reach {
	return &reach{log: log, failing: map[string]error{}, since: map[string]time.Time{}}
}

// failed records that connecting to addr failed with err.
func (r *reach) failed(addr string, err error) {
	r.mu.Lock()
	_, known := r.failing[addr]
	r.failing[addr] = err
	if !known {
		r.since[addr] = time.Now()
	}
	r.mu.Unlock()
	if known {
		return
	}
	if errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrNotExraft) {
		// Retrying will not mend this: the operator must.
		r.log.Warn("a peer refused this server's connection", "peer", addr, "err", err)
		return
	}
	r.log.Info("cannot reach a peer; retrying", "peer", addr, "err", err)
}

// reached records that a connection to addr was made.
func (r *reach) reached(addr string) {
	r.mu.Lock()
	_, known := r.failing[addr]
	delete(r.failing, addr)
	delete(r.since, addr)
	r.mu.Unlock()
	if known {
		r.log.Info("reached a peer again", "peer", addr)
	}
}

// forget drops what is known of addr, silently: nothing is sent to it any
// more, so nothing waits on it.
func (r *reach) forget(addr string) {
	r.mu.Lock()
	delete(r.failing, addr)
	delete(r.since, addr)
	r.mu.Unlock()
}

// lastError returns why the last attempt to connect to addr failed, or nil
// if it did not or none was made.
func (r *reach) lastError(addr string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failing[addr]
}

// list returns every peer that cannot be reached, by address.
func (r *reach) list() []Unreachable {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.failing) == 0 {
		return nil
	}
	out := make([]Unreachable, 0, len(r.failing))
	for addr, err := range r.failing {
		out = append(out, Unreachable{Addr: addr, Err: err.Error(), Since: r.since[addr]})
	}
	slices.SortFunc(out, func(a, b Unreachable) int { return strings.Compare(a.Addr, b.Addr) })
	return out
}
