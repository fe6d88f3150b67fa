package stream

import (
	"bytes"
	"testing"
)

// FuzzReadFrame checks that ReadFrame never panics or over-allocates on any
// input, and that what it decodes encodes back to the same bytes.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{Stdout, 0, 0, 0, 2, 'h', 'i'})
	f.Add([]byte{Resize, 0, 0, 0, 4, 0, 24, 0, 80})
	f.Add([]byte{Exit, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{Stdin, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{Error, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		consumed := 0
		for {
			fr, err := ReadFrame(r)
			if err != nil {
				return
			}
			if len(fr.Data) > MaxPayload {
				t.Fatalf("payload of %d bytes passed the limit", len(fr.Data))
			}
			var out bytes.Buffer
			if err := WriteFrame(&out, fr.Type, fr.Data); err != nil {
				t.Fatal(err)
			}
			n := out.Len()
			if !bytes.Equal(out.Bytes(), in[consumed:consumed+n]) {
				t.Fatalf("re-encoded frame differs from its input")
			}
			consumed += n
		}
	})
}
