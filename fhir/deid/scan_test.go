package deid

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"testing"
)

func TestScanner(t *testing.T) {
	raw, err := os.ReadFile("../../testdata/synthea/Todd315_Stamm704_0ce18c7d-fd78-46d9-81b5-8bed231c337a.json")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Deidentify(raw, Options{Key: Key{ID: "k", Secret: bytes.Repeat([]byte("k"), 32)}, Scope: "r"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewScanner([][]byte{raw}, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Scan(res.Bundle); err != nil {
		t.Fatalf("de-identified output rejected: %v", err)
	}
	leaks := map[string]string{
		"name in narrative":   `{"resourceType":"Composition","section":[{"text":{"div":"<div>Seen by Todd315 Stamm704</div>"}}]}`,
		"phone in note":       `{"note":[{"text":"call 555-788-5466"}]}`,
		"SSN as digits":       `{"valueString":"999 35 5722"}`,
		"name in attachment":  `{"presentedForm":[{"contentType":"text/plain","data":"` + base64.StdEncoding.EncodeToString([]byte("Patient Stamm704 seen")) + `"}]}`,
		"address":             `{"x":"262 Raynor Mall Unit 36"}`,
		"patient id as value": `{"x":"0ce18c7d-fd78-46d9-81b5-8bed231c337aX"}`,
	}
	for name, doc := range leaks {
		err := s.Scan([]byte(doc))
		var re *ResidualError
		if !errors.As(err, &re) {
			t.Errorf("%s: not rejected (%v)", name, err)
			continue
		}
		for _, v := range []string{"Todd315", "Stamm704", "555-788", "Raynor"} {
			if strings.Contains(err.Error(), v) {
				t.Errorf("%s: error carries the identifier: %v", name, err)
			}
		}
	}
	// Generated values and the packet's signature are exempt.
	for _, doc := range []string{
		`{"id":"6f1c1a52-3a6e-4c43-9d1a-7d0a3f3b2c11","ref":"urn:uuid:6f1c1a52-3a6e-4c43-9d1a-7d0a3f3b2c11","uid":"2.25.12345678901234567890"}`,
		`{"signature":{"data":"` + base64.StdEncoding.EncodeToString([]byte("Stamm704")) + `"}}`,
	} {
		if err := s.Scan([]byte(doc)); err != nil {
			t.Errorf("%s rejected: %v", doc, err)
		}
	}
}
