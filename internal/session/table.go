package session

import (
	"encoding/binary"
)

// Outcome is what applying a record did.
type Outcome uint8

const (
	// Applied: a Write's command was applied now.
	Applied Outcome = iota + 1
	// Duplicate: the Write was applied before; the result is the one it
	// gave then, and the command was not applied again.
	Duplicate
	// Registered: a new session, whose ID is the record's index.
	Registered
	// Closed: the session is gone, or was already.
	Closed
	// Expired: the Write's session is not in the table (it expired, was
	// closed, was dropped for a newer one, or never existed): nothing was
	// applied.
	Expired
	// Stale: the Write's sequence number is below the lowest the client
	// still waits on, so its answer was received and forgotten: this is a
	// late copy, and nothing was applied.
	Stale
)

// Table is the replicated session table of Raft thesis §6.3. Every server
// applies the same records in the same order, so every server's table is
// the same at the same index; nothing in it depends on a server's own
// clock or on map order.
//
// Sessions are kept in order of last use; each expires once the log's time
// (the latest Time of any record applied) passes its last use by its
// Timeout, and registering a session beyond MaxSessions drops the least
// recently used.
type Table struct {
	now        int64 // the log's time
	byID       map[uint64]*entry
	head, tail *entry // least and most recently used
}

type entry struct {
	id       uint64
	timeout  int64
	lastUsed int64
	results  results // from the lowest sequence number the client waits on
	prev     *entry
	next     *entry
}

// NewTable returns an empty table.
func NewTable() *Table { return &Table{byID: map[uint64]*entry{}} }

// Len returns the number of sessions.
func (t *Table) Len() int { return len(t.byID) }

// Apply applies the record of the entry at index. apply runs a Write's
// command on the state machine; it is called only for Applied. The result
// is Apply's, or for a Duplicate the one it gave the first time.
func (t *Table) Apply(index uint64, r *Record, apply func([]byte) []byte) (Outcome, []byte) {
	t.now = max(t.now, r.Time)
	t.expire()
	switch r.Kind {
	case Register:
		t.register(index, r)
		return Registered, nil
	case Close:
		if e := t.byID[r.ID]; e != nil {
			t.remove(e)
		}
		return Closed, nil
	}
	e := t.byID[r.ID]
	if e == nil {
		return Expired, nil
	}
	t.touch(e)
	e.results.ack(r.Lowest)
	if r.Seq < e.results.lowest {
		return Stale, nil
	}
	if val, ok := e.results.get(r.Seq); ok {
		return Duplicate, val
	}
	val := apply(r.Command)
	e.results.put(r.Seq, val)
	return Applied, val
}

func (t *Table) register(index uint64, r *Record) {
	e := &entry{id: index, timeout: r.Timeout, lastUsed: t.now}
	t.byID[index] = e
	t.pushBack(e)
	for r.MaxSessions > 0 && uint64(len(t.byID)) > r.MaxSessions {
		t.remove(t.head)
	}
}

// expire drops the sessions idle for longer than their timeout, oldest
// first. A session with a longer timeout than one used after it shields
// that one until it goes itself: expiry is never early, at worst late.
func (t *Table) expire() {
	for t.head != nil && t.now-t.head.lastUsed > t.head.timeout {
		t.remove(t.head)
	}
}

func (t *Table) touch(e *entry) {
	e.lastUsed = t.now
	t.unlink(e)
	t.pushBack(e)
}

func (t *Table) remove(e *entry) {
	t.unlink(e)
	delete(t.byID, e.id)
}

func (t *Table) pushBack(e *entry) {
	e.prev, e.next = t.tail, nil
	if t.tail != nil {
		t.tail.next = e
	} else {
		t.head = e
	}
	t.tail = e
}

func (t *Table) unlink(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		t.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		t.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

// tableVersion is the first byte of an encoded table.
const tableVersion = 1

// Append appends the table's encoding to b: the same table always encodes
// to the same bytes, sessions in order of use and results in order of
// sequence number.
func (t *Table) Append(b []byte) []byte {
	b = append(b, tableVersion)
	b = binary.AppendUvarint(b, uint64(t.now))
	b = binary.AppendUvarint(b, uint64(len(t.byID)))
	for e := t.head; e != nil; e = e.next {
		b = binary.AppendUvarint(b, e.id)
		b = binary.AppendUvarint(b, uint64(e.timeout))
		b = binary.AppendUvarint(b, uint64(e.lastUsed))
		b = binary.AppendUvarint(b, e.results.lowest)
		seqs := e.results.sorted()
		b = binary.AppendUvarint(b, uint64(len(seqs)))
		for _, seq := range seqs {
			val, _ := e.results.get(seq)
			b = binary.AppendUvarint(b, seq)
			b = binary.AppendUvarint(b, uint64(len(val)))
			b = append(b, val...)
		}
	}
	return b
}

// DecodeTable reads a table that Append encoded, and returns it with the
// bytes that follow it.
func DecodeTable(b []byte) (*Table, []byte, error) {
	if len(b) == 0 || b[0] != tableVersion {
		return nil, nil, ErrMalformed
	}
	d := decoder{b: b[1:]}
	t := NewTable()
	t.now = d.time()
	n := d.uvarint()
	for i := uint64(0); i < n && !d.bad; i++ {
		e := &entry{id: d.uvarint(), timeout: d.time(), lastUsed: d.time()}
		e.results.lowest = d.uvarint()
		for k := d.uvarint(); k > 0 && !d.bad; k-- {
			seq, val := d.uvarint(), d.bytes()
			if _, dup := e.results.get(seq); dup || seq < e.results.lowest {
				d.bad = true
				break
			}
			e.results.put(seq, val)
		}
		if _, dup := t.byID[e.id]; dup {
			d.bad = true
		}
		t.byID[e.id] = e
		t.pushBack(e)
	}
	if d.bad {
		return nil, nil, ErrMalformed
	}
	return t, d.b, nil
}
