package deid

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/go-json-experiment/json/jsontext"
)

// tnode is one JSON value of the input, in document order. Strings, numbers and literals refer to their raw bytes
// in the input; containers are followed by their children and next points past the subtree, so the transformer
// walks the input without decoding it into Go values and without reflection.
type tnode struct {
	kind      byte  // '{', '[', '"', '0' (number), 't', 'f', 'n'
	esc       bool  // the string value contains escape sequences
	nameEsc   bool  // the member name contains escape sequences
	nameStart int32 // raw member name including quotes; nameEnd == 0 for array elements and the root
	nameEnd   int32
	start     int32 // raw value (strings including quotes)
	end       int32
	next      int32 // index of the first node after this subtree
}

// tape is the parsed input.
type tape struct {
	in    []byte
	nodes []tnode
}

// buildTape tokenizes input once with jsontext, enforcing the limits. Errors are *InputError and never quote
// input content.
func buildTape(in []byte, lim Limits) (*tape, error) {
	if int64(len(in)) > lim.MaxInputBytes {
		return nil, &InputError{Reason: fmt.Sprintf("input is %d bytes, larger than the limit of %d", len(in), lim.MaxInputBytes), Offset: -1}
	}
	if len(in) >= 1<<31-1 {
		return nil, &InputError{Reason: "input too large", Offset: -1}
	}
	// A UTF-8 byte order mark is tolerated (some exporters write one); offsets stay relative to the input.
	body := in
	if bytes.HasPrefix(body, []byte("\xef\xbb\xbf")) {
		body = body[3:]
	}
	dec := jsontext.NewDecoder(bytes.NewBuffer(body))
	t := &tape{in: body, nodes: make([]tnode, 0, len(body)/40+16)}
	b := tapeBuilder{t: t, dec: dec, lim: lim}
	if err := b.value(0, 0, 0, false); err != nil {
		return nil, err
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, &InputError{Reason: "unexpected data after the top-level JSON value", Offset: dec.InputOffset()}
	}
	if len(t.nodes) == 0 || t.nodes[0].kind != '{' {
		return nil, &InputError{Reason: "input is not a JSON object (a FHIR resource or Bundle)", Offset: 0}
	}
	return t, nil
}

type tapeBuilder struct {
	t   *tape
	dec *jsontext.Decoder
	lim Limits
}

func (b *tapeBuilder) fail(err error) error {
	var se *jsontext.SyntacticError
	if errors.As(err, &se) {
		reason := "invalid JSON"
		switch {
		case errors.Is(err, jsontext.ErrDuplicateName):
			reason = "duplicate member name"
		case bytes.Contains([]byte(se.Error()), []byte("UTF-8")):
			reason = "invalid UTF-8"
		case bytes.Contains([]byte(se.Error()), []byte("depth")):
			reason = fmt.Sprintf("JSON nesting deeper than the limit of %d", b.lim.MaxDepth)
		}
		return &InputError{Reason: reason, Offset: se.ByteOffset}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return &InputError{Reason: "truncated JSON", Offset: b.dec.InputOffset()}
	}
	return &InputError{Reason: "invalid JSON", Offset: b.dec.InputOffset()}
}

func (b *tapeBuilder) value(depth int, nameStart, nameEnd int32, nameEsc bool) error {
	if depth > b.lim.MaxDepth {
		return &InputError{Reason: fmt.Sprintf("JSON nesting deeper than the limit of %d", b.lim.MaxDepth), Offset: b.dec.InputOffset()}
	}
	dec := b.dec
	switch dec.PeekKind() {
	case '{', '[':
		tok, err := dec.ReadToken()
		if err != nil {
			return b.fail(err)
		}
		k := tok.Kind()
		idx := len(b.t.nodes)
		b.t.nodes = append(b.t.nodes, tnode{kind: byte(k), nameStart: nameStart, nameEnd: nameEnd, nameEsc: nameEsc, start: off32(dec.InputOffset() - 1)})
		closer := jsontext.Kind('}')
		if k == '[' {
			closer = ']'
		}
		for dec.PeekKind() != closer {
			if dec.PeekKind() == 0 {
				_, err := dec.ReadToken()
				return b.fail(err)
			}
			var ns, ne int32
			var nesc bool
			if k == '{' {
				raw, err := dec.ReadValue()
				if err != nil {
					return b.fail(err)
				}
				ne = off32(dec.InputOffset())
				ns = ne - off32(int64(len(raw)))
				nesc = bytes.IndexByte(raw, '\\') >= 0
			}
			if err := b.value(depth+1, ns, ne, nesc); err != nil {
				return err
			}
		}
		if _, err := dec.ReadToken(); err != nil {
			return b.fail(err)
		}
		b.t.nodes[idx].end = off32(dec.InputOffset())
		b.t.nodes[idx].next = off32(int64(len(b.t.nodes)))
		return nil
	default:
		raw, err := dec.ReadValue()
		if err != nil {
			return b.fail(err)
		}
		end := off32(dec.InputOffset())
		if len(raw) > b.lim.MaxStringBytes {
			return &InputError{Reason: fmt.Sprintf("string longer than the limit of %d bytes", b.lim.MaxStringBytes), Offset: int64(end) - int64(len(raw))}
		}
		k := raw[0]
		switch k {
		case '"', 't', 'f', 'n': // string, true, false, null: the first byte is the kind
		default:
			k = '0'
		}
		b.t.nodes = append(b.t.nodes, tnode{
			kind: k, esc: k == '"' && bytes.IndexByte(raw, '\\') >= 0,
			nameStart: nameStart, nameEnd: nameEnd, nameEsc: nameEsc,
			start: end - off32(int64(len(raw))), end: end, next: off32(int64(len(b.t.nodes) + 1)),
		})
		return nil
	}
}

// off32 narrows an offset or index into the input; buildTape rejects inputs of 2 GiB or more, so every
// offset and node index fits.
func off32(v int64) int32 {
	return int32(v) //nolint:gosec // bounded by the input size check in buildTape
}

// name returns the unescaped member name of node i as bytes (valid until the next call with the same scratch).
func (t *tape) name(i int32, scratch []byte) []byte {
	n := &t.nodes[i]
	if n.nameEnd == 0 {
		return nil
	}
	raw := t.in[n.nameStart:n.nameEnd]
	if !n.nameEsc {
		return raw[1 : len(raw)-1]
	}
	out, err := jsontext.AppendUnquote(scratch[:0], raw)
	if err != nil {
		return nil
	}
	return out
}

// str returns the unescaped content of string node i. Without escapes it aliases the input.
func (t *tape) str(i int32, scratch []byte) []byte {
	n := &t.nodes[i]
	raw := t.in[n.start:n.end]
	if !n.esc {
		return raw[1 : len(raw)-1]
	}
	out, err := jsontext.AppendUnquote(scratch[:0], raw)
	if err != nil {
		return nil
	}
	return out
}

// raw returns the raw JSON bytes of node i.
func (t *tape) raw(i int32) []byte {
	n := &t.nodes[i]
	return t.in[n.start:n.end]
}

// member finds the child of object node i named name, or -1.
func (t *tape) member(i int32, name string) int32 {
	var scratch [64]byte
	for c := i + 1; c < t.nodes[i].next; c = t.nodes[c].next {
		if string(t.name(c, scratch[:0])) == name {
			return c
		}
	}
	return -1
}

// memberStr returns the string value of member name of object i, or "" when absent or not a string.
func (t *tape) memberStr(i int32, name string) string {
	c := t.member(i, name)
	if c < 0 || t.nodes[c].kind != '"' {
		return ""
	}
	return string(t.str(c, nil))
}
