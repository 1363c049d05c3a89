// Package wire is exraft's side of the bytes that cross the network once a
// connection is admitted: frames, the net/rpc codecs built on them, and the
// encoding of what the calls carry (protocol messages from internal/raft,
// and the msgpack bodies of client calls).
//
// Everything here assumes the bytes come from an adversary. A frame is read
// whole, within a size limit, before anything in it is decoded; a body is
// checked to be one well-formed msgpack value whose counts fit in the bytes
// it has (checkMsgpackValue) before msgpack's decoder sees it; and the
// message decoder checks every length against what is left before it
// allocates. No input makes the process panic, or allocate more than a
// small multiple of the bytes it was sent.
//
// The package knows nothing of Server or Client. Its errors are its own:
// the root package maps them to the public ones (ErrTooLarge and so on)
// where a user could see them.
package wire

import "errors"

// DefaultMaxFrame is the frame limit, in bytes of content, of a codec
// configured with none (MaxFrame <= 0).
const DefaultMaxFrame = 8 << 20

// FrameOverhead is what a frame needs beyond one command: the headers of the
// frame, the Step call and the message that carries the command as an
// entry. A command or a read's query or answer can be at most the frame
// limit less this.
const FrameOverhead = 1024

// ErrFrameTooLarge is wrapped, with the sizes, by every error about a frame
// above the limit: one announced by the peer (which leaves the stream out of
// step, so the connection ends), and one a codec was asked to write (which
// writes nothing, so the connection goes on).
//
// Its text is part of the protocol: a server that cannot send a reply
// answers with an error response whose text starts with it, and clients
// recognise that by the prefix, so it must not change between versions. It
// begins with the text of exraft.ErrTooLarge, which the root package maps
// it to.
var ErrFrameTooLarge = errors.New("exraft: too large: frame above the size limit")

// ErrMalformedFrame is wrapped by every error about the content of a frame
// that arrived whole: such an error never means that the connection ended.
var ErrMalformedFrame = errors.New("exraft: malformed frame")

// errMalformedMessage is wrapped by every error of MessageDecoder.Decode.
// Nothing outside tells it from other errors: a batch that does not decode
// costs its connection whatever went wrong.
var errMalformedMessage = errors.New("exraft: malformed protocol message")

// errEncoding is wrapped by a failure to encode a frame, which writes
// nothing: the connection stays in step and usable.
var errEncoding = errors.New("exraft: encoding")
