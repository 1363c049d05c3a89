package session

import (
	"encoding/binary"
	"errors"
)

// Kind is what a session record does.
type Kind uint8

const (
	// Register opens a session; its ID is the index of the record's entry.
	Register Kind = iota + 1
	// Write applies Command once for (ID, Seq).
	Write
	// Close forgets a session.
	Close
)

// Record is the content of one session entry of the log. The leader that
// proposes it stamps Time with its clock; every server then judges expiry
// by the records' times alone, so all of them judge alike.
type Record struct {
	Kind Kind
	Time int64 // milliseconds since the Unix epoch, on the proposing leader

	// Register: how long the session may stay idle, and how many sessions
	// the table may hold once it is added (the least recently used go).
	Timeout     int64 // milliseconds
	MaxSessions uint64

	// Write and Close.
	ID uint64
	// Write: the sequence number, the lowest one the client still waits
	// on (every result below it may be forgotten), and the command.
	Seq     uint64
	Lowest  uint64
	Command []byte
}

// ErrMalformed is the error of bytes that are not a session record or table.
var ErrMalformed = errors.New("session: malformed record")

// Append appends r's encoding to b. A Write record ends with its command,
// so that decoding hands Apply a sub-slice of the entry without a copy.
func (r *Record) Append(b []byte) []byte {
	b = append(b, byte(r.Kind))
	b = binary.AppendUvarint(b, uint64(r.Time))
	switch r.Kind {
	case Register:
		b = binary.AppendUvarint(b, uint64(r.Timeout))
		b = binary.AppendUvarint(b, r.MaxSessions)
	case Write:
		b = binary.AppendUvarint(b, r.ID)
		b = binary.AppendUvarint(b, r.Seq)
		b = binary.AppendUvarint(b, r.Lowest)
		b = append(b, r.Command...)
	case Close:
		b = binary.AppendUvarint(b, r.ID)
	}
	return b
}

// Decode reads a record from b. A Write's Command shares b's memory.
func Decode(b []byte) (Record, error) {
	var r Record
	if len(b) == 0 {
		return r, ErrMalformed
	}
	d := decoder{b: b[1:]}
	r.Kind = Kind(b[0])
	r.Time = d.time()
	switch r.Kind {
	case Register:
		r.Timeout = d.time()
		r.MaxSessions = d.uvarint()
	case Write:
		r.ID, r.Seq, r.Lowest = d.uvarint(), d.uvarint(), d.uvarint()
		r.Command = d.rest()
	case Close:
		r.ID = d.uvarint()
	default:
		return Record{}, ErrMalformed
	}
	if d.bad || (r.Kind != Write && len(d.b) > 0) {
		return Record{}, ErrMalformed
	}
	return r, nil
}

// decoder reads uvarints off the front of b; bad records the first failure.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

// time reads a time or a duration in milliseconds, which is never
// negative: a larger number is refused.
func (d *decoder) time() int64 {
	v := int64(d.uvarint())
	if v < 0 {
		d.bad = true
		return 0
	}
	return v
}

// bytes reads a length-prefixed byte string, a copy of its own.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.b)) {
		d.bad = true
		return nil
	}
	v := append([]byte(nil), d.b[:n]...)
	d.b = d.b[n:]
	return v
}

func (d *decoder) rest() []byte {
	v := d.b
	d.b = nil
	return v
}
