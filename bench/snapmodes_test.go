package main

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"testing"
	"time"
)

func TestIntervalRates(t *testing.T) {
	s := time.Second
	rates, ratio := intervalRates([]time.Duration{0, s, 2 * s, 3 * s, 4 * s}, []int64{0, 100, 190, 300, 380})
	want := []float64{100, 90, 110, 80}
	if len(rates) != len(want) {
		t.Fatalf("rates %v, want %v", rates, want)
	}
	for i := range want {
		if math.Abs(rates[i]-want[i]) > 1e-9 {
			t.Errorf("rates %v, want %v", rates, want)
		}
	}
	if math.Abs(ratio-0.8) > 1e-9 {
		t.Errorf("ratio %v, want 0.8", ratio)
	}
	// Intervals of unequal length: rates, not counts.
	rates, ratio = intervalRates([]time.Duration{0, s / 2, 2 * s}, []int64{0, 50, 200})
	if rates[0] != 100 || rates[1] != 100 || ratio != 1 {
		t.Errorf("uneven intervals: rates %v ratio %v, want 100, 100 and 1", rates, ratio)
	}
	if _, ratio := intervalRates([]time.Duration{0, s, 2 * s}, []int64{0, 0, 10}); ratio != 0 {
		t.Errorf("a first interval without writes gives ratio %v, want 0", ratio)
	}
}

// TestSnapKVSnapshotIsolatesItsView: writes after Snapshot do not reach
// the view its WriterTo writes, and do reach the live state.
func TestSnapKVSnapshotIsolatesItsView(t *testing.T) {
	stats := new(snapStats)
	kv := newSnapKV(1000, stats)
	cmd := make([]byte, 0, 16)
	for k := uint64(0); k < 1000; k++ {
		kv.Apply(kvCommand(cmd, k, k))
	}
	before := kv.Query([]byte("sum"))
	w, err := kv.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if stats.inProgress.Load() != 1 {
		t.Errorf("in progress after Snapshot: %d, want 1", stats.inProgress.Load())
	}
	for k := uint64(0); k < 1000; k += 3 { // change a third, after the capture
		kv.Apply(kvCommand(cmd, k, k+7))
	}
	kv.Apply(kvCommand(cmd, 5000, 1)) // and add a key
	var buf bytes.Buffer
	n, err := w.WriteTo(&buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("WriteTo: %d bytes, %v; wrote %d", n, err, buf.Len())
	}
	if stats.inProgress.Load() != 0 || stats.taken.Load() != 1 {
		t.Errorf("after WriteTo: in progress %d, taken %d; want 0 and 1", stats.inProgress.Load(), stats.taken.Load())
	}
	r := newSnapKV(10, stats)
	r.Apply(kvCommand(cmd, 99999, 1)) // Restore replaces everything
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if got := r.Query([]byte("sum")); !bytes.Equal(got, before) {
		t.Errorf("restored checksum %x, want the one at the snapshot, %x", got, before)
	}
	if r.keys != 1000 {
		t.Errorf("restored %d keys, want 1000", r.keys)
	}
	if v := kv.Query(binary.LittleEndian.AppendUint64(nil, 3)); binary.LittleEndian.Uint64(v) != 10 {
		t.Errorf("the live state lost a write made after the snapshot: key 3 = %d, want 10", binary.LittleEndian.Uint64(v))
	}
	if err := newSnapKV(10, nil).Restore(bytes.NewReader([]byte{5, 1, 2})); err == nil {
		t.Error("a truncated snapshot restored without an error")
	}
}

// TestSnapKVFoldsTheOverlay: the keys written while a WriterTo ran go
// back into the map, a few per Apply, once it returned, and the state is
// the same as if no snapshot had been taken.
func TestSnapKVFoldsTheOverlay(t *testing.T) {
	kv, plain := newSnapKV(1000, nil), newSnapKV(1000, nil)
	cmd := make([]byte, 0, 16)
	apply := func(k, v uint64) {
		kv.Apply(kvCommand(cmd, k, v))
		plain.Apply(kvCommand(cmd, k, v))
	}
	for k := uint64(0); k < 1000; k++ {
		apply(k, k)
	}
	w, err := kv.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Snapshot(); err == nil {
		t.Error("a second Snapshot while the first is still being written: no error")
	}
	for k := uint64(0); k < 1000; k += 2 {
		apply(k, k+1)
	}
	apply(2000, 1)
	if len(kv.over) != 501 {
		t.Errorf("%d keys in the overlay while the view is written, want 501", len(kv.over))
	}
	if _, err := w.WriteTo(io.Discard); err != nil {
		t.Fatal(err)
	}
	for i := 0; kv.over != nil; i++ {
		if i > 501/foldPerApply+1 {
			t.Fatalf("the overlay still holds %d keys after %d Applies", len(kv.over), i)
		}
		apply(uint64(i)*7%1000, uint64(i))
		if got, want := kv.Query([]byte("sum")), plain.Query([]byte("sum")); !bytes.Equal(got, want) {
			t.Fatalf("after %d Applies folding: checksum %x, want %x", i, got, want)
		}
	}
	if kv.keys != plain.keys || kv.keys != 1001 {
		t.Errorf("%d keys, want %d", kv.keys, plain.keys)
	}
	if _, err := kv.Snapshot(); err != nil {
		t.Errorf("a Snapshot once the last was written: %v", err)
	}
}

// TestSnapshotModesSmall runs the three modes at a size that takes a few
// seconds, so that they keep working.
func TestSnapshotModesSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts clusters")
	}
	small := kvOptions{keys: 2000, snapshots: true, threshold: 1024, trailing: 256}

	s, err := runSoak(small, 16, time.Second)
	if err != nil {
		t.Fatal("soak:", err)
	}
	if s.ok == 0 || s.taken == 0 || len(s.quarters) != 4 {
		t.Fatalf("soak: %d writes, %d snapshots, %d quarters", s.ok, s.taken, len(s.quarters))
	}
	for _, st := range s.status {
		if st.SnapshotIndex == 0 || st.LastIndex-st.FirstIndex+1 > 1024+256+4096 {
			t.Errorf("soak: %s kept entries %d to %d, snapshot at %d", st.Name, st.FirstIndex, st.LastIndex, st.SnapshotIndex)
		}
	}

	a, err := runAddServer(small, 16, 20_000)
	if err != nil {
		t.Fatal("AddServer:", err)
	}
	if a.writes < 20_000 || a.joined.SnapshotIndex == 0 || a.restored == 0 {
		t.Errorf("AddServer: %d writes; the new server restored after %v, at index %d", a.writes, a.restored, a.joined.SnapshotIndex)
	}

	p, err := runSnapP99(small, 16, time.Second, 1)
	if err != nil {
		t.Fatal("p99:", err)
	}
	// A 2,000-key snapshot is sent in about a millisecond, which no write
	// need begin in: the class of writes while one is sent may be empty
	// here (the README's runs, of 1,000,000 keys, fill it).
	if p.hists[classSteady].n == 0 || p.hists[classTaking].n == 0 || len(p.transfers) != 1 {
		t.Errorf("p99: writes by class %d, %d, %d; %d transfers", p.hists[0].n, p.hists[1].n, p.hists[2].n, len(p.transfers))
	}
}
