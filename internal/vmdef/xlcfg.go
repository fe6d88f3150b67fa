package vmdef

import (
	"fmt"
	"strings"

	"github.com/polyvisor/polyvisor/internal/lazyre"
)

// This file reads the syntax of a Xen xl.cfg (xl.cfg(5)): KEY = VALUE
// settings separated by newlines or ';', where VALUE is a "string", a
// 'string', a number or a [ list, ... ] of those that may span lines; '#'
// starts a comment; KEY += VALUE appends. xl.go maps what it says.

// xlValue is one setting: a scalar, or the items of a list.
type xlValue struct {
	items  []string
	isList bool
}

// xlConfig holds the settings by key. A key set twice keeps the last value.
type xlConfig map[string]xlValue

// scalar is a key's value, "" when it is absent or a list.
func (c xlConfig) scalar(key string) string {
	v := c[key]
	if v.isList || len(v.items) == 0 {
		return ""
	}
	return v.items[0]
}

// items is a list's items, or a scalar as a list of one.
func (c xlConfig) items(key string) []string { return c[key].items }

type xlTokenKind int

const (
	xlEOF    xlTokenKind = iota
	xlEnd                // a newline or ';': the end of a setting
	xlWord               // a key or a number
	xlString             // a quoted string, unquoted
	xlAssign             // =
	xlAppend             // +=
	xlOpen               // [
	xlClose              // ]
	xlComma              // ,
)

type xlToken struct {
	kind xlTokenKind
	text string
	line int
}

// xlLexer hands out tokens one at a time, so that a hostile file costs
// memory in proportion to its values, not to its punctuation.
type xlLexer struct {
	src  string
	pos  int
	line int
}

func (lx *xlLexer) next() (xlToken, error) {
	for lx.pos < len(lx.src) {
		c := lx.src[lx.pos]
		switch {
		case c == '\n' || c == ';':
			lx.pos++
			tok := xlToken{kind: xlEnd, line: lx.line}
			if c == '\n' {
				lx.line++
			}
			return tok, nil
		case c == ' ' || c == '\t' || c == '\r':
			lx.pos++
		case c == '#':
			for lx.pos < len(lx.src) && lx.src[lx.pos] != '\n' {
				lx.pos++
			}
		case c == '"' || c == '\'':
			return lx.quoted(c)
		case c == '=':
			lx.pos++
			return xlToken{kind: xlAssign, line: lx.line}, nil
		case c == '+' && strings.HasPrefix(lx.src[lx.pos:], "+="):
			lx.pos += 2
			return xlToken{kind: xlAppend, line: lx.line}, nil
		case c == '[':
			lx.pos++
			return xlToken{kind: xlOpen, line: lx.line}, nil
		case c == ']':
			lx.pos++
			return xlToken{kind: xlClose, line: lx.line}, nil
		case c == ',':
			lx.pos++
			return xlToken{kind: xlComma, line: lx.line}, nil
		case isXLWordByte(c):
			start := lx.pos
			for lx.pos < len(lx.src) && isXLWordByte(lx.src[lx.pos]) {
				lx.pos++
			}
			return xlToken{kind: xlWord, text: lx.src[start:lx.pos], line: lx.line}, nil
		default:
			return xlToken{}, fmt.Errorf("xl line %d: unexpected character %q", lx.line, c)
		}
	}
	return xlToken{kind: xlEOF, line: lx.line}, nil
}

func isXLWordByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-'
}

// quoted reads a string up to its closing quote, decoding backslash
// escapes: \n and \t, and a backslash before any other character stands
// for that character.
func (lx *xlLexer) quoted(quote byte) (xlToken, error) {
	line := lx.line
	var b strings.Builder
	for lx.pos++; lx.pos < len(lx.src); lx.pos++ {
		c := lx.src[lx.pos]
		switch {
		case c == quote:
			lx.pos++
			return xlToken{kind: xlString, text: b.String(), line: line}, nil
		case c == '\n':
			return xlToken{}, fmt.Errorf("xl line %d: string not closed before the end of the line; close it with %c", line, quote)
		case c == '\\' && lx.pos+1 < len(lx.src) && lx.src[lx.pos+1] != '\n':
			lx.pos++
			switch e := lx.src[lx.pos]; e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			default:
				b.WriteByte(e)
			}
		default:
			b.WriteByte(c)
		}
	}
	return xlToken{}, fmt.Errorf("xl line %d: string not closed before the end of the file; close it with %c", line, quote)
}

