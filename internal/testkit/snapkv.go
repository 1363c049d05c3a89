package testkit

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/exraft/exraft"
)

// SnapKV is a KV that is also an exraft.Snapshotter. Its snapshots carry
// the commands applied so far as well as the map, so that a server restored
// from one has the same History as a server that applied every command:
// AwaitConverged, AwaitSameLog and History.Check, which compare histories,
// then hold across restores, and check that a restore gave back exactly
// what was applied.
//
// Knobs make the next calls of Snapshot, of a snapshot's WriteTo or of
// Restore fail, or hold Restore on a gate; counters tell what happened.
// Both may be used while the server runs.
type SnapKV struct {
	*KV
	// log is KV.applied encoded as a snapshot carries it, extended by every
	// Apply under KV.mu. Bytes once appended never change, so Snapshot
	// takes a view of it rather than a copy, and the cost of a snapshot
	// does not grow with the commands applied but for one memory copy.
	log []byte

	failSnapshots, failWrites, failRestores atomic.Int32 // calls left to fail

	snapshots, snapshotErrs atomic.Int32
	restores, restoreErrs   atomic.Int32

	gateMu  sync.Mutex
	gate    chan struct{} // nil: Restore does not wait
	entered chan struct{}
}

// NewSnapKV returns a SnapKV around kv, or around a new KV if kv is nil.
func NewSnapKV(kv *KV) *SnapKV {
	if kv == nil {
		kv = NewKV()
	}
	m := &SnapKV{KV: kv}
	kv.mu.Lock()
	for _, c := range kv.applied {
		m.log = appendField(m.log, c)
	}
	kv.mu.Unlock()
	return m
}

func (m *SnapKV) Apply(command []byte) []byte {
	defer m.enter()()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.log = appendField(m.log, command)
	return m.applyLocked(command)
}

var errSnapMagic = errors.New("not a SnapKV snapshot")

// snapMagic begins every snapshot, so that Restore of anything else fails
// rather than restore nonsense.
const snapMagic = "testkit.SnapKV/1\n"

// maxSnapField bounds one string of a snapshot: a corrupt length fails
// Restore instead of allocating without limit.
const maxSnapField = 64 << 20

