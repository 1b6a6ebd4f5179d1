package deid

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// Error messages are built from a fixed vocabulary: reasons, limits, offsets, element paths, kinds. These
// shapes are what the fuzz targets accept; anything else could be echoing input.
var (
	inputErrShape    = regexp.MustCompile(`^invalid input: [a-zA-Z0-9 ,.()-]+$`)
	residualErrShape = regexp.MustCompile(`^de-identification rejected: residual [a-z-]+ found at [A-Za-z0-9.\[\]()]+$`)
	profileErrShape  = regexp.MustCompile(`^invalid de-identification profile: `)
)

func FuzzDeidentify(f *testing.F) {
	for _, p := range []string{"testdata/adversarial/bc-diagnosticreport.json", "testdata/adversarial/us-restricted-zip-patient.json",
		"testdata/microsoft-anonymizer/contained-in-bundle.json", "testdata/hl7-r4-examples/ImagingStudy-example.json"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add(bundleOf(caPatient, `{"resourceType":"Observation","id":"o","status":"final","code":{"text":"Lafleur 819-555-0163"},"subject":{"reference":"Patient/pat-0048291"}}`))
	f.Add([]byte(`{"resourceType":"Patient","_birthDate":[null,{"extension":[{"url":"x"}]}],"birthDate":"1920"}`))
	opts := Options{Profile: mustProfile(f), Key: testKey("fuzz"), Scope: "fuzz", Now: goldenNow}
	f.Fuzz(func(t *testing.T, in []byte) {
		res, err := Deidentify(in, opts)
		if err != nil {
			var ie *InputError
			var re *ResidualError
			switch {
			case errors.As(err, &ie):
				if !inputErrShape.MatchString(err.Error()) {
					t.Fatalf("input error has an unexpected shape: %q", err)
				}
			case errors.As(err, &re):
				if !residualErrShape.MatchString(err.Error()) {
					t.Fatalf("residual error has an unexpected shape: %q", err)
				}
			case errors.Is(err, ErrInternal):
				t.Fatalf("internal error (a recovered panic)")
			default:
				t.Fatalf("unexpected error type %T", err)
			}
			return
		}
		if !jsontext.Value(res.Bundle).IsValid() {
			t.Fatal("output is not valid JSON")
		}
		again, err := Deidentify(in, opts)
		if err != nil || string(again.Bundle) != string(res.Bundle) {
			t.Fatal("not deterministic")
		}
	})
}

func FuzzParseProfile(f *testing.F) {
	if b, err := embeddedProfiles.ReadFile("profiles/safe-harbor.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("profile: x\nversion: 1\nresources:\n  ImagingStudy:\n    series.instance.uid: uid\n    identifier: uid\n"))
	f.Add([]byte(`{"profile":"j","version":"1","extensions":["http://x"],"resources":{"Patient":{"deceased[x]":"generalize"}}}`))
	f.Add([]byte("profile: x\nversion: 1\nresources: {Observation: {component.code.coding: keep}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseProfile(data)
		if err != nil {
			var pe *ProfileError
			if !errors.As(err, &pe) || !profileErrShape.MatchString(err.Error()) {
				t.Fatalf("unexpected error %T %q", err, err)
			}
			return
		}
		// A valid profile must drive the transformer without panicking.
		_, _ = Deidentify([]byte(`{"resourceType":"Patient","id":"p","gender":"male"}`), Options{Profile: p, Key: testKey("f")})
	})
}

// FuzzScrub drives the free-text scrubber directly: no panic, valid UTF-8 in gives valid UTF-8 out, and the
// planted identifiers never survive in their plain forms.
func FuzzScrub(f *testing.F) {
	for _, s := range []string{
		"Todd315 Stamm704 seen 2010-04-27 at 12040 NE 128TH STREET, call 555-123-4567",
		"HCN 1234 567 890 AB, RAMQ ABCD 1234 5678, K1S 5B6, 04/27/10, 27-Apr-2010, Dr Lavoie, 93 year-old",
		"Émilie Tremblay-Gagnon <emilie@example.ca> https://x.example/a 10.0.0.1 1.2.124.113532.9.55.1",
	} {
		f.Add(s)
	}
	m := newMatcher()
	for _, w := range []string{"todd315", "stamm704", "emilie", "tremblay"} {
		addNameWord(m, w)
	}
	m.add(normalize("999-12-3456"), phiID, true, true)
	m.add(normalize("555-123-4567"), phiPhone, true, true)
	m.link()
	f.Fuzz(func(t *testing.T, in string) {
		sc := scrubber{m: m, shift: 17, nowYear: 2026, uid: func(string) string { return "2.25.1" },
			birth: &fhirDate{y: 1931, m: 2, d: 3, prec: precDay}}
		out, _ := sc.scrub([]byte(in))
		if utf8.ValidString(in) && !utf8.Valid(out) {
			t.Fatalf("invalid UTF-8 out of valid input")
		}
		lo := strings.ToLower(string(out))
		for _, p := range []string{"999-12-3456", "555-123-4567", "todd315", "stamm704"} {
			if strings.Contains(lo, p) && !strings.Contains(strings.ToLower(in), "x"+p) {
				// A planted value surviving in full is a scrubber bug unless glued to a longer word.
				if m.residual(out) == phiNone {
					t.Fatalf("%q survives and the residual scan misses it", p)
				}
			}
		}
	})
}

// FuzzDeidentifyText puts fuzzed free text in every kind of text element of a valid bundle (notes, conclusion,
// valueString, a text/plain attachment, an extension value, a name) so the whole pipeline sees it.
func FuzzDeidentifyText(f *testing.F) {
	for _, s := range []string{"Lafleur 819-555-0163 seen 2024-01-15", "value 10 ", "Dr Lavoie; son Luc; 93 yo; K1S5B6", "\u00c9milie 1.2.124.1.2.3.4"} {
		f.Add(s)
	}
	opts := Options{Profile: mustProfile(f), Key: testKey("fuzz"), Scope: "fuzz", Now: goldenNow}
	f.Fuzz(func(t *testing.T, text string) {
		q, err := jsontext.AppendQuote(nil, text)
		if err != nil {
			return // not valid UTF-8: the tokenizer rejects it, covered by FuzzDeidentify
		}
		qs := string(q)
		in := bundleOf(caPatient,
			`{"resourceType":"Observation","id":"o","status":"final","code":{"text":`+qs+`},"subject":{"reference":"Patient/pat-0048291"},"valueString":`+qs+`,"note":[{"text":`+qs+`}]}`,
			`{"resourceType":"DiagnosticReport","id":"d","status":"final","code":{"text":"x"},"conclusion":`+qs+`,"presentedForm":[{"contentType":"text/plain","data":"`+b64(text)+`"}]}`,
			`{"resourceType":"RelatedPerson","id":"r","name":[{"family":`+qs+`}]}`)
		res, err := Deidentify(in, opts)
		if err != nil {
			var re *ResidualError
			if !errors.As(err, &re) || !residualErrShape.MatchString(err.Error()) {
				t.Fatalf("unexpected error %T %q", err, err)
			}
			return
		}
		if !jsontext.Value(res.Bundle).IsValid() {
			t.Fatal("output is not valid JSON")
		}
		for _, phi := range []string{"Lafleur", "819-555-0163", "9876543217", "G3C 1R6"} {
			if strings.Contains(string(res.Bundle), phi) {
				t.Fatalf("output contains %q", phi)
			}
		}
	})
}
