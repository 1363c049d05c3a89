package wire

import (
	"encoding/binary"
	"math"
)

// Bodies by hand: the root package encodes and decodes the bodies of the
// client calls made most (Write, Read and their replies) with these rather
// than by reflection, which costs a call several times as much, most of it
// in growing the stack of the goroutine net/rpc starts for each request.
// The bytes are those Marshal writes, and anything a Reader does not expect
// is left to Unmarshal.

// AppendArrayLen appends the header of an array of n elements.
func AppendArrayLen(b []byte, n int) []byte { return appendArrayLen(b, n) }

// AppendMapLen appends the header of a map of n pairs.
func AppendMapLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x80|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xde), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdf), uint32(n))
}

// AppendStr appends s as a msgpack string.
func AppendStr(b []byte, s string) []byte { return appendStr(b, s) }

// AppendBin appends p as msgpack bytes, nil as nil.
func AppendBin(b []byte, p []byte) []byte { return appendBin(b, p) }

// AppendInt64 appends v as Marshal writes an int64: in 9 bytes, whatever
// its value.
func AppendInt64(b []byte, v int64) []byte {
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(v))
}

// AppendUint64 appends v as Marshal writes a uint64: in 9 bytes, whatever
// its value.
func AppendUint64(b []byte, v uint64) []byte {
	return binary.BigEndian.AppendUint64(append(b, 0xcf), v)
}

// AppendUint8 appends v as Marshal writes a uint8: in 2 bytes.
func AppendUint8(b []byte, v uint8) []byte { return append(b, 0xcc, v) }

// Reader reads the msgpack values of a body one after the other. It reads
// only the encodings that the Append functions write; on anything else it
// fails, and stays failed: its caller then decodes the body with Unmarshal.
type Reader struct {
	b   []byte
	bad bool
}

// NewReader reads b.
func NewReader(b []byte) Reader { return Reader{b: b} }

// OK reports whether everything read so far was as expected.
func (r *Reader) OK() bool { return !r.bad }

// Done reports whether everything read was as expected, and all of it read.
func (r *Reader) Done() bool { return !r.bad && len(r.b) == 0 }

// Rest returns what is left unread.
func (r *Reader) Rest() []byte { return r.b }

func (r *Reader) fail() {
	r.bad, r.b = true, nil
}

// take returns the next n bytes.
func (r *Reader) take(n int) []byte {
	if r.bad || n < 0 || n > len(r.b) {
		r.fail()
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *Reader) tag() byte {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}

// ArrayLen reads the header of an array of up to 65535 elements (a batch's
// items may number more than a fixarray holds).
func (r *Reader) ArrayLen() int {
	t := r.tag()
	switch {
	case t&0xf0 == 0x90:
		return int(t & 0x0f)
	case t == 0xdc:
		return int(r.uintN(2))
	}
	r.fail()
	return 0
}

// MapLen reads the header of a map.
func (r *Reader) MapLen() int {
	t := r.tag()
	if t&0xf0 == 0x80 {
		return int(t & 0x0f)
	}
	r.fail()
	return 0
}

// Bin reads bytes, or nil; the result aliases the Reader's input.
func (r *Reader) Bin() []byte {
	var n int
	switch t := r.tag(); t {
	case 0xc0:
		return nil
	case 0xc4:
		n = int(r.uintN(1))
	case 0xc5:
		n = int(r.uintN(2))
	case 0xc6:
		n = int(r.uintN(4))
	default:
		r.fail()
		return nil
	}
	return r.take(n) // empty but not nil for no bytes, as Unmarshal decodes them
}

// Str reads a string.
func (r *Reader) Str() string {
	t := r.tag()
	var n int
	switch {
	case t&0xe0 == 0xa0:
		n = int(t & 0x1f)
	case t == 0xd9:
		n = int(r.uintN(1))
	case t == 0xda:
		n = int(r.uintN(2))
	case t == 0xdb:
		n = int(r.uintN(4))
	default:
		r.fail()
		return ""
	}
	return string(r.take(n))
}

// Key reads a string and reports whether it is k.
func (r *Reader) Key(k string) bool {
	t := r.tag()
	if t&0xe0 != 0xa0 || int(t&0x1f) != len(k) || string(r.take(len(k))) != k {
		r.fail()
		return false
	}
	return true
}

// Int64 reads an int64 as AppendInt64 writes it.
func (r *Reader) Int64() int64 {
	if r.tag() != 0xd3 {
		r.fail()
		return 0
	}
	return int64(r.uintN(8))
}

// Uint64 reads a uint64 as AppendUint64 writes it.
func (r *Reader) Uint64() uint64 {
	if r.tag() != 0xcf {
		r.fail()
		return 0
	}
	return r.uintN(8)
}

// Uint8 reads a uint8 as AppendUint8 writes it.
func (r *Reader) Uint8() uint8 {
	if r.tag() != 0xcc {
		r.fail()
		return 0
	}
	return uint8(r.uintN(1))
}

func (r *Reader) uintN(n int) uint64 {
	var v uint64
	for _, c := range r.take(n) {
		v = v<<8 | uint64(c)
	}
	return v
}
