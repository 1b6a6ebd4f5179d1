package deid

import (
	"bytes"
	"encoding/base64"
	"io"

	"github.com/go-json-experiment/json/jsontext"
)

// scanReference is Scan as it was before it read values in place (with member names matched, as Scan now does):
// the reference the differential test holds Scan to. It walks every string and long number of a JSON document (base64 attachment data decoded first) and returns a
// *ResidualError naming the path and the kind of identifier at the first hit. Values the gateway generates from
// keys (UUID pseudonyms, 2.25 UIDs) and the packet's own signature are exempt, as in Deidentify.
func (s *Scanner) scanReference(doc []byte) error {
	dec := jsontext.NewDecoder(bytes.NewReader(doc))
	var names []string // the member name at each depth ("" inside arrays)
	for {
		tok, err := dec.ReadToken()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return &InputError{Reason: "document is not valid JSON", Offset: dec.InputOffset()}
		}
		depth := dec.StackDepth()
		kind := tok.Kind()
		// Keep names aligned with the stack: a name token at object depth d sets names[d].
		if len(names) > depth+1 {
			names = names[:depth+1]
		}
		for len(names) <= depth {
			names = append(names, "")
		}
		if kind == '"' && isObjectName(dec) {
			for _, m := range s.matchers { // a member name is output too
				if k := m.residual([]byte(tok.String())); k != phiNone {
					return &ResidualError{Path: pathOf(names[:depth]), Kind: k.String()}
				}
			}
			names[depth] = tok.String()
			continue
		}
		if len(names) > 1 && names[1] == "signature" {
			continue
		}
		var text []byte
		switch kind {
		case '"':
			text = []byte(tok.String())
		case '0':
			text = []byte(tok.String())
			if len(text) < 7 {
				continue
			}
		default:
			continue
		}
		if generated(text) {
			continue
		}
		if names[depth] == "data" {
			if dec, err := base64.StdEncoding.DecodeString(string(text)); err == nil {
				text = dec
			}
		}
		for _, m := range s.matchers {
			if k := m.residual(text); k != phiNone {
				return &ResidualError{Path: pathOf(names), Kind: k.String()}
			}
		}
	}
}
