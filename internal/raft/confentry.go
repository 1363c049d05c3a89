package raft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// A configuration entry's Data is a membership in msgpack, the layout the
// reflective encoder gives the as_array structs member and membership: an
// array of the voters and, only when there are any, the learners, each list
// an array of members and each member an array of Name, Addr and Inc,
// strings in their shortest form and Inc always as a full uint64. Servers of
// earlier builds, which encoded it with msgpack itself and knew no learners,
// share logs with these during a rolling upgrade, so a configuration without
// learners is written as they wrote it, a one-element array, byte for byte;
// the number of elements is what tells the two layouts apart. Writing them
// here keeps the codec out of the protocol; confentry_test.go checks them
// against msgpack.

// encodeMembership returns the Data of a configuration entry holding m.
func encodeMembership(m membership) []byte {
	size := 1 + 2*5
	for _, v := range append(m.Voters, m.Learners...) {
		size += 1 + 5 + len(v.Name) + 5 + len(v.Addr) + 9
	}
	b := make([]byte, 0, size)
	if len(m.Learners) == 0 {
		return appendMembers(append(b, 0x91), m.Voters)
	}
	return appendMembers(appendMembers(append(b, 0x92), m.Voters), m.Learners)
}

// appendMembers writes a list of members; nil is msgpack's nil.
func appendMembers(b []byte, ms []member) []byte {
	if ms == nil {
		return append(b, 0xc0)
	}
	b = appendArrayHeader(b, len(ms))
	for _, v := range ms {
		b = append(b, 0x93)
		b = appendString(b, v.Name)
		b = appendString(b, v.Addr)
		b = binary.BigEndian.AppendUint64(append(b, 0xcf), v.Inc)
	}
	return b
}

func appendArrayHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
}

func appendString(b []byte, s string) []byte {
	n := len(s)
	switch {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
	return append(b, s...)
}

var errConfEntry = errors.New("raft: bad configuration entry")

// decodeMembership reads what encodeMembership wrote, in either layout. The
// entry came from a peer, so every length is checked against the bytes left
// before anything is allocated. It accepts the shortest and the longer forms
// msgpack allows for each header and integer, and nothing msgpack itself
// would refuse.
func decodeMembership(b []byte) (membership, error) {
	d := confDecoder{b: b}
	n := d.arrayLen()
	if d.err == nil && n != 1 && n != 2 {
		return membership{}, d.fail("%d fields, want 1 or 2", n)
	}
	var m membership
	m.Voters = d.members()
	if n == 2 {
		m.Learners = noneIfEmpty(d.members())
	}
	if d.err == nil && d.i != len(d.b) {
		d.fail("%d bytes after the configuration", len(d.b)-d.i)
	}
	if d.err != nil {
		return membership{}, d.err
	}
	return m, nil
}

// members reads a list of members, or nil.
func (d *confDecoder) members() []member {
	if d.peek() == 0xc0 {
		d.i++
		return nil
	}
	// A member takes at least four bytes: its header and three fields.
	n := d.arrayLen()
	if d.err != nil {
		return nil
	}
	if n > (len(d.b)-d.i)/4 {
		d.fail("%d members in %d bytes", n, len(d.b)-d.i)
		return nil
	}
	ms := make([]member, n)
	for i := 0; i < n && d.err == nil; i++ {
		if k := d.arrayLen(); k != 3 {
			d.fail("a member of %d fields, want 3", k)
			return nil
		}
		ms[i].Name = d.str()
		ms[i].Addr = d.str()
		ms[i].Inc = d.uint()
	}
	return ms
}

type confDecoder struct {
	b   []byte
	i   int
	err error
}

func (d *confDecoder) fail(format string, args ...any) error {
	if d.err == nil {
		d.err = fmt.Errorf("%w: at byte %d: %s", errConfEntry, d.i, fmt.Sprintf(format, args...))
	}
	return d.err
}

func (d *confDecoder) peek() byte {
	if d.err != nil || d.i >= len(d.b) {
		return 0
	}
	return d.b[d.i]
}

// bigEndian reads an n-byte unsigned integer.
func (d *confDecoder) bigEndian(n int) uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b)-d.i < n {
		d.fail("truncated")
		return 0
	}
	var v uint64
	for _, c := range d.b[d.i : d.i+n] {
		v = v<<8 | uint64(c)
	}
	d.i += n
	return v
}

func (d *confDecoder) tag() byte { return byte(d.bigEndian(1)) }

func (d *confDecoder) arrayLen() int {
	t := d.tag()
	var n uint64
	switch {
	case d.err != nil:
		return 0
	case t&0xf0 == 0x90:
		n = uint64(t & 0x0f)
	case t == 0xdc:
		n = d.bigEndian(2)
	case t == 0xdd:
		n = d.bigEndian(4)
	default:
		d.fail("want an array, found 0x%02x", t)
		return 0
	}
	if n > uint64(len(d.b)-d.i) {
		d.fail("an array of %d elements in %d bytes", n, len(d.b)-d.i)
		return 0
	}
	return int(n)
}

func (d *confDecoder) str() string {
	t := d.tag()
	var n uint64
	switch {
	case d.err != nil:
		return ""
	case t&0xe0 == 0xa0:
		n = uint64(t & 0x1f)
	case t == 0xd9:
		n = d.bigEndian(1)
	case t == 0xda:
		n = d.bigEndian(2)
	case t == 0xdb:
		n = d.bigEndian(4)
	default:
		d.fail("want a string, found 0x%02x", t)
		return ""
	}
	if d.err != nil || n > uint64(len(d.b)-d.i) {
		d.fail("a string of %d bytes in %d", n, len(d.b)-d.i)
		return ""
	}
	s := string(d.b[d.i : d.i+int(n)])
	d.i += int(n)
	return s
}

func (d *confDecoder) uint() uint64 {
	t := d.tag()
	switch {
	case d.err != nil:
		return 0
	case t < 0x80:
		return uint64(t)
	case t == 0xcc:
		return d.bigEndian(1)
	case t == 0xcd:
		return d.bigEndian(2)
	case t == 0xce:
		return d.bigEndian(4)
	case t == 0xcf:
		return d.bigEndian(8)
	case t >= 0xd0 && t <= 0xd3: // signed, as other encoders write small values
		n := 1 << (t - 0xd0)
		v := d.bigEndian(n)
		if v>>(uint(n)*8-1) != 0 {
			d.fail("a negative incarnation")
			return 0
		}
		return v
	}
	d.fail("want an unsigned integer, found 0x%02x", t)
	return 0
}
