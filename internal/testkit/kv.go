package testkit

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// KV is the key-value state machine of the tests. Commands: "set k v"; Apply
// returns the previous value, or "ok" when k had none, so that a history
// checker learns what every write replaced. Queries: "get k" (the value, ""
// if none) and "dump" (every pair, sorted, one "k=v" a line; see ParseDump).
//
// It records every command it applied, in order, so that tests can compare
// the logs of the servers, and notices concurrent calls, which the
// StateMachine contract forbids.
type KV struct {
	mu      sync.Mutex
	data    map[string]string
	applied []string
	inside  atomic.Int32
	overlap atomic.Bool
}

// NewKV returns an empty KV.
func NewKV() *KV { return &KV{data: map[string]string{}} }

func (m *KV) enter() func() {
	if m.inside.Add(1) != 1 {
		m.overlap.Store(true)
	}
	return func() { m.inside.Add(-1) }
}

func (m *KV) Apply(command []byte) []byte {
	defer m.enter()()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.applyLocked(command)
}

// applyLocked is Apply for a caller that holds mu and has entered already:
// SnapKV extends its own state in the same critical section.
func (m *KV) applyLocked(command []byte) []byte {
	m.applied = append(m.applied, string(command))
	parts := strings.SplitN(string(command), " ", 3)
	if len(parts) != 3 || parts[0] != "set" {
		return []byte("error: unknown command " + string(command))
	}
	prev, ok := m.data[parts[1]]
	m.data[parts[1]] = parts[2]
	if !ok {
		return []byte("ok")
	}
	return []byte(prev)
}

func (m *KV) Query(query []byte) []byte {
	defer m.enter()()
	m.mu.Lock()
	defer m.mu.Unlock()
	q := string(query)
	switch {
	case q == "dump":
		keys := make([]string, 0, len(m.data))
		for k := range m.data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, "%s=%s\n", k, m.data[k])
		}
		return []byte(b.String())
	case strings.HasPrefix(q, "get "):
		return []byte(m.data[strings.TrimPrefix(q, "get ")])
	}
	return []byte("error: unknown query " + q)
}

// History returns a copy of the commands applied so far, in order.
func (m *KV) History() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.applied...)
}

// Get reads a key directly, bypassing the server.
func (m *KV) Get(k string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.data[k]
}

// overlapped reports whether the server ever called the KV from two
// goroutines at once.
func (m *KV) overlapped() bool { return m.overlap.Load() }

// ParseDump reads KV's answer to "dump".
func ParseDump(d string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(d, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			out[k] = v
		}
	}
	return out
}

// Replay applies history, a KV's applied commands, to a fresh KV: it
// returns what Apply returned the first time each command was applied, and
// how many times each was applied. A test compares the first with what a
// client was answered, and the second with 1.
func Replay(history []string) (first map[string]string, times map[string]int) {
	first, times = map[string]string{}, map[string]int{}
	kv := NewKV()
	for _, cmd := range history {
		res := string(kv.Apply([]byte(cmd)))
		if times[cmd]++; times[cmd] == 1 {
			first[cmd] = res
		}
	}
	return first, times
}
