package agent

import (
	"bufio"
	"bytes"
)

// readHelloAck reads from br until the HelloAck answering nonce n and
// returns its payload. Everything before it is skipped: the guest may
// still be sending what it had for an earlier host connection, even the
// second half of a frame whose first half that connection received, and
// answers to Hellos of an earlier Dial. The magic and the nonce, 32 bytes
// of which 16 are random, cannot be matched by accident.
func readHelloAck(br *bufio.Reader, n nonce) ([]byte, error) {
	sig := encodeHello(n)
	need := headerSize + len(sig)
	for {
		if _, err := br.Peek(need); err != nil {
			return nil, err
		}
		buf, _ := br.Peek(br.Buffered())
		i := bytes.Index(buf[headerSize:], sig)
		if i < 0 {
			// Keep the bytes that could still start a header before a
			// signature that is not complete yet.
			br.Discard(len(buf) - need + 1)
			continue
		}
		h := parseHeader(buf[i:])
		if h.typ != typeHelloAck || h.session != 0 || !h.valid() || int(h.length) < len(sig) {
			br.Discard(i + 1)
			continue
		}
		br.Discard(i)
		f, err := readFrame(br)
		if err != nil {
			return nil, err
		}
		return f.payload, nil
	}
}
