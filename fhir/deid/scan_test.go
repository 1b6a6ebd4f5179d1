package deid

import (
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
			case i < 4 && strings.HasPrefix(filepath.Base(f), family+"_") && !errors.As(err, &re):
				t.Errorf("%s: the name put back (case %d) was not found: %v", filepath.Base(f), i, err)
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
