package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStoreSnapshotRestore(t *testing.T) {
	s := newStore()
	s.Apply([]byte("set a 1"))
	s.Apply([]byte("set odd \xff\xfe not UTF-8"))
	w, err := s.Snapshot()
	require.NoError(t, err)
	// Commands applied after Snapshot are not in it, even if WriteTo runs
	// after them.
	s.Apply([]byte("set a 2"))
	s.Apply([]byte("delete odd"))
	var buf bytes.Buffer
	n, err := w.WriteTo(&buf)
	require.NoError(t, err)
	assert.Equal(t, int64(buf.Len()), n)

	r := newStore()
	r.Apply([]byte("set stale x"))
	require.NoError(t, r.Restore(bytes.NewReader(buf.Bytes())))
	assert.Equal(t, map[string]string{"a": "1", "odd": "\xff\xfe not UTF-8"}, r.data, "the map as of Snapshot, every byte kept")

	require.Error(t, r.Restore(bytes.NewReader(buf.Bytes()[:buf.Len()/2])))
	assert.Equal(t, "1", string(r.Query([]byte("get a"))), "a snapshot that does not decode leaves the map")

	empty := newStore()
	w, err = empty.Snapshot()
	require.NoError(t, err)
	buf.Reset()
	_, err = w.WriteTo(&buf)
	require.NoError(t, err)
	require.NoError(t, r.Restore(&buf))
	assert.Empty(t, r.data, "an empty store restores as empty")
}
