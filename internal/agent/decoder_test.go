package agent

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/polyvisor/polyvisor/internal/stream"
)

// decodeAll feeds stream to a new decoder in chunks of size chunk and
// returns the frames it emits.
func decodeAll(stream []byte, chunk int) []frame {
	d := newDecoder()
	var frames []frame
	for len(stream) > 0 {
		n := min(chunk, len(stream))
		d.feed(stream[:n])
		stream = stream[n:]
		for {
			f, ok, _ := d.next()
			if !ok {
				break
			}
			frames = append(frames, f)
		}
	}
	return frames
}

func concat(parts ...[]byte) []byte {
	return bytes.Join(parts, nil)
}

func TestDecoderNeedsAHelloFirst(t *testing.T) {
	hello := encodeFrame(typeHello, 0, encodeHello(nonce{7}))
	ping := encodeFrame(typePing, 0, []byte("x"))
	stdin := encodeFrame(typeStdin, 3, bytes.Repeat([]byte("d"), MaxPayload))
	for _, chunk := range []int{1, 7, 41, 1000, 1 << 20} {
		frames := decodeAll(concat(ping, ping, hello, ping, stdin, ping), chunk)
		if len(frames) != 4 || frames[0].typ != typeHello || frames[1].typ != typePing ||
			frames[2].typ != typeStdin || len(frames[2].payload) != MaxPayload || frames[3].typ != typePing {
			t.Fatalf("chunk %d: frames %v", chunk, types(frames))
		}
	}
}

func TestDecoderResyncsOnAHelloInsideAFrame(t *testing.T) {
	hello := func(n byte) []byte { return encodeFrame(typeHello, 0, encodeHello(nonce{n})) }
	cutOff := encodeFrame(typeStdin, 1, make([]byte, 50000))[:1234]
	frames := decodeAll(concat(hello(1), cutOff, hello(2), encodeFrame(typePing, 0, nil)), 4096)
	if len(frames) != 3 || frames[1].typ != typeHello || frames[1].payload[len(magic)] != 2 || frames[2].typ != typePing {
		t.Fatalf("frames %v", types(frames))
	}
}

func TestDecoderFallsOutOfStepOnABadHeader(t *testing.T) {
	hello := encodeFrame(typeHello, 0, encodeHello(nonce{1}))
	bad := encodeFrame(99, 0, nil)
	frames := decodeAll(concat(hello, bad, encodeFrame(typePing, 0, nil), hello, encodeFrame(typePing, 0, nil)), 3)
	// The ping after the bad header is dropped: the stream is out of
	// step until the next Hello.
	if got := types(frames); !bytes.Equal(got, []byte{typeHello, typeHello, typePing}) {
		t.Fatalf("frames %v", got)
	}
}

func TestReadHelloAckSkipsLeftovers(t *testing.T) {
	mine, other := nonce{1, 2, 3}, nonce{9}
	ackMine, _ := encodeHelloAck(mine, GuestInfo{Arch: "riscv64"})
	ackOther, _ := encodeHelloAck(other, GuestInfo{})
	stream := concat(
		encodeFrame(typeStdout, 4, make([]byte, 5000))[2000:], // the tail of an old frame
		encodeFrame(typeHelloAck, 0, ackOther),
		encodeFrame(typeExit, 4, stream.EncodeExit(0)),
		encodeFrame(typeHelloAck, 0, ackMine),
		encodeFrame(typePong, 0, []byte("p")),
	)
	br := bufio.NewReader(bytes.NewReader(stream))
	p, err := readHelloAck(br, mine)
	if err != nil {
		t.Fatal(err)
	}
	if n, info, err := decodeHelloAck(p); err != nil || n != mine || info.Arch != "riscv64" {
		t.Fatalf("ack %v %+v %v", n, info, err)
	}
	if f, err := readFrame(br); err != nil || f.typ != typePong {
		t.Fatalf("frame after the ack: %+v %v", f, err)
	}
}

func types(frames []frame) []byte {
	var t []byte
	for _, f := range frames {
		t = append(t, f.typ)
	}
	return t
}
