package wire

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/exraft/exraft/internal/raft"
)

// Protocol messages are the hot path, so they are encoded by hand instead of
// by msgpack's reflection. The bytes are plain msgpack, the same layout the
// reflective encoder gives the as_array structs raft.Message and raft.Entry:
// an array of messages, each an array of its fields in declaration order up
// to HintTerm, entries as arrays of Index, Term, Type, Data. Either end can
// read what the other writes (TestWireMatchesReflection).
//
// The decoder checks every length against the bytes that are left before it
// allocates, and copies the entries' payloads of each message into one
// buffer of their own (see compactData).

// messageFields is how many fields a message has on the wire.
const messageFields = 19

// AppendMessages appends the encoding of the batch msgs to b, the body of a
// Step call or of its reply.
func AppendMessages(b []byte, msgs []raft.Message) []byte {
	b = appendArrayLen(b, len(msgs))
	for i := range msgs {
		b = appendMessage(b, &msgs[i])
	}
	return b
}

func appendMessage(b []byte, m *raft.Message) []byte {
	b = appendArrayLen(b, messageFields)
	b = appendUint(b, uint64(m.Type))
	b = appendUint(b, m.Term)
	b = appendStr(b, m.From)
	b = appendUint(b, m.FromInc)
	b = appendStr(b, m.FromAddr)
	b = appendStr(b, m.To)
	b = appendUint(b, m.ToInc)
	b = appendUint(b, m.LastIndex)
	b = appendUint(b, m.LastTerm)
	b = appendBool(b, m.Force)
	b = appendBool(b, m.Reject)
	b = appendUint(b, m.PrevIndex)
	b = appendUint(b, m.PrevTerm)
	if m.Entries == nil {
		b = append(b, 0xc0)
	} else {
		b = appendArrayLen(b, len(m.Entries))
		for j := range m.Entries {
			e := &m.Entries[j]
			b = appendArrayLen(b, 4)
			b = appendUint(b, e.Index)
			b = appendUint(b, e.Term)
			b = appendUint(b, uint64(e.Type))
			b = appendBin(b, e.Data)
		}
	}
	b = appendUint(b, m.Commit)
	b = appendUint(b, m.Seq)
	b = appendUint(b, m.Match)
	b = appendUint(b, m.HintIndex)
	return appendUint(b, m.HintTerm)
}

func appendArrayLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
}

func appendUint(b []byte, v uint64) []byte {
	switch {
	case v < 128:
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xcf), v)
}

func appendStr(b []byte, s string) []byte {
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

func appendBin(b []byte, p []byte) []byte {
	if p == nil {
		return append(b, 0xc0)
	}
	n := len(p)
	switch {
	case n <= math.MaxUint8:
		b = append(b, 0xc4, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xc5), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(n))
	}
	return append(b, p...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 0xc3)
	}
	return append(b, 0xc2)
}

// MessageDecoder decodes message batches. It remembers the strings it has
// seen (server names and addresses repeat in every message), so it belongs
// to one goroutine; one serves a connection. The zero value is ready.
type MessageDecoder struct {
	msgs []raft.Message
	b    []byte
	i    int
	err  error
	strs map[string]string
}

// Decode returns the messages of the batch b. The slice is valid until the
// next call, and nothing in it aliases b: the entries' Data are copied out
// (compactData), and so are the strings. An error says at which byte b went
// wrong.
func (d *MessageDecoder) Decode(b []byte) ([]raft.Message, error) {
	d.b, d.i, d.err = b, 0, nil
	n := 0
	if d.peekNil() {
		d.i++ // msgpack's encoding of a nil batch
	} else {
		n = d.arrayLen()
	}
	// The messages are copied out by the caller before the next decode, so
	// one array serves every batch.
	clear(d.msgs)
	msgs := d.msgs[:0]
	if cap(msgs) < n {
		msgs = make([]raft.Message, 0, n)
	}
	for k := 0; k < n && d.err == nil; k++ {
		var m raft.Message
		d.message(&m)
		msgs = append(msgs, m)
	}
	if d.err == nil && d.i != len(d.b) {
		d.fail("%d bytes after the last message", len(d.b)-d.i)
	}
	d.b = nil
	if cap(msgs) <= 1024 {
		d.msgs = msgs
	}
	if d.err != nil {
		return nil, d.err
	}
	return msgs, nil
}

func (d *MessageDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: at byte %d: %s", errMalformedMessage, d.i, fmt.Sprintf(format, args...))
	}
}

func (d *MessageDecoder) message(m *raft.Message) {
	if n := d.arrayLen(); n != messageFields {
		d.fail("a message has %d fields, want %d", n, messageFields)
		return
	}
	m.Type = raft.MessageType(d.small())
	m.Term = d.uint()
	m.From = d.str()
	m.FromInc = d.uint()
	m.FromAddr = d.str()
	m.To = d.str()
	m.ToInc = d.uint()
	m.LastIndex = d.uint()
	m.LastTerm = d.uint()
	m.Force = d.bool()
	m.Reject = d.bool()
	m.PrevIndex = d.uint()
	m.PrevTerm = d.uint()
	if d.peekNil() {
		d.i++
	} else if n := d.arrayLen(); n > 0 {
		m.Entries = make([]raft.Entry, n)
		for j := 0; j < n && d.err == nil; j++ {
			e := &m.Entries[j]
			if k := d.arrayLen(); k != 4 {
				d.fail("an entry has %d fields, want 4", k)
				return
			}
			e.Index = d.uint()
			e.Term = d.uint()
			e.Type = raft.EntryType(d.small())
			e.Data = d.bin()
		}
		compactData(m.Entries)
	} else {
		m.Entries = []raft.Entry{}
	}
	m.Commit = d.uint()
	m.Seq = d.uint()
	m.Match = d.uint()
	m.HintIndex = d.uint()
	m.HintTerm = d.uint()
}

