package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"time"
)

// snapKV is the state machine of the snapshot modes: a key-value map that
// a user might write, with exraft.Snapshotter. A command is 16 bytes, an
// 8-byte key and an 8-byte value; Apply keeps a copy of the value (one
// allocation per write, as a store that cannot keep the command's buffer
// must).
//
// Snapshot freezes the map for its WriterTo, which reads it on a goroutine
// of its own: until that is done, Apply writes to an overlay of the keys
// written since, and then folds the overlay back into the map, a few keys
// per Apply. So a snapshot costs the applier a copy of what is written
// while it is encoded, not of the state: copying each shard of the map on
// its first write after a snapshot (what this did before) copied all 1M
// keys after every snapshot, some 50 MB per server allocated on the
// applier while the snapshots were encoded, enough to start a garbage
// collection during each.
type snapKV struct {
	shards   []map[uint64][]byte
	perShard int // the keys a shard's map is made for
	keys     int // keys held, the overlay's included
	stats    *snapStats

	// frozen is the view a WriterTo reads, while it may: shards must not
	// change until frozen.done.
	frozen *kvView
	// over holds the keys written while frozen, and those not folded
	// back yet after; overKeys lists them in the order written, and
	// folded counts those folded.
	over     map[uint64][]byte
	overKeys []uint64
	folded   int
}

// foldPerApply is how many overlay keys each Apply folds back: folding
// 30,000 keys at once (a 200 ms encoding at 150,000 writes/s) would hold
// one Apply for milliseconds.
const foldPerApply = 16

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

// kvShardCount gives about 256 keys to a shard, so that the maps grow a
// shard at a time.
func kvShardCount(keys int) int {
	n := 64
	for n*256 < keys {
		n *= 2
	}
	return n
}

// reset empties the state, for about keys keys. Each shard's map is made
// on its first write, sized for its share: a Restore, which reads the
// keys shard by shard, allocates as it reads (exraft paces its reads)
// rather than 1M keys' worth of maps before its first read.
func (kv *snapKV) reset(keys int) {
	kv.shards = make([]map[uint64][]byte, kvShardCount(keys))
	kv.perShard = keys/len(kv.shards) + 1
	kv.keys = 0
	kv.frozen, kv.over, kv.overKeys, kv.folded = nil, nil, nil, 0
}

// shard is key's map, nil if none was written to yet: read only.
func (kv *snapKV) shard(key uint64) map[uint64][]byte {
	return kv.shards[key%uint64(len(kv.shards))]
}

// set writes key in its shard's map, made if need be.
func (kv *snapKV) set(key uint64, val []byte) {
	m := &kv.shards[key%uint64(len(kv.shards))]
	if *m == nil {
		*m = make(map[uint64][]byte, kv.perShard)
	}
	(*m)[key] = val
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
	val := append([]byte(nil), cmd[8:]...)
	if kv.frozen != nil && kv.frozen.done.Load() {
		kv.frozen = nil // folding from here on
	}
	if _, ok := kv.get(key); !ok {
		kv.keys++
	}
	if kv.frozen != nil {
		if _, ok := kv.over[key]; !ok {
			kv.overKeys = append(kv.overKeys, key)
		}
		kv.over[key] = val
		return nil
	}
	kv.set(key, val)
	if kv.over != nil {
		delete(kv.over, key) // older than val
		kv.fold(foldPerApply)
	}
	return nil
}

// get looks key up in the overlay, then in the map.
func (kv *snapKV) get(key uint64) ([]byte, bool) {
	if v, ok := kv.over[key]; ok {
		return v, true
	}
	v, ok := kv.shard(key)[key]
	return v, ok
}

// fold moves up to n overlay keys back into the map, once no WriterTo
// reads it; all of them with n < 0.
func (kv *snapKV) fold(n int) {
	for ; n != 0 && kv.folded < len(kv.overKeys); n-- {
		key := kv.overKeys[kv.folded]
		kv.folded++
		if v, ok := kv.over[key]; ok {
			kv.set(key, v)
		}
	}
	if kv.folded == len(kv.overKeys) {
		kv.over, kv.overKeys, kv.folded = nil, nil, 0
	}
}

// Query answers "sum" with a checksum of the whole state, which does not
// depend on the order of the keys, and an 8-byte key with its value.
func (kv *snapKV) Query(q []byte) []byte {
	if string(q) == "sum" {
		var sum uint64
		for _, m := range kv.shards {
			for k, v := range m {
				if _, ok := kv.over[k]; !ok {
					sum += mix(k ^ mix(binary.LittleEndian.Uint64(v)))
				}
			}
		}
		for k, v := range kv.over {
			sum += mix(k ^ mix(binary.LittleEndian.Uint64(v)))
		}
		return binary.LittleEndian.AppendUint64(nil, sum)
	}
	if len(q) == 8 {
		v, _ := kv.get(binary.LittleEndian.Uint64(q))
		return v
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
	// exraft runs one WriterTo at a time, so the last one is done: what
	// it left in the overlay goes back into the map first (little, unless
	// snapshots come faster than the overlay folds).
	if kv.frozen != nil && !kv.frozen.done.Load() {
		return nil, errors.New("snapKV: the last snapshot is still being written")
	}
	start := time.Now()
	if kv.stats != nil {
		kv.stats.inProgress.Add(1)
	}
	kv.frozen = nil
	kv.fold(-1)
	v := &kvView{shards: slices.Clone(kv.shards), keys: kv.keys, stats: kv.stats}
	kv.frozen, kv.over = v, map[uint64][]byte{}
	if kv.stats != nil {
		kv.stats.captureNs.Add(int64(time.Since(start)))
	}
	return v, nil
}

// kvView is a snapshot: the maps as they were, which Apply does not change
// until done.
type kvView struct {
	shards []map[uint64][]byte
	keys   int
	stats  *snapStats
	done   atomic.Bool // WriteTo returned: Apply may change the maps again
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
	v.done.Store(true)
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
		kv.set(k, val)
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
