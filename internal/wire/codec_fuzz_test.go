package wire

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// The fuzz targets feed arbitrary bytes to a codec as what the peer sent and
// read as net/rpc would, until the connection fails. Nothing may panic, and
// no frame buffer may grow past the limit (codecDrainServer and
// codecDrainClient check that after every header).

const codecFuzzMaxFrame = 1 << 16

func codecFuzzSeeds(f *testing.F, good []byte) {
	f.Add(good)
	f.Add(good[:len(good)-3])                              // truncated in the last frame
	f.Add(good[:2])                                        // truncated in the length
	f.Add([]byte{})                                        // nothing
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x92, 0xa1, 'x'}) // 4 GiB announced
	f.Add(binary.BigEndian.AppendUint32(nil, codecFuzzMaxFrame+1))
	f.Add(append(binary.BigEndian.AppendUint32(nil, codecFuzzMaxFrame), good...)) // at the limit, then short
	f.Add(append(bytes.Clone(good), 0, 0, 0, 1, 0xc1))                            // a frame of one bad byte
}

func FuzzServerCodec(f *testing.F) {
	good := codecRequestFrames(f, codecTestArgs(1), nil, &CodecTestArgs{Items: []CodecTestItem{{Name: "n"}}})
	codecFuzzSeeds(f, good)
	f.Add(codecResponseFrames(f, &CodecTestReply{Sum: 1})) // the other side's header shape
	f.Fuzz(func(t *testing.T, in []byte) {
		codecDrainServer(t, in, codecFuzzMaxFrame)
	})
}

func FuzzClientCodec(f *testing.F) {
	good := codecResponseFrames(f, &CodecTestReply{Sum: 1, Echo: *codecTestArgs(2)}, "an error", &CodecTestReply{})
	codecFuzzSeeds(f, good)
	f.Add(codecRequestFrames(f, codecTestArgs(1))) // the other side's header shape
	f.Fuzz(func(t *testing.T, in []byte) {
		codecDrainClient(t, in, codecFuzzMaxFrame)
	})
}