func (m *SnapKV) Snapshot() (io.WriterTo, error) {
	defer m.enter()()
	if takeOne(&m.failSnapshots) {
		m.snapshotErrs.Add(1)
		return nil, errors.New("testkit.SnapKV: Snapshot told to fail")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return &snapImage{
		m:     m,
		data:  maps.Clone(m.data),
		count: len(m.applied),
		log:   m.log[:len(m.log):len(m.log)],
	}, nil
}

// snapImage is the state as of one Snapshot. The next Applies replace
// neither its map, a copy, nor the bytes of its log, which they only
// append after, so WriteTo may run beside them.
type snapImage struct {
	m     *SnapKV
	data  map[string]string
	count int
	log   []byte
}

// WriteTo writes the magic, the pairs sorted by key, and the log: counts
// and lengths are uvarints, each string is its length and its bytes.
func (im *snapImage) WriteTo(w io.Writer) (int64, error) {
	if takeOne(&im.m.failWrites) {
		im.m.snapshotErrs.Add(1)
		return 0, errors.New("testkit.SnapKV: WriteTo told to fail")
	}
	head := []byte(snapMagic)
	head = binary.AppendUvarint(head, uint64(len(im.data)))
	for _, k := range slices.Sorted(maps.Keys(im.data)) {
		head = appendField(head, k)
		head = appendField(head, im.data[k])
	}
	head = binary.AppendUvarint(head, uint64(im.count))
	head = binary.AppendUvarint(head, uint64(len(im.log)))
	n, err := w.Write(head)
	total := int64(n)
	if err == nil {
		n, err = w.Write(im.log)
		total += int64(n)
	}
	if err != nil {
		im.m.snapshotErrs.Add(1)
		return total, err
	}
	im.m.snapshots.Add(1)
	return total, nil
}

func (m *SnapKV) Restore(r io.Reader) error {
	defer m.enter()()
	m.gateMu.Lock()
	gate, entered := m.gate, m.entered
	m.gateMu.Unlock()
	if entered != nil {
		select {
		case entered <- struct{}{}:
		default: // a signal is pending already; one is all a waiter needs
		}
	}
	if gate != nil {
		<-gate
	}
	if takeOne(&m.failRestores) {
		m.restoreErrs.Add(1)
		m.mu.Lock()
		// Neither the old state nor the new, as a real failure may leave it.
		m.data, m.applied, m.log = map[string]string{"half": "restored"}, nil, nil
		m.mu.Unlock()
		return errors.New("testkit.SnapKV: Restore told to fail")
	}
	data, applied, log, err := decodeSnap(r)
	if err != nil {
		m.restoreErrs.Add(1)
		return fmt.Errorf("testkit.SnapKV: Restore: %w", err)
	}
	m.mu.Lock()
	m.data, m.applied, m.log = data, applied, log
	m.mu.Unlock()
	m.restores.Add(1)
	return nil
}

// decodeSnap reads what snapImage.WriteTo wrote, all of it and no more.
func decodeSnap(r io.Reader) (map[string]string, []string, []byte, error) {
	br := bufio.NewReader(r)
	magic := make([]byte, len(snapMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapMagic {
		return nil, nil, nil, fmt.Errorf("%w: begins %q", errSnapMagic, magic)
	}
	pairs, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pair count: %w", err)
	}
	data := make(map[string]string, min(pairs, 1<<16))
	for i := range pairs {
		k, err := readField(br)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("key %d of %d: %w", i, pairs, err)
		}
		v, err := readField(br)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("value of %q: %w", k, err)
		}
		data[k] = v
	}
	count, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("command count: %w", err)
	}
	size, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("log size: %w", err)
	}
	if size > 16*maxSnapField {
		return nil, nil, nil, fmt.Errorf("a log of %d bytes is beyond any test's", size)
	}
	log := make([]byte, size)
	if _, err := io.ReadFull(br, log); err != nil {
		return nil, nil, nil, fmt.Errorf("log of %d bytes: %w", size, err)
	}
	applied, err := decodeLog(log, count)
	if err != nil {
		return nil, nil, nil, err
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return nil, nil, nil, errors.New("bytes after the log")
	}
	return data, applied, log, nil
}

// decodeLog splits a log into its count commands.
func decodeLog(log []byte, count uint64) ([]string, error) {
	applied := make([]string, 0, min(count, uint64(len(log))))
	for off := 0; off < len(log); {
		n, k := binary.Uvarint(log[off:])
		if k <= 0 || n > uint64(len(log)-off-k) {
			return nil, fmt.Errorf("command %d of the log is cut short", len(applied))
		}
		off += k
		applied = append(applied, string(log[off:off+int(n)]))
		off += int(n)
	}
	if uint64(len(applied)) != count {
		return nil, fmt.Errorf("the log holds %d commands, its header says %d", len(applied), count)
	}
	return applied, nil
}

func appendField[S ~string | ~[]byte](b []byte, s S) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func readField(br *bufio.Reader) (string, error) {
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return "", err
	}
	if n > maxSnapField {
		return "", fmt.Errorf("a string of %d bytes is beyond any test's", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return "", err
	}
	return string(b), nil
}

// takeOne uses up one of the calls left in n, and reports false when
// none was left, without taking n below zero.
func takeOne(n *atomic.Int32) bool {
	for {
		v := n.Load()
		if v <= 0 {
			return false
		}
		if n.CompareAndSwap(v, v-1) {
			return true
		}
	}
}

// FailSnapshots makes the next n calls of Snapshot fail.
func (m *SnapKV) FailSnapshots(n int) { m.failSnapshots.Store(int32(n)) }

// FailWrites makes the next n calls of a snapshot's WriteTo fail.
func (m *SnapKV) FailWrites(n int) { m.failWrites.Store(int32(n)) }

// FailRestores makes the next n calls of Restore fail, leaving the state
// half restored.
func (m *SnapKV) FailRestores(n int) { m.failRestores.Store(int32(n)) }

