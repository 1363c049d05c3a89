package testkit

import (
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// CheckTimeout bounds porcupine's search; past it the result is Unknown,
// which passes: a check too slow to finish has found no violation.
const CheckTimeout = 30 * time.Second

// History is what the clients of one run did: every operation with its call
// and return times, for porcupine, and counts that tell whether enough got
// through for the check to mean something.
type History struct {
	c      *Cluster
	start  time.Time
	keys   []string
	nextID atomic.Int64

	mu  sync.Mutex
	ops []operation

	writesOK, writesUnknown, writesFailed atomic.Int64
	writesBounded                         atomic.Int64 // unknown, but bounded by a later write (NewSessionClient)
	readsOK, readsFailed                  atomic.Int64
}

type operation struct {
	client    int // porcupine's ClientId
	in        KVInput
	out       KVOutput
	call, ret int64
}

// NewHistory starts a history of operations on keys of c; clients is the
// number of clients, whose ids come first, before the fresh identities
// taken after unknown outcomes.
func NewHistory(c *Cluster, keys []string, clients int) *History {
	h := &History{c: c, start: time.Now(), keys: keys}
	h.nextID.Store(int64(clients))
	return h
}

// Now is the history's clock.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Succeeded returns how many writes and reads succeeded.
func (h *History) Succeeded() (writes, reads int64) { return h.writesOK.Load(), h.readsOK.Load() }

// record adds op and returns its index.
func (h *History) record(op operation) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
	return len(h.ops) - 1
}

// bound sets the return time of the writes of unknown outcome at indexes:
// if they were ever applied, it was before ret.
func (h *History) bound(indexes []int, ret int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, i := range indexes {
		h.ops[i].ret = ret
		h.writesBounded.Add(1)
	}
}

// Check verifies the final applied log against the history (no write
// applied twice, every acknowledged write applied over the value it
// returned), then checks the history for linearizability; end is a time
// after every operation, where writes of unknown outcome are taken to
// return.
func (h *History) Check(t *testing.T, final []string, end int64) {
	t.Helper()
	isKey := map[string]bool{}
	for _, k := range h.keys {
		isKey[k] = true
	}
	// Replay the applied log: which value each applied write replaced.
	replaced := map[string]string{} // value -> the value it replaced
	state := map[string]string{}
	for _, cmd := range final {
		parts := strings.SplitN(cmd, " ", 3)
		if len(parts) != 3 || parts[0] != "set" || !isKey[parts[1]] {
			continue
		}
		_, dup := replaced[parts[2]]
		assert.Falsef(t, dup, "%q was applied twice", cmd)
		replaced[parts[2]] = state[parts[1]]
		state[parts[1]] = parts[2]
	}

	h.mu.Lock()
	ops := append([]operation(nil), h.ops...)
	h.mu.Unlock()
	history := make([]porcupine.Operation, 0, len(ops))
	pending, dropped := 0, 0
	for _, op := range ops {
		if op.in.Put {
			prev, applied := replaced[op.in.Val]
			switch {
			case op.out.Unknown && !applied:
				dropped++ // never applied anywhere: as if never sent
				continue
			case op.out.Unknown:
				pending++
				if op.ret < 0 {
					op.ret = end
				}
			case !applied:
				assert.Failf(t, "an acknowledged write is lost", "write %s=%s (client %d, returned at %v) is missing from the final log",
					op.in.Key, op.in.Val, op.client, time.Duration(op.ret))
			default:
				assert.Equalf(t, prev, op.out.Val, "write %s=%s returned previous value %q, but the log applied it over %q",
					op.in.Key, op.in.Val, op.out.Val, prev)
			}
		}
		history = append(history, porcupine.Operation{
			ClientId: op.client, Input: op.in, Output: op.out, Call: op.call, Return: op.ret,
		})
	}
	t.Logf("history: %d operations; writes: %d acknowledged, %d failed, %d unknown (%d applied, %d not; %d bounded by a later write); reads: %d, %d failed",
		len(history), h.writesOK.Load(), h.writesFailed.Load(), h.writesUnknown.Load(), pending, dropped, h.writesBounded.Load(),
		h.readsOK.Load(), h.readsFailed.Load())

	began := time.Now()
	res, info := porcupine.CheckOperationsVerbose(KVModel, history, CheckTimeout)
	t.Logf("porcupine: %s in %v", res, time.Since(began).Round(time.Millisecond))
	switch res {
	case porcupine.Illegal:
		f, err := os.CreateTemp("", "exraft-"+strings.ReplaceAll(t.Name(), "/", "_")+"-*.html")
		require.NoError(t, err, "history is not linearizable (and creating the visualisation failed)")
		path := f.Name()
		_ = f.Close()
		require.NoError(t, porcupine.VisualizePath(KVModel, info, path),
			"history is not linearizable (and writing the visualisation to %s failed)", path)
		require.FailNowf(t, "history is not linearizable", "visualisation: %s", path)
	case porcupine.Unknown:
		t.Logf("porcupine could not decide within %v; treating as no violation found", CheckTimeout)
	}
}
