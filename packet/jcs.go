package packet

import (
	"bytes"
	"fmt"

	"github.com/go-json-experiment/json/jsontext"
)

// canonicalize writes v in the JSON Canonicalization Scheme (RFC 8785): no insignificant white space, object
// members sorted by their UTF-16 code units, numbers in their shortest round-trip (ECMAScript) form, strings with
// minimal escaping. It is the signature input, so producer and verifier reach the same bytes from any
// serialization of the same JSON.
func canonicalize(data []byte) ([]byte, error) {
	v := jsontext.Value(bytes.Clone(data))
	if err := v.Canonicalize(); err != nil {
		return nil, fmt.Errorf("canonicalize: %w", err)
	}
	return v, nil
}
