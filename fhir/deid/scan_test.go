package deid

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sameScan reports whether Scan and the reference scan give the same answer on doc: both pass, both reject the
// input as invalid, or both find the same kind of identifier at the same path.
func sameScan(t *testing.T, s *Scanner, doc []byte) error {
	t.Helper()
	got, want := s.Scan(doc), s.scanReference(doc)
	var gi, wi *InputError
	var gr, wr *ResidualError
	switch {
	case want == nil:
		if got != nil {
			t.Fatalf("Scan: %v, reference passes", got)
		}
	case errors.As(want, &wi):
		if !errors.As(got, &gi) {
			t.Fatalf("Scan: %v, reference: %v", got, want)
		}
	case errors.As(want, &wr):
		if !errors.As(got, &gr) || *gr != *wr {
			t.Fatalf("Scan: %v, reference: %v", got, want)
		}
	default:
		t.Fatalf("reference gave %T", want)
	}
	return got
}

// TestScanMatchesReference: over every shared Synthea patient, Scan gives the reference scan's answer on the raw
// record (identifiers everywhere), on its de-identified output (none), and on outputs with one identifier put back:
// in a plain string, in an escaped string, in base64 attachment data, in a member name, and in the signature
// (exempt).
func TestScanMatchesReference(t *testing.T) {
	files, _ := filepath.Glob("../../testdata/synthea/*.json")
	if len(files) == 0 {
		t.Fatal("no Synthea data")
	}
	opts := Options{Profile: mustProfile(t), Key: testKey("scan"), Scope: "scan", Now: goldenNow}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Deidentify(raw, opts)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(f), err)
		}
		s := res.Scanner
		if sameScan(t, s, raw) == nil {
			t.Errorf("%s: the raw record passed", filepath.Base(f))
		}
		if err := sameScan(t, s, res.Bundle); err != nil {
			t.Errorf("%s: the de-identified record failed: %v", filepath.Base(f), err)
		}
		family := strings.SplitN(filepath.Base(f), "_", 2)[0] // the given name, as the record spells it
		out := string(res.Bundle)
		for i, doc := range []string{
			strings.Replace(out, `"status":"final"`, `"status":"final `+family+`"`, 1),
			strings.Replace(out, `"status":"final"`, `"status":"final \u0020`+family+`\n"`, 1),
			strings.Replace(out, `"status":"final"`, `"status":"final","note":[{"text":"`+family[:1]+`\u00`+hexByte(family[1])+family[2:]+`"}]`, 1),
			strings.Replace(out, `"status":"final"`, `"status":"final","presentedForm":[{"data":"`+base64.StdEncoding.EncodeToString([]byte("seen by "+family))+`"}]`, 1),
			strings.Replace(out, `"status":"final"`, `"status":"final","`+family+`":1`, 1),
			strings.Replace(out, `{"resourceType":"Bundle",`, `{"resourceType":"Bundle","signature":{"data":"`+family+`"},`, 1),
			out[:len(out)/2],
		} {
			err := sameScan(t, s, []byte(doc))
			var re *ResidualError
			var ie *InputError
			switch {
			case i < 5 && strings.HasPrefix(filepath.Base(f), family+"_") && !errors.As(err, &re): // a patient's record
				t.Errorf("%s: the name put back (case %d) was not found: %v", filepath.Base(f), i, err)
			case i == 4 && re != nil && strings.Contains(re.Error(), family):
				t.Errorf("%s: the error quotes the name: %v", filepath.Base(f), err)
			case i == 6 && !errors.As(err, &ie):
				t.Errorf("%s: a truncated document: %v", filepath.Base(f), err)
			}
		}
	}
}

func hexByte(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&15]})
}

// FuzzScanMatchesReference: on any document, Scan answers as the reference scan does, with the identifiers of a
// real patient to find.
func FuzzScanMatchesReference(f *testing.F) {
	raw, err := os.ReadFile("../../testdata/synthea/Loma_Johns_0f30cacb-3348-4baf-8946-cd2175a750b3.json")
	if err != nil {
		f.Fatal(err)
	}
	res, err := Deidentify(raw, Options{Profile: mustProfile(f), Key: testKey("scan"), Scope: "scan", Now: goldenNow})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(res.Bundle[:min(len(res.Bundle), 4000)])
	f.Add([]byte(`{"a":"Johns","b":[1234567,"x\u004a"],"data":"Sm9obnM=","signature":{"data":"Johns"}}`))
	f.Add([]byte(`{"Loma":{"given":"Lo\u006da"}}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		_ = sameScan(t, res.Scanner, doc) // sameScan fails the test itself on any difference
	})
}

// TestScanner: the scan rejects each kind of identifier of a real record wherever it is put back (text, note,
// digits, attachment data, address, patient id), never echoes it in its error, and lets generated values and the
// packet's own signature through.
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
