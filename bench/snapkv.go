package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync/atomic"
	"time"
)

// snapKV is the state machine of the snapshot modes: a key-value map that
// a user might write, with exraft.Snapshotter. A command is 16 bytes, an
// 8-byte key and an 8-byte value; Apply keeps a copy of the value (one
// allocation per write, as a store that cannot keep the command's buffer
// must). The map is split in shards that Snapshot shares with the snapshot
// and Apply copies on its first write after it (copy on write), so that
// Snapshot costs a pass over the shards, not over the keys, and the
// WriterTo reads maps that nothing changes any more.
type snapKV struct {
	shards []kvShard
	keys   int // keys held
	stats  *snapStats
}

type kvShard struct {
	m      map[uint64][]byte
	shared bool // a snapshot holds m: copy it before the next write
}

// snapStats is what the state machines of one cluster tell about their
// snapshots. Its fields are safe to read while the cluster runs.
type snapStats struct {
	// inProgress counts the snapshots between Snapshot and the end of
	// their WriteTo, over every server.
	inProgress atomic.Int32
	taken      atomic.Int64 // WriteTo calls that finished
	restored   atomic.Int64 // Restore calls that succeeded
	restoreNs  atomic.Int64 // time spent in Restore calls that succeeded
	captureNs  atomic.Int64 // time spent in Snapshot, all servers
	writeNs    atomic.Int64 // time spent in WriteTo, all servers
	writeMaxNs atomic.Int64 // the longest WriteTo
	bytes      atomic.Int64 // the size of the latest snapshot written
}

func newSnapKV(keys int, stats *snapStats) *snapKV {
	kv := &snapKV{stats: stats}
	kv.reset(keys)
	return kv
}

// kvShardCount gives about 256 keys to a shard, so that a shard's copy
// after a snapshot costs a few microseconds.
func kvShardCount(keys int) int {
	n := 64
	for n*256 < keys {
		n *= 2
	}
	return n
}

func (kv *snapKV) reset(keys int) {
	n := kvShardCount(keys)
	kv.shards = make([]kvShard, n)
	for i := range kv.shards {
		kv.shards[i].m = make(map[uint64][]byte, keys/n+1)
	}
	kv.keys = 0
}

func (kv *snapKV) shard(key uint64) *kvShard {
	return &kv.shards[key%uint64(len(kv.shards))]
}

// kvCommand is the 16-byte command that sets key to value.
func kvCommand(buf []byte, key, value uint64) []byte {
	buf = binary.LittleEndian.AppendUint64(buf[:0], key)
	return binary.LittleEndian.AppendUint64(buf, value)
}

func (kv *snapKV) Apply(cmd []byte) []byte {
	if len(cmd) != 16 {
		return nil
	}
	key := binary.LittleEndian.Uint64(cmd)
	sh := kv.shard(key)
	if sh.shared {
		sh.m = maps.Clone(sh.m)
		sh.shared = false
	}
	if _, ok := sh.m[key]; !ok {
		kv.keys++
	}
	sh.m[key] = append([]byte(nil), cmd[8:]...)
	return nil
}

// Query answers "sum" with a checksum of the whole state, which does not
// depend on the order of the keys, and an 8-byte key with its value.
func (kv *snapKV) Query(q []byte) []byte {
	if string(q) == "sum" {
		var sum uint64
		for i := range kv.shards {
			for k, v := range kv.shards[i].m {
				sum += mix(k ^ mix(binary.LittleEndian.Uint64(v)))
			}
		}
		return binary.LittleEndian.AppendUint64(nil, sum)
	}
	if len(q) == 8 {
		return kv.shard(binary.LittleEndian.Uint64(q)).m[binary.LittleEndian.Uint64(q)]
	}
	return nil
}

// mix is splitmix64's finalizer.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func (kv *snapKV) Snapshot() (io.WriterTo, error) {
	start := time.Now()
	if kv.stats != nil {
		kv.stats.inProgress.Add(1)
	}
	v := &kvView{shards: make([]map[uint64][]byte, len(kv.shards)), keys: kv.keys, stats: kv.stats}
	for i := range kv.shards {
		v.shards[i] = kv.shards[i].m
		kv.shards[i].shared = true
	}
	if kv.stats != nil {
		kv.stats.captureNs.Add(int64(time.Since(start)))
	}
	return v, nil
}

// kvView is a snapshot: the shards' maps as they were, which Apply no
// longer writes to.
type kvView struct {
	shards []map[uint64][]byte
	keys   int
	stats  *snapStats
}

// WriteTo writes the number of keys, then each key and its value's length
// and bytes.
func (v *kvView) WriteTo(w io.Writer) (int64, error) {
	start := time.Now()
	cw := &countWriter{w: w}
	bw := bufio.NewWriterSize(cw, 64<<10)
	var b [binary.MaxVarintLen64 + 8]byte
	bw.Write(binary.AppendUvarint(b[:0], uint64(v.keys)))
	for _, m := range v.shards {
		for k, val := range m {
			e := binary.LittleEndian.AppendUint64(b[:0], k)
			bw.Write(binary.AppendUvarint(e, uint64(len(val))))
			bw.Write(val)
		}
	}
	err := bw.Flush()
	if s := v.stats; s != nil {
		d := int64(time.Since(start))
		s.writeNs.Add(d)
		for m := s.writeMaxNs.Load(); d > m && !s.writeMaxNs.CompareAndSwap(m, d); m = s.writeMaxNs.Load() {
		}
		s.bytes.Store(cw.n)
		s.taken.Add(1)
		s.inProgress.Add(-1)
	}
	return cw.n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (kv *snapKV) Restore(r io.Reader) error {
	start := time.Now()
	br := bufio.NewReaderSize(r, 64<<10)
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return fmt.Errorf("snapKV: reading the key count: %w", err)
	}
	if n > 1<<32 {
		return fmt.Errorf("snapKV: %d keys is nonsense", n)
	}
	kv.reset(int(n))
	var key [8]byte
	for i := uint64(0); i < n; i++ {
		if _, err := io.ReadFull(br, key[:]); err != nil {
			return fmt.Errorf("snapKV: key %d of %d: %w", i, n, err)
		}
		l, err := binary.ReadUvarint(br)
		if err != nil || l > 1<<20 {
			return fmt.Errorf("snapKV: value %d of %d: bad length %d (%v)", i, n, l, err)
		}
		val := make([]byte, l)
		if _, err := io.ReadFull(br, val); err != nil {
			return fmt.Errorf("snapKV: value %d of %d: %w", i, n, err)
		}
		k := binary.LittleEndian.Uint64(key[:])
		kv.shard(k).m[k] = val
	}
	kv.keys = int(n)
	if _, err := br.ReadByte(); err != io.EOF {
		return errors.New("snapKV: bytes after the last key")
	}
	if kv.stats != nil {
		kv.stats.restored.Add(1)
		kv.stats.restoreNs.Add(int64(time.Since(start)))
	}
	return nil
}

// plainKV is snapKV without Snapshotter: exraft keeps its whole log.
type plainKV struct{ kv *snapKV }

func (p plainKV) Apply(cmd []byte) []byte { return p.kv.Apply(cmd) }
func (p plainKV) Query(q []byte) []byte   { return p.kv.Query(q) }