// HoldRestores makes every Restore from now on wait until release is
// called (any number of times). entered receives a value as a Restore
// begins to wait; while one is pending, the next is dropped.
func (m *SnapKV) HoldRestores() (entered <-chan struct{}, release func()) {
	gate, in := make(chan struct{}), make(chan struct{}, 1)
	m.gateMu.Lock()
	m.gate, m.entered = gate, in
	m.gateMu.Unlock()
	var once sync.Once
	return in, func() { once.Do(func() { close(gate) }) }
}

// Snapshots is how many snapshots were written whole: WriteTo succeeded.
func (m *SnapKV) Snapshots() int { return int(m.snapshots.Load()) }

// SnapshotErrors is how many calls of Snapshot or WriteTo failed.
func (m *SnapKV) SnapshotErrors() int { return int(m.snapshotErrs.Load()) }

// Restores is how many calls of Restore succeeded.
func (m *SnapKV) Restores() int { return int(m.restores.Load()) }

// RestoreErrors is how many calls of Restore failed.
func (m *SnapKV) RestoreErrors() int { return int(m.restoreErrs.Load()) }

// Overlapped reports whether the server ever called the state machine from
// two goroutines at once (Snapshot and Restore included; WriteTo is meant
// to run beside the others).
func (m *SnapKV) Overlapped() bool { return m.overlapped() }

// SnapCounts sums the counters of SnapKVs.
type SnapCounts struct {
	Snapshots, SnapshotErrors, Restores, RestoreErrors int
}

func (c SnapCounts) String() string {
	return fmt.Sprintf("%d snapshots written (%d failed), %d restores (%d failed)",
		c.Snapshots, c.SnapshotErrors, c.Restores, c.RestoreErrors)
}

// Counts returns m's counters.
func (m *SnapKV) Counts() SnapCounts {
	return SnapCounts{Snapshots: m.Snapshots(), SnapshotErrors: m.SnapshotErrors(),
		Restores: m.Restores(), RestoreErrors: m.RestoreErrors()}
}

// SnapKVs builds the state machines of a Cluster as SnapKVs (pass NewSM as
// Options.NewSM) and keeps every one it built, the incarnations started
// again included, so that a test can tell what happened over a run in
// which servers come and go.
type SnapKVs struct {
	mu      sync.Mutex
	current map[int]*SnapKV
	all     []*SnapKV
	// failRestores: the next state machine built for server i fails its
	// first n Restores (FailRestoresOfNext).
	failRestores map[int]int
}

// FailRestoresOfNext makes the state machine built at server i's next
// start fail its first n Restores, from its very first, which a restarted
// server may call before the test could reach it.
func (f *SnapKVs) FailRestoresOfNext(i, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failRestores == nil {
		f.failRestores = map[int]int{}
	}
	f.failRestores[i] = n
}

// NewSnapKVs returns a SnapKVs that built nothing yet.
func NewSnapKVs() *SnapKVs { return &SnapKVs{current: map[int]*SnapKV{}} }

// NewSM is an Options.NewSM.
func (f *SnapKVs) NewSM(i int, kv *KV) exraft.StateMachine {
	m := NewSnapKV(kv)
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := f.failRestores[i]; n > 0 {
		m.FailRestores(n)
		delete(f.failRestores, i)
	}
	f.current[i] = m
	f.all = append(f.all, m)
	return m
}

// Of returns the SnapKV of server i's latest incarnation (server i is
// Cluster.Names()[i]), nil if it never started.
func (f *SnapKVs) Of(i int) *SnapKV {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.current[i]
}

// All returns every SnapKV built, in order: a cluster's first
// incarnations come first, then one per start again.
func (f *SnapKVs) All() []*SnapKV {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.all)
}

// Totals sums the counters of every SnapKV built.
func (f *SnapKVs) Totals() SnapCounts {
	var t SnapCounts
	for _, m := range f.All() {
		c := m.Counts()
		t.Snapshots += c.Snapshots
		t.SnapshotErrors += c.SnapshotErrors
		t.Restores += c.Restores
		t.RestoreErrors += c.RestoreErrors
	}
	return t
}
