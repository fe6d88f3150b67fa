package stream

import (
	"io"
	"sync"
)

// FrameWriter serializes the frames written to one stream, so frames of
// different types (stdout, stderr, exit) written from several goroutines
// never interleave. It is safe for concurrent use.
type FrameWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// NewFrameWriter returns a FrameWriter that writes frames to w.
func NewFrameWriter(w io.Writer) *FrameWriter {
	return &FrameWriter{w: w}
}

// WriteFrame writes one frame of type t.
func (fw *FrameWriter) WriteFrame(t byte, data []byte) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return WriteFrame(fw.w, t, data)
}

// Writer returns an io.Writer whose writes become frames of type t on fw.
func (fw *FrameWriter) Writer(t byte) *Writer {
	return &Writer{fw: fw, t: t}
}

// Writer is an io.Writer that emits each write as frames of one type, for
// wiring a process's stdout or stderr to a stream. It is safe for concurrent
// use; all Writers from one FrameWriter share its lock.
type Writer struct {
	fw *FrameWriter
	t  byte
}

// NewWriter returns a Writer of frames of type t on w, with a lock of its
// own. Use FrameWriter.Writer instead when several types share w.
func NewWriter(w io.Writer, t byte) *Writer {
	return NewFrameWriter(w).Writer(t)
}

// Write sends p as one frame, or as several when p exceeds MaxPayload. An
// empty p sends nothing: an empty frame would carry no data.
func (w *Writer) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), MaxPayload)]
		if err := w.fw.WriteFrame(w.t, chunk); err != nil {
			return written, err
		}
		written += len(chunk)
		p = p[len(chunk):]
	}
	return written, nil
}