func (d *MessageDecoder) need(n int) bool {
	if d.err != nil {
		return false
	}
	if n < 0 || len(d.b)-d.i < n {
		d.fail("truncated: %d bytes needed, %d left", n, len(d.b)-d.i)
		return false
	}
	return true
}

func (d *MessageDecoder) peekNil() bool {
	return d.err == nil && d.i < len(d.b) && d.b[d.i] == 0xc0
}

func (d *MessageDecoder) tag() byte {
	if !d.need(1) {
		return 0
	}
	t := d.b[d.i]
	d.i++
	return t
}

func (d *MessageDecoder) be(n int) uint64 {
	if !d.need(n) {
		return 0
	}
	var v uint64
	for _, c := range d.b[d.i : d.i+n] {
		v = v<<8 | uint64(c)
	}
	d.i += n
	return v
}

// arrayLen reads an array header whose length must fit in what is left
// (every element takes at least a byte).
func (d *MessageDecoder) arrayLen() int {
	t := d.tag()
	var n uint64
	switch {
	case d.err != nil:
		return 0
	case t&0xf0 == 0x90:
		n = uint64(t & 0x0f)
	case t == 0xdc:
		n = d.be(2)
	case t == 0xdd:
		n = d.be(4)
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

func (d *MessageDecoder) uint() uint64 {
	t := d.tag()
	switch {
	case d.err != nil:
		return 0
	case t < 0x80:
		return uint64(t)
	case t == 0xcc:
		return d.be(1)
	case t == 0xcd:
		return d.be(2)
	case t == 0xce:
		return d.be(4)
	case t == 0xcf:
		return d.be(8)
	case t >= 0xd0 && t <= 0xd3: // signed, as some encoders write small values
		n := 1 << (t - 0xd0)
		v := d.be(n)
		if v>>(uint(n)*8-1) != 0 {
			d.fail("a negative number where a count or index belongs")
			return 0
		}
		return v
	}
	d.fail("want an unsigned integer, found 0x%02x", t)
	return 0
}

func (d *MessageDecoder) small() uint8 {
	v := d.uint()
	if v > math.MaxUint8 {
		d.fail("a type of %d", v)
	}
	return uint8(v)
}

func (d *MessageDecoder) bool() bool {
	switch t := d.tag(); {
	case d.err != nil:
	case t == 0xc3:
		return true
	case t == 0xc2:
	default:
		d.fail("want a boolean, found 0x%02x", t)
	}
	return false
}

// span reads the length of a str or bin and returns its bytes.
func (d *MessageDecoder) span(str bool) ([]byte, bool) {
	t := d.tag()
	var n uint64
	switch {
	case d.err != nil:
		return nil, false
	case t == 0xc0:
		return nil, false
	case str && t&0xe0 == 0xa0:
		n = uint64(t & 0x1f)
	case t == 0xd9 || t == 0xc4:
		n = d.be(1)
	case t == 0xda || t == 0xc5:
		n = d.be(2)
	case t == 0xdb || t == 0xc6:
		n = d.be(4)
	case !str && t&0xe0 == 0xa0:
		n = uint64(t & 0x1f)
	default:
		d.fail("want a string or bytes, found 0x%02x", t)
		return nil, false
	}
	if n > uint64(len(d.b)-d.i) {
		d.fail("%d bytes announced, %d left", n, len(d.b)-d.i)
		return nil, false
	}
	p := d.b[d.i : d.i+int(n) : d.i+int(n)]
	d.i += int(n)
	return p, true
}

func (d *MessageDecoder) str() string {
	p, _ := d.span(true)
	if len(p) == 0 {
		return ""
	}
	if s, ok := d.strs[string(p)]; ok {
		return s
	}
	s := string(p)
	if d.strs == nil || len(d.strs) > 256 {
		d.strs = map[string]string{}
	}
	d.strs[s] = s
	return s
}

func (d *MessageDecoder) bin() []byte {
	p, ok := d.span(false)
	if !ok {
		return nil
	}
	return p
}

// compactData moves the payloads of es into one buffer of their exact size.
// Entries live on in the log, and a payload that pointed into the batch it
// arrived in would keep the whole batch, message framing included, alive
// with it.
func compactData(es []raft.Entry) {
	total := 0
	for i := range es {
		total += len(es[i].Data)
		if es[i].Data != nil && len(es[i].Data) == 0 {
			es[i].Data = []byte{} // empty, and pointing at nothing
		}
	}
	if total == 0 {
		return
	}
	buf := make([]byte, 0, total)
	for i := range es {
		if len(es[i].Data) == 0 {
			continue
		}
		start := len(buf)
		buf = append(buf, es[i].Data...)
		es[i].Data = buf[start:len(buf):len(buf)]
	}
}
