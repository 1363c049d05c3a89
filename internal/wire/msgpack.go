package wire

import (
	"fmt"
	"io"

	"github.com/vmihailenco/msgpack/v5"
)

// The bodies of client calls and their replies are msgpack, encoded and
// decoded by reflection; protocol messages have an encoding of their own
// (message.go). Frames check their bodies the same way (frameReader.readBody).

// Marshal encodes v as msgpack, the body of a client call or its reply.
func Marshal(v any) ([]byte, error) { return msgpack.Marshal(v) }

// Unmarshal decodes b into v once checkMsgpackValue has found it to be one
// well-formed value that claims no more than its bytes hold: msgpack's
// decoder alone would preallocate by an announced count, and recurse as
// deep as the input nests.
func Unmarshal(b []byte, v any) error {
	if err := checkMsgpackValue(b); err != nil {
		return err
	}
	return msgpack.Unmarshal(b, v)
}

// Kinds of msgpack values, as far as checkMsgpackValue cares.
const (
	mpScalar = iota // including strings, binaries and extensions
	mpArray
	mpMap
)

// checkMsgpackValue reports whether b holds exactly one well-formed msgpack
// value. Beyond well-formedness it guarantees what the msgpack decoder does
// not: no container announces more elements than there are bytes left (the
// decoder preallocates slices by the announced count), and nesting stays
// within frameMaxDepth. Together they bound the memory and stack a body can
// make the decoder use by the size of the frame.
func checkMsgpackValue(b []byte) error {
	var outer [frameMaxDepth]uint64 // elements still due in each enclosing container
	depth := 0
	due := uint64(1) // elements still due at the current level
	i := 0
	for {
		if due == 0 {
			if depth == 0 {
				break
			}
			depth--
			due = outer[depth]
			continue
		}
		if i >= len(b) {
			return io.ErrUnexpectedEOF
		}
		c := b[i]
		i++
		due--

		var payload uint64 // bytes to skip
		var elems uint64   // for a container
		var lenSize int    // bytes of an explicit length that follows c
		kind := mpScalar
		switch {
		case c <= 0x7f || c >= 0xe0: // fixint
		case c <= 0x8f:
			kind, elems = mpMap, uint64(c&0x0f)
		case c <= 0x9f:
			kind, elems = mpArray, uint64(c&0x0f)
		case c <= 0xbf:
			payload = uint64(c & 0x1f)
		default:
			switch c {
			case 0xc0, 0xc2, 0xc3: // nil, false, true
			case 0xc4, 0xd9: // bin8, str8
				lenSize = 1
			case 0xc5, 0xda:
				lenSize = 2
			case 0xc6, 0xdb:
				lenSize = 4
			case 0xc7: // ext8: length, then a type byte
				lenSize, payload = 1, 1
			case 0xc8:
				lenSize, payload = 2, 1
			case 0xc9:
				lenSize, payload = 4, 1
			case 0xcc, 0xd0:
				payload = 1
			case 0xcd, 0xd1:
				payload = 2
			case 0xca, 0xce, 0xd2:
				payload = 4
			case 0xcb, 0xcf, 0xd3:
				payload = 8
			case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1..16 plus a type byte
				payload = 1 + 1<<(c-0xd4)
			case 0xdc:
				kind, lenSize = mpArray, 2
			case 0xdd:
				kind, lenSize = mpArray, 4
			case 0xde:
				kind, lenSize = mpMap, 2
			case 0xdf:
				kind, lenSize = mpMap, 4
			default: // 0xc1 is never used
				return fmt.Errorf("invalid msgpack code 0x%x at offset %d", c, i-1)
			}
		}
		if lenSize > 0 {
			if len(b)-i < lenSize {
				return io.ErrUnexpectedEOF
			}
			var n uint64
			for _, x := range b[i : i+lenSize] {
				n = n<<8 | uint64(x)
			}
			i += lenSize
			if kind == mpScalar {
				payload += n
			} else {
				elems = n
			}
		}
		if kind == mpMap {
			elems *= 2 // cannot overflow: at most 2*(2^32-1)
		}
		left := uint64(len(b) - i)
		if payload > left {
			return io.ErrUnexpectedEOF
		}
		i += int(payload)
		if elems == 0 {
			continue
		}
		// Every element takes at least one byte.
		if elems > left {
			return fmt.Errorf("container at offset %d announces %d elements in %d bytes", i-1-lenSize, elems, left)
		}
		if depth == frameMaxDepth {
			return fmt.Errorf("containers nested deeper than %d", frameMaxDepth)
		}
		outer[depth] = due
		depth++
		due = elems
	}
	if i != len(b) {
		return fmt.Errorf("%d bytes left after the value", len(b)-i)
	}
	return nil
}
