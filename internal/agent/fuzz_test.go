package agent

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/polyvisor/polyvisor/internal/stream"
)

// FuzzDecoder checks the agent's decoder on any stream, cut into reads of
// any size: it emits only well-formed frames, keeps its buffer bounded,
// and once a host says Hello twice (Dial repeats it) after the noise, the
// last Hello it emits is that host's and the frames after it arrive.
func FuzzDecoder(f *testing.F) {
	f.Add([]byte{}, uint16(1))
	f.Add([]byte("garbage"), uint16(3))
	f.Add(encodeFrame(typeStdin, 1, make([]byte, 3000))[:100], uint16(64))
	f.Add(helloSignature(), uint16(5))
	f.Add(append(helloSignature(), 1, 2, 3), uint16(40))
	f.Add(encodeFrame(typeHello, 0, encodeHello(nonce{5})), uint16(41))
	f.Fuzz(func(t *testing.T, noise []byte, chunk uint16) {
		host := nonce{0xfe, 0xed}
		hello := encodeFrame(typeHello, 0, encodeHello(host))
		stream := concat(noise, hello, hello, encodeFrame(typePing, 0, []byte("after")))
		d := newDecoder()
		size := int(chunk)%4096 + 1
		var frames []frame
		for len(stream) > 0 {
			n := min(size, len(stream))
			d.feed(stream[:n])
			stream = stream[n:]
			for {
				f, ok, _ := d.next()
				if !ok {
					break
				}
				h := header{typ: f.typ, length: uint32(len(f.payload))}
				if !h.valid() {
					t.Fatalf("emitted frame type %d of %d bytes", f.typ, len(f.payload))
				}
				if f.typ == typeHello {
					if _, err := decodeHello(f.payload); err != nil {
						t.Fatalf("emitted a bad hello: %v", err)
					}
				}
				frames = append(frames, f)
			}
			if len(d.buf)-d.off > headerSize+MaxPayload+size {
				t.Fatalf("decoder holds %d bytes", len(d.buf)-d.off)
			}
		}
		last := -1
		for i, f := range frames {
			if f.typ == typeHello {
				last = i
			}
		}
		if last < 0 {
			t.Fatal("the host's hello was never seen")
		}
		if n, _ := decodeHello(frames[last].payload); n != host {
			t.Fatalf("last hello has nonce %x", n)
		}
		if len(frames) != last+2 || frames[last+1].typ != typePing || string(frames[last+1].payload) != "after" {
			t.Fatalf("after the last hello: %v", types(frames[last+1:]))
		}
	})
}

// FuzzReadFrame checks the host's strict reader on any stream: frames it
// returns are well formed and re-encode to the bytes they came from.
func FuzzReadFrame(f *testing.F) {
	f.Add(encodeFrame(typeStdout, 1, []byte("hi")))
	f.Add(encodeFrame(typeExit, 1, stream.EncodeExit(3)))
	f.Add([]byte{typeStdout, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, stream []byte) {
		r := bytes.NewReader(stream)
		for {
			fr, err := readFrame(r)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, errBadFrame) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			consumed := len(stream) - r.Len()
			enc := encodeFrame(fr.typ, fr.session, fr.payload)
			if !bytes.Equal(enc, stream[consumed-len(enc):consumed]) {
				t.Fatal("frame does not re-encode to its bytes")
			}
		}
	})
}

// FuzzReadHelloAck checks the host's handshake on any noise before the
// agent's answer: with a nonce the noise cannot know, as Dial's random one,
// it finds exactly that answer.
func FuzzReadHelloAck(f *testing.F) {
	f.Add([]byte{})
	f.Add(encodeFrame(typeHelloAck, 0, encodeHello(nonce{}))[:30])
	f.Add(encodeHello(nonce{}))
	f.Fuzz(func(t *testing.T, noise []byte) {
		n, err := newNonce()
		if err != nil {
			t.Fatal(err)
		}
		ack, _ := encodeHelloAck(n, GuestInfo{Arch: "aarch64"})
		br := bufio.NewReaderSize(bytes.NewReader(concat(noise, encodeFrame(typeHelloAck, 0, ack))), 64)
		p, err := readHelloAck(br, n)
		if err != nil {
			t.Fatalf("ack not found: %v", err)
		}
		if !bytes.Equal(p, ack) {
			t.Fatalf("payload %q, want %q", p, ack)
		}
	})
}
