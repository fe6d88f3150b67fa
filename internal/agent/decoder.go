package agent

import "bytes"

// decoder splits the agent's side of the port into frames. It trusts
// nothing of what came before a Hello: the port is one byte stream that
// outlives host connections, so it may hold the tail of a frame that an old
// connection cut off, bytes lost in flight, or noise.
//
// So the decoder starts out of step and drops bytes until it sees a Hello's
// signature; once in step it parses frames, and falls out of step at the
// first impossible header. It also watches every byte, payloads included,
// for the signature: a new host connection then resynchronises it at once,
// even when the Hello arrives in the middle of a frame an old connection
// never finished, which would otherwise swallow it and every Hello after it
// up to MaxPayload bytes. The host keeps signatures out of command input
// (see Client.feedStdin).
type decoder struct {
	buf     []byte // bytes received; buf[off:] are not consumed yet
	off     int
	inStep  bool   // buf[off:] starts at a frame boundary
	checked int    // offsets in buf[off:] before this are known not to start a signature
	sig     []byte // helloSignature()
}

// newDecoder returns a decoder that is out of step.
func newDecoder() *decoder {
	return &decoder{sig: helloSignature()}
}

// feed adds bytes read from the port.
func (d *decoder) feed(p []byte) {
	// Move what is left to the front once per read, not once per frame:
	// a read can hold hundreds of small frames.
	d.buf = append(d.buf[:copy(d.buf, d.buf[d.off:])], p...)
	d.off = 0
}

// reset drops everything buffered and waits for a Hello, as after the host
// has gone away.
func (d *decoder) reset() {
	d.buf, d.off, d.inStep, d.checked = d.buf[:0], 0, false, 0
}

// next returns the next whole frame, or false when more bytes are needed.
// skipped counts the bytes dropped as noise on the way, for the agent's
// log.
func (d *decoder) next() (f frame, ok bool, skipped int) {
	for {
		sigAt := d.findSignature()
		if sigAt > 0 && (!d.inStep || sigAt < d.pendingEnd()) {
			// Noise, or a frame cut off by a new Hello: drop it.
			skipped += sigAt
			d.consume(sigAt)
			continue
		}
		if sigAt == 0 {
			d.inStep = true
		}
		data := d.buf[d.off:]
		if !d.inStep {
			// Keep only what could be the start of a signature.
			keep := min(len(data), len(d.sig)-1)
			skipped += len(data) - keep
			d.consume(len(data) - keep)
			return frame{}, false, skipped
		}
		if len(data) < headerSize {
			return frame{}, false, skipped
		}
		h := parseHeader(data)
		if !h.valid() {
			d.inStep = false
			continue
		}
		end := headerSize + int(h.length)
		if len(data) < end {
			return frame{}, false, skipped
		}
		f = frame{typ: h.typ, session: h.session, payload: bytes.Clone(data[headerSize:end])}
		d.consume(end)
		return f, true, skipped
	}
}

// findSignature returns the offset in buf[off:] of the first Hello
// signature, or -1. A signature that is only partly buffered is not found
// yet.
func (d *decoder) findSignature() int {
	data := d.buf[d.off:]
	if i := bytes.Index(data[d.checked:], d.sig); i >= 0 {
		return d.checked + i
	}
	d.checked = max(d.checked, len(data)-len(d.sig)+1)
	return -1
}

// pendingEnd returns where the frame at the start of buf[off:] ends, as
// far as its header says, or one past the buffered bytes when the header is
// not complete (so that a signature anywhere lies inside it).
func (d *decoder) pendingEnd() int {
	data := d.buf[d.off:]
	if len(data) < headerSize {
		return len(data) + 1
	}
	return headerSize + int(parseHeader(data).length)
}

// pending returns the number of bytes fed and not yet returned in a frame
// or dropped.
func (d *decoder) pending() int {
	return len(d.buf) - d.off
}

// consume drops the first n unconsumed bytes.
func (d *decoder) consume(n int) {
	d.off += n
	d.checked = max(0, d.checked-n)
}
