// Package fhirjson holds the small readings of FHIR JSON that both the retrieval client (fhir) and the packet
// builder (packet) make, so that neither depends on the other.
package fhirjson

import (
	"bytes"
	"errors"

	"github.com/go-json-experiment/json/jsontext"
)

// ErrNotResource reports a value that is not a JSON object with string resourceType and id where present.
var ErrNotResource = errors.New("not a FHIR resource object")

// Head reads a resource's resourceType and id from its top-level members, stopping once both are found: servers
// and the de-identifier write them first, so usually only the first few tokens of a large resource are read. A
// missing member is returned empty; one that is not a string is an error.
func Head(raw []byte) (resourceType, id string, err error) {
	dec := jsontext.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return "", "", ErrNotResource
	}
	var gotType, gotID bool
	for dec.PeekKind() == '"' && !(gotType && gotID) {
		name, err := dec.ReadToken()
		if err != nil {
			return "", "", ErrNotResource
		}
		switch n := name.String(); n {
		case "resourceType", "id":
			tok, err := dec.ReadToken()
			if err != nil || tok.Kind() != '"' {
				return "", "", ErrNotResource
			}
			if n == "id" {
				id, gotID = tok.String(), true
			} else {
				resourceType, gotType = tok.String(), true
			}
		default:
			if err := dec.SkipValue(); err != nil {
				return "", "", ErrNotResource
			}
		}
	}
	return resourceType, id, nil
}
