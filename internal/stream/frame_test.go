package stream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	frames := []Frame{
		{Type: Stdin, Data: []byte("echo hi\n")},
		{Type: Resize, Data: EncodeResize(24, 80)},
		{Type: CloseStdin, Data: []byte{}},
		{Type: Exit, Data: EncodeExit(-3)},
		{Type: Error, Data: []byte("no such guest")},
	}
	for _, f := range frames {
		if err := WriteFrame(&buf, f.Type, f.Data); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range frames {
		got, err := ReadFrame(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if got.Type != want.Type || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	}
	if _, err := ReadFrame(&buf); err != io.EOF { //nolint:errorlint // ReadFrame promises io.EOF itself
		t.Fatalf("after the last frame: got %v, want io.EOF", err)
	}
}

func TestReadFrameTruncated(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, Stdout, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	whole := buf.Bytes()
	for _, n := range []int{1, HeaderSize, len(whole) - 1} {
		_, err := ReadFrame(bytes.NewReader(whole[:n]))
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("frame cut at %d bytes: got %v, want io.ErrUnexpectedEOF", n, err)
		}
	}
}

func TestFrameTooLarge(t *testing.T) {
	hdr := []byte{Stdout, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(hdr[1:], MaxPayload+1)
	if _, err := ReadFrame(bytes.NewReader(hdr)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("read: got %v, want ErrFrameTooLarge", err)
	}
	if err := WriteFrame(io.Discard, Stdout, make([]byte, MaxPayload+1)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("write: got %v, want ErrFrameTooLarge", err)
	}
}

func TestPayloads(t *testing.T) {
	rows, cols, err := DecodeResize(EncodeResize(50, 132))
	if err != nil || rows != 50 || cols != 132 {
		t.Fatalf("resize: got %d %d %v", rows, cols, err)
	}
	for _, code := range []int32{0, 1, 137, -1} {
		got, err := DecodeExit(EncodeExit(code))
		if err != nil || got != code {
			t.Fatalf("exit %d: got %d %v", code, got, err)
		}
	}
	if _, _, err := DecodeResize([]byte{1}); !errors.Is(err, ErrBadPayload) {
		t.Fatalf("short resize: got %v", err)
	}
	if _, err := DecodeExit(nil); !errors.Is(err, ErrBadPayload) {
		t.Fatalf("empty exit: got %v", err)
	}
}

// TestWriterConcurrent checks that frames from concurrent Writers sharing a
// FrameWriter arrive whole, and that a large write is split at MaxPayload.
func TestWriterConcurrent(t *testing.T) {
	var buf bytes.Buffer
	fw := NewFrameWriter(&buf)
	var wg sync.WaitGroup
	for _, typ := range []byte{Stdout, Stderr} {
		w := fw.Writer(typ)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if _, err := w.Write(bytes.Repeat([]byte{'a' + typ}, 1000)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for range 200 {
		f, err := ReadFrame(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Data) != 1000 || !bytes.Equal(f.Data, bytes.Repeat([]byte{'a' + f.Type}, 1000)) {
			t.Fatalf("frame of type %d has mixed or short data", f.Type)
		}
	}

	n, err := NewWriter(&buf, Stdout).Write(make([]byte, MaxPayload+10))
	if err != nil || n != MaxPayload+10 {
		t.Fatalf("large write: %d %v", n, err)
	}
	for _, want := range []int{MaxPayload, 10} {
		f, err := ReadFrame(&buf)
		if err != nil || len(f.Data) != want {
			t.Fatalf("large write split: got %d bytes %v, want %d", len(f.Data), err, want)
		}
	}
}