var (
	xlKey    = lazyre.New(`^[A-Za-z_][A-Za-z0-9_]*$`)
	xlNumber = lazyre.New(`^-?[0-9][0-9A-Za-z_.]*$`)
)

func readXL(data []byte) (xlConfig, error) {
	lx := &xlLexer{src: strings.TrimPrefix(string(data), "\ufeff"), line: 1}
	cfg := xlConfig{}
	for {
		tok, err := lx.next()
		if err != nil {
			return nil, err
		}
		switch {
		case tok.kind == xlEOF:
			return cfg, nil
		case tok.kind == xlEnd:
			continue
		case tok.kind != xlWord || !xlKey().MatchString(tok.text):
			return nil, fmt.Errorf("xl line %d: expected a setting such as memory = 1024, found %s", tok.line, describeXL(tok))
		}
		key := tok.text
		op, err := lx.next()
		if err != nil {
			return nil, err
		}
		if op.kind != xlAssign && op.kind != xlAppend {
			return nil, fmt.Errorf("xl line %d: expected = after %.40s, found %s", op.line, key, describeXL(op))
		}
		value, err := readXLValue(lx, key)
		if err != nil {
			return nil, err
		}
		if op.kind == xlAppend {
			value = appendXL(cfg[key], value)
		}
		cfg[key] = value
		end, err := lx.next()
		if err != nil {
			return nil, err
		}
		if end.kind != xlEnd && end.kind != xlEOF {
			return nil, fmt.Errorf("xl line %d: expected the end of the %.40s setting, found %s; separate settings with a newline or ';'", end.line, key, describeXL(end))
		}
	}
}

// appendXL is KEY += VALUE: a list gets the items, a string the text.
func appendXL(old, more xlValue) xlValue {
	if old.isList || more.isList {
		return xlValue{items: append(append([]string(nil), old.items...), more.items...), isList: true}
	}
	return xlValue{items: []string{old.scalar() + more.scalar()}}
}

func (v xlValue) scalar() string {
	if len(v.items) == 0 {
		return ""
	}
	return v.items[0]
}

func readXLValue(lx *xlLexer, key string) (xlValue, error) {
	tok, err := lx.next()
	if err != nil {
		return xlValue{}, err
	}
	if tok.kind != xlOpen {
		atom, err := xlAtom(tok, key)
		return xlValue{items: []string{atom}}, err
	}
	list := xlValue{isList: true}
	for {
		tok, err := lx.nextSkippingEnds()
		if err != nil {
			return xlValue{}, err
		}
		if tok.kind == xlClose {
			return list, nil
		}
		atom, err := xlAtom(tok, key)
		if err != nil {
			return xlValue{}, err
		}
		list.items = append(list.items, atom)
		sep, err := lx.nextSkippingEnds()
		if err != nil {
			return xlValue{}, err
		}
		switch sep.kind {
		case xlClose:
			return list, nil
		case xlComma:
		default:
			return xlValue{}, fmt.Errorf("xl line %d: in the %.40s list, expected ',' or ']', found %s", sep.line, key, describeXL(sep))
		}
	}
}

// nextSkippingEnds is next inside a list, where newlines do not end the
// setting.
func (lx *xlLexer) nextSkippingEnds() (xlToken, error) {
	for {
		tok, err := lx.next()
		if err != nil || tok.kind != xlEnd {
			return tok, err
		}
	}
}

func xlAtom(tok xlToken, key string) (string, error) {
	switch {
	case tok.kind == xlString:
		return tok.text, nil
	case tok.kind == xlWord && xlNumber().MatchString(tok.text):
		return tok.text, nil
	case tok.kind == xlWord:
		return "", fmt.Errorf("xl line %d: the value of %.40s, %s, is not a number and must be quoted", tok.line, key, clip(tok.text))
	}
	return "", fmt.Errorf("xl line %d: expected a value for %.40s (a \"string\", a number or a [list]), found %s", tok.line, key, describeXL(tok))
}

func describeXL(tok xlToken) string {
	switch tok.kind {
	case xlEOF:
		return "the end of the file"
	case xlEnd:
		return "the end of the line"
	case xlWord, xlString:
		return clip(tok.text)
	case xlAssign:
		return "'='"
	case xlAppend:
		return "'+='"
	case xlOpen:
		return "'['"
	case xlClose:
		return "']'"
	case xlComma:
		return "','"
	}
	return "?"
}
