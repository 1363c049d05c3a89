package testkit

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// image runs Snapshot and WriteTo, as a server does.
func image(t *testing.T, m *SnapKV) []byte {
	t.Helper()
	w, err := m.Snapshot()
	require.NoError(t, err, "Snapshot")
	var buf bytes.Buffer
	_, err = w.WriteTo(&buf)
	require.NoError(t, err, "WriteTo")
	return buf.Bytes()
}

func TestSnapKVRoundTrip(t *testing.T) {
	kv := NewKV()
	kv.Apply([]byte("set before wrap"))
	m := NewSnapKV(kv)
	m.Apply([]byte("set a 1"))
	m.Apply([]byte("set b 2"))
	w, err := m.Snapshot()
	require.NoError(t, err)
	want, wantHist := string(m.Query([]byte("dump"))), m.History()

	// Applies after Snapshot, and WriteTo beside them, must not change it.
	m.Apply([]byte("set a changed"))
	m.Apply([]byte("set c 3"))
	var buf bytes.Buffer
	n, err := w.WriteTo(&buf)
	require.NoError(t, err)
	assert.Equal(t, int64(buf.Len()), n, "WriteTo counts what it wrote")

	r := NewSnapKV(nil)
	r.Apply([]byte("set gone 1"))
	require.NoError(t, r.Restore(bytes.NewReader(buf.Bytes())))
	assert.Equal(t, want, string(r.Query([]byte("dump"))), "the map as of Snapshot, the old one gone")
	assert.Equal(t, wantHist, r.History(), "the commands applied up to Snapshot, the first KV's included")
	r.Apply([]byte("set d 4"))
	assert.Equal(t, append(wantHist, "set d 4"), r.History())
	again := NewSnapKV(nil)
	require.NoError(t, again.Restore(bytes.NewReader(image(t, r))), "a restored SnapKV snapshots what it holds")
	assert.Equal(t, r.History(), again.History())
	assert.Equal(t, SnapCounts{Restores: 1}, again.Counts())
	assert.False(t, m.Overlapped() || r.Overlapped() || again.Overlapped())
}

func TestSnapKVRestoreRefusesDamage(t *testing.T) {
	m := NewSnapKV(nil)
	for _, c := range []string{"set a 1", "set b 2", "set a 3"} {
		m.Apply([]byte(c))
	}
	good := image(t, m)
	for name, data := range map[string][]byte{
		"empty":          nil,
		"another format": []byte(`{"a":"1"}`),
		"cut short":      good[:len(good)-3],
		"bytes after":    append(bytes.Clone(good), 0),
		"header cut":     good[:len(snapMagic)+1],
	} {
		r := NewSnapKV(nil)
		r.Apply([]byte("set kept 1"))
		assert.Error(t, r.Restore(bytes.NewReader(data)), name)
		assert.Equal(t, "1", r.Get("kept"), "%s: a Restore that cannot decode replaces nothing", name)
		assert.Equal(t, 1, r.RestoreErrors(), name)
		assert.Zero(t, r.Restores(), name)
	}
}

func TestSnapKVKnobs(t *testing.T) {
	m := NewSnapKV(nil)
	m.Apply([]byte("set a 1"))

	m.FailSnapshots(1)
	_, err := m.Snapshot()
	assert.Error(t, err, "the first Snapshot fails")
	good := image(t, m)

	m.FailWrites(1)
	w, err := m.Snapshot()
	require.NoError(t, err)
	_, err = w.WriteTo(io.Discard)
	assert.Error(t, err, "the first WriteTo fails")
	assert.Equal(t, SnapCounts{Snapshots: 1, SnapshotErrors: 2}, m.Counts())

	r := NewSnapKV(nil)
	r.FailRestores(1)
	assert.Error(t, r.Restore(bytes.NewReader(good)))
	assert.Equal(t, "restored", r.Get("half"), "a told failure leaves the state half restored")
	require.NoError(t, r.Restore(bytes.NewReader(good)))
	assert.Equal(t, "", r.Get("half"))
	assert.Equal(t, "1", r.Get("a"))
	assert.Equal(t, SnapCounts{Restores: 1, RestoreErrors: 1}, r.Counts())

	entered, release := r.HoldRestores()
	done := make(chan error, 1)
	go func() { done <- r.Restore(bytes.NewReader(good)) }()
	select {
	case <-entered:
	case <-time.After(WaitShort):
		require.FailNow(t, "Restore did not begin")
	}
	select {
	case err := <-done:
		require.FailNowf(t, "Restore returned while held", "%v", err)
	case <-time.After(50 * time.Millisecond): // long enough to see it wait
	}
	release()
	release()
	require.NoError(t, <-done)
	assert.Equal(t, 2, r.Restores())
}

func TestSnapKVs(t *testing.T) {
	f := NewSnapKVs()
	assert.Nil(t, f.Of(0))
	first := f.NewSM(0, NewKV()).(*SnapKV)
	f.NewSM(1, nil)
	again := f.NewSM(0, NewKV()).(*SnapKV)
	assert.Same(t, again, f.Of(0), "the latest incarnation")
	assert.Equal(t, []*SnapKV{first, f.Of(1), again}, f.All())
	first.Apply([]byte("set a 1"))
	require.NoError(t, again.Restore(bytes.NewReader(image(t, first))))
	assert.Equal(t, SnapCounts{Snapshots: 1, Restores: 1}, f.Totals())
}
