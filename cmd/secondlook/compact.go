package main

import (
	"bytes"
	"encoding/json"
)

// compact removes insignificant white space so each resource fits on one NDJSON line.
func compact(raw []byte) ([]byte, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
