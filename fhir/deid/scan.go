package deid

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/go-json-experiment/json/jsontext"
)

// Scanner is the residual scan on its own: it knows every identifying string collected from a set of raw inputs
// and rejects any output that contains one. The gateway runs it over a finished packet, whose narrative and merged
// content were written after Deidentify's own scan, so that nothing leaves that the inputs could identify.
type Scanner struct {
	matchers []*matcher
}

// NewScanner collects the identifying strings of each raw input (any Bundle or resource Deidentify accepts).
func NewScanner(inputs [][]byte, limits Limits) (*Scanner, error) {
	prof, err := LoadProfile(DefaultProfile)
	if err != nil {
		return nil, err
	}
	lim := limits.withDefaults()
	s := &Scanner{}
	for _, in := range inputs {
		tp, err := buildTape(in, lim)
		if err != nil {
			return nil, err
		}
		ix, err := indexInput(tp, prof, lim)
		if err != nil {
			return nil, err
		}
		s.matchers = append(s.matchers, ix.buildMatcher())
	}
	return s, nil
}

// Scan walks every string and long number of a JSON document (base64 attachment data decoded first) and returns a
// *ResidualError naming the path and the kind of identifier at the first hit. Values the gateway generates from
// keys (UUID pseudonyms, 2.25 UIDs) and the packet's own signature are exempt, as in Deidentify. Member names are
// matched too, and a hit in one is reported at its parent's path, so the error never quotes it.
//
// It reads values in place: a string without escapes is matched in the decoder's own buffer, and member names are
// kept (and matched) once each, so a packet is scanned without a copy of every string in it.
func (s *Scanner) Scan(doc []byte) error {
	dec := jsontext.NewDecoder(bytes.NewReader(doc))
	var names []string // the member name at each depth ("" inside arrays)
	known := map[string]string{}
	var unq, decoded []byte // reused: unescaped strings, decoded attachment data
	for {
		kind := dec.PeekKind()
		var raw jsontext.Value
		if kind == '"' || kind == '0' {
			v, err := dec.ReadValue()
			if err != nil {
				return &InputError{Reason: "document is not valid JSON", Offset: dec.InputOffset()}
			}
			raw = v
		} else if _, err := dec.ReadToken(); err == io.EOF {
			return nil
		} else if err != nil {
			return &InputError{Reason: "document is not valid JSON", Offset: dec.InputOffset()}
		}
		depth := dec.StackDepth()
		// Keep names aligned with the stack: a name token at object depth d sets names[d].
		if len(names) > depth+1 {
			names = names[:depth+1]
		}
		for len(names) <= depth {
			names = append(names, "")
		}
		var text []byte
		switch kind {
		case '"':
			text = raw[1 : len(raw)-1]
			if bytes.IndexByte(text, '\\') >= 0 {
				var err error
				if unq, err = jsontext.AppendUnquote(unq[:0], raw); err != nil {
					return &InputError{Reason: "document is not valid JSON", Offset: dec.InputOffset()}
				}
				text = unq
			}
			if isObjectName(dec) {
				name, ok := known[string(text)]
				if !ok {
					// A member name is output too: it is matched like a value (once: a name kept is clean), and
					// a hit names the path of its parent, so the error never quotes it.
					for _, m := range s.matchers {
						if k := m.residual(text); k != phiNone {
							return &ResidualError{Path: pathOf(names[:depth]), Kind: k.String()}
						}
					}
					name = string(text)
					if len(known) < maxKnownNames {
						known[name] = name
					}
				}
				names[depth] = name
				continue
			}
		case '0':
			text = raw
			if len(text) < 7 {
				continue
			}
		default:
			continue
		}
		if len(names) > 1 && names[1] == "signature" {
			continue
		}
		if generated(text) {
			continue
		}
		if names[depth] == "data" {
			decoded = slices.Grow(decoded[:0], base64.StdEncoding.DecodedLen(len(text)))[:base64.StdEncoding.DecodedLen(len(text))]
			if n, err := base64.StdEncoding.Decode(decoded, text); err == nil {
				text = decoded[:n]
			}
		}
		for _, m := range s.matchers {
			if k := m.residual(text); k != phiNone {
				return &ResidualError{Path: pathOf(names), Kind: k.String()}
			}
		}
	}
}

// maxKnownNames bounds the member names Scan keeps for reuse; past it, further names are copied each time.
const maxKnownNames = 4096

// isObjectName reports whether the token just read was an object member name.
func isObjectName(dec *jsontext.Decoder) bool {
	kind, length := dec.StackIndex(dec.StackDepth())
	return kind == '{' && length%2 == 1
}

func pathOf(names []string) string {
	var b bytes.Buffer
	for _, n := range names {
		if n == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(n)
	}
	return b.String()
}

// generated reports values derived from keys rather than from input: pseudonymous UUIDs (bare or urn:uuid:) and
// 2.25 UIDs.
func generated(s []byte) bool {
	s = bytes.TrimPrefix(s, []byte("urn:uuid:"))
	if len(s) == 36 && isUUID(string(s)) {
		return true
	}
	if rest, ok := bytes.CutPrefix(s, []byte("2.25.")); ok && len(rest) > 0 {
		if _, err := strconv.ParseUint(string(rest[:min(len(rest), 19)]), 10, 64); err == nil && allDigits(string(rest)) {
			return true
		}
	}
	return false
}

// Scan is the one-call form: collect from inputs, scan doc.
func Scan(inputs [][]byte, doc []byte) error {
	s, err := NewScanner(inputs, Limits{})
	if err != nil {
		return fmt.Errorf("residual scan: %w", err)
	}
	return s.Scan(doc)
}
