package vmdef

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
)

// XML limits: definitions are a few KiB; these bound what a hostile file
// can make the parser do.
const (
	MaxXMLSize  = 4 << 20
	MaxXMLDepth = 64
)

// ReadLimited reads all of r, refusing more than limit bytes.
func ReadLimited(r io.Reader, limit int64, what string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes; a definition is never that big", what, limit)
	}
	return data, nil
}

// DecodeXML decodes a definition into v after checking it is bounded: at
// most MaxXMLSize bytes, MaxXMLDepth levels deep, and without a document
// type declaration (so no entity can be defined, internal or external).
// encoding/xml never fetches anything, and in strict mode refuses entities
// it does not know; the checks here make the refusal explicit and early.
func DecodeXML(data []byte, what string, v any) error {
	if len(data) > MaxXMLSize {
		return fmt.Errorf("%s: larger than %d bytes; a definition is never that big", what, MaxXMLSize)
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	depth := 0
	for {
		tok, err := dec.RawToken()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			head := bytes.TrimSpace(t)
			return fmt.Errorf("%s: a document type declaration (<!%q...>) is not accepted: entities are refused", what, head[:min(len(head), 20)])
		case xml.StartElement:
			if depth++; depth > MaxXMLDepth {
				return fmt.Errorf("%s: nested deeper than %d elements", what, MaxXMLDepth)
			}
		case xml.EndElement:
			depth--
		}
	}
	if err := xml.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
