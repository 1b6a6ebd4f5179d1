package deid

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// bundleOf wraps resources (JSON objects) in a searchset Bundle with absolute fullUrls.
func bundleOf(resources ...string) []byte {
	var b strings.Builder
	b.WriteString(`{"resourceType":"Bundle","type":"searchset","entry":[`)
	for i, r := range resources {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"fullUrl":"https://fhir.hopital-test.qc.ca/fhir/entry/%d","resource":%s}`, i, r)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// caPatient is a Canadian patient whose identifiers the cases below plant elsewhere.
const caPatient = `{"resourceType":"Patient","id":"pat-0048291",
 "identifier":[{"system":"https://fhir.infoway-inforoute.ca/NamingSystem/ca-on-patient-hcn","value":"9876543217"},
   {"system":"https://hopital-test.qc.ca/mrn","value":"MRN-0048291"},
   {"system":"http://hl7.org/fhir/sid/ca-sin","value":"046 454 286"}],
 "name":[{"family":"Lafleur","given":["Océane","Béatrice"]}],
 "telecom":[{"system":"phone","value":"819-555-0163"},{"system":"email","value":"oceane.lafleur@courriel.example"}],
 "gender":"female","birthDate":"1988-07-14",
 "address":[{"line":["77 chemin du Lac-Beauport"],"city":"Stoneham","district":"La Jacques-Cartier","state":"QC","postalCode":"G3C 1R6","country":"CA"}],
 "contact":[{"name":{"family":"Lafleur","given":["Gaston"]},"telecom":[{"system":"phone","value":"418 555 0134"}],
   "address":{"line":["9 rue des Érables"],"city":"Lac-Delage","postalCode":"G3C5K2"}}]}`

func TestSafeHarborRows(t *testing.T) {
	ref := `"subject":{"reference":"Patient/pat-0048291"}`
	cases := []struct {
		name      string
		resources []string
		forbidden []string // must not appear anywhere in the output (case-insensitive, attachments decoded)
		required  []string // must appear
	}{{
		name: "names",
		resources: []string{caPatient,
			`{"resourceType":"RelatedPerson","id":"rp1","patient":{"reference":"Patient/pat-0048291"},"name":[{"family":"Pelletier","given":["Maxime"]}]}`,
			`{"resourceType":"Practitioner","id":"dr1","name":[{"family":"Nakamura-Ouellet","given":["Hiro"]}]}`,
			`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"Note from Béatrice"},` + ref + `,
			  "performer":[{"reference":"Practitioner/dr1","display":"Dr Hiro Nakamura-Ouellet"},{"display":"Inf. Sandrine Côté-Roy"}],
			  "note":[{"authorString":"Maxime Pelletier","text":"Océane's partner Maxime Pelletier and her father GASTON LAFLEUR came. Dr. Nakamura-Ouellet and Sandrine Côté-Roy agree."}],
			  "valueString":"Oceane Lafleur tolerated the procedure"}`,
			`{"resourceType":"DiagnosticReport","id":"d1","status":"final","code":{"text":"CT"},` + ref + `,"conclusion":"Mme Lafleur (Océane) informed by Dr Nakamura-Ouellet.","text":{"status":"generated","div":"<div>Océane Lafleur</div>"}}`,
		},
		forbidden: []string{"Lafleur", "Océane", "Oceane", "Béatrice", "Gaston", "Pelletier", "Maxime", "Nakamura", "Ouellet", "Sandrine", "Côté-Roy"},
		required:  []string{"tolerated the procedure", "[NAME]", `"final"`},
	}, {
		name: "geography",
		resources: []string{caPatient,
			`{"resourceType":"Organization","id":"org1","name":"Hôpital de Stoneham","address":[{"line":["1 boul. Talbot"],"city":"Stoneham","postalCode":"G3C 0A1"}]}`,
			`{"resourceType":"Location","id":"loc1","name":"Clinique Lac-Beauport","position":{"latitude":46.95,"longitude":-71.38}}`,
			`{"resourceType":"ImagingStudy","id":"is1","status":"available",` + ref + `,"location":{"reference":"Location/loc1","display":"Clinique Lac-Beauport"},"description":"CT at Clinique Lac-Beauport"}`,
			`{"resourceType":"Condition","id":"c1",` + ref + `,"code":{"text":"Asthma"},"note":[{"text":"Lives at 77 chemin du Lac-Beauport, Stoneham G3C1R6; previously g3c 1r6 and G3C-1R6; cottage in La Jacques-Cartier."}]}`,
		},
		forbidden: []string{"chemin du Lac", "Stoneham", "Jacques-Cartier", "G3C 1R6", "G3C1R6", "g3c 1r6", "G3C-1R6", "1R6", "Lac-Delage", "5K2", "Beauport", "46.95", "71.38", "Talbot"},
		required:  []string{`"postalCode":"G3C"`, `"state":"QC"`, `"country":"CA"`, "Asthma"},
	}, {
		name: "dates and ages over 89",
		resources: []string{`{"resourceType":"Patient","id":"p95","birthDate":"1931-02-03","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1931-02-03T05:06:00-05:00"}]},"deceasedDateTime":"2026-09-30"}`,
			`{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p95"},"code":{"text":"Hip fracture"},"onsetAge":{"value":94,"unit":"a","system":"http://unitsofmeasure.org","code":"a"},
			  "recordedDate":"2025-03-04","note":[{"text":"95 year-old, born 1931-02-03 (3 February 1931), aged 95. Seen 2025-03-04."}]}`,
		},
		forbidden: []string{"1931-02-03", "1931", "February 1931", "2026-09-30", "95 year", "aged 95", `"value":94`, "2025-03-04", "05:06:00"},
		required:  []string{AgeCategoryExtension, `"deceasedBoolean":true`, `"comparator":">="`, `"value":90`, "90+ year-old", "Hip fracture"},
	}, {
		name: "phone fax email",
		resources: []string{caPatient,
			`{"resourceType":"Practitioner","id":"dr1","telecom":[{"system":"fax","value":"(418) 555-0999"},{"system":"email","value":"dr.x@clinique.example"}]}`,
			`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"Callback"},` + ref + `,"valueString":"Call 819 555 0163 or +1-418-555-0134, fax 418.555.0999, mail oceane.lafleur@courriel.example or dr.x@clinique.example"}`,
		},
		forbidden: []string{"555-0163", "555 0163", "5550163", "555-0134", "0999", "courriel.example", "dr.x@", "clinique.example"},
		required:  []string{"[PHONE]", "[EMAIL]", "Callback"},
	}, {
		name: "health card SIN SSN MRN plan account licence",
		resources: []string{caPatient,
			`{"resourceType":"Coverage","id":"cov1","status":"active","subscriberId":"RAMQ LAFO 8807 1412","beneficiary":{"reference":"Patient/pat-0048291"},"payor":[{"display":"RAMQ"}]}`,
			`{"resourceType":"Account","id":"acc1","status":"active","identifier":[{"value":"ACCT-7731-22"}]}`,
			`{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},"identifier":[{"value":"VIS-2024-55871"}],` + ref + `}`,
			`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"Admin"},` + ref + `,
			  "note":[{"text":"OHIP 9876 543 217 XY; also 9876-543-217; RAMQ LAFO 8807 1412 / LAFO88071412; BC PHN 9123 456 789; SIN 046 454 286; SSN 219-09-9999; MRN 0048291; account ACCT-7731-22; visit VIS-2024-55871; permis L1234-567890-12."}]}`,
		},
		forbidden: []string{"9876543217", "9876 543 217", "9876-543-217", "543 217", "LAFO", "8807", "9123 456 789", "046 454 286", "454 286", "219-09-9999", "0048291", "7731", "55871", "567890"},
		required:  []string{"[ID]", "Admin"},
	}, {
		name: "device identifiers",
		resources: []string{caPatient,
			`{"resourceType":"Device","id":"dev1","serialNumber":"SN-99-887766","udiCarrier":[{"deviceIdentifier":"00844588003288","carrierHRF":"(01)00844588003288(17)141120(10)7654321D(21)10987654d321"}],"patient":{"reference":"Patient/pat-0048291"}}`,
			`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"Pacemaker check"},` + ref + `,"device":{"reference":"Device/dev1","display":"Pacemaker SN-99-887766"},"note":[{"text":"Device SN-99-887766, UDI 00844588003288."}]}`,
		},
		forbidden: []string{"887766", "00844588003288", "7654321"},
		required:  []string{"Pacemaker check"},
	}, {
		name: "urls and ip addresses",
		resources: []string{caPatient,
			`{"resourceType":"Endpoint","id":"ep1","status":"active","connectionType":{"code":"dicom-wado-rs"},"payloadType":[{"text":"x"}],"address":"https://pacs.hopital-test.qc.ca/wado"}`,
			`{"resourceType":"ImagingStudy","id":"is1","status":"available",` + ref + `,"endpoint":[{"reference":"Endpoint/ep1"}],"meta":{"source":"https://fhir.hopital-test.qc.ca/fhir"}}`,
			`{"resourceType":"DocumentReference","id":"dr1","status":"current",` + ref + `,"content":[{"attachment":{"contentType":"text/plain","url":"https://fhir.hopital-test.qc.ca/Binary/1","data":"` + b64("See https://portail.hopital-test.qc.ca/dossier/4471 and www.hopital-test.qc.ca, host 192.168.40.12.") + `"}}]}`,
			`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"https://fhir.hopital-test.qc.ca/fhir/Patient/pat-0048291"},"hasMember":[{"reference":"https://other.example.org/fhir/Observation/9"}]}`,
		},
		forbidden: []string{"hopital-test", "192.168.40.12", "other.example.org", "wado", "Binary/1"},
		required:  []string{"[URL]", "[IP]"},
	}, {
		name: "photos and image attachments",
		resources: []string{`{"resourceType":"Patient","id":"p1","photo":[{"contentType":"image/jpeg","data":"` + b64("JPEGFACEPHOTO") + `"}]}`,
			`{"resourceType":"DocumentReference","id":"d1","status":"current","subject":{"reference":"Patient/p1"},"content":[{"attachment":{"contentType":"image/png","data":"` + b64("PNGFACE") + `"}},{"attachment":{"contentType":"application/pdf","data":"` + b64("%PDF face") + `"}}]}`,
			`{"resourceType":"Media","id":"m1","status":"completed","subject":{"reference":"Patient/p1"},"content":{"contentType":"image/jpeg","data":"` + b64("JPEG2") + `"}}`,
		},
		forbidden: []string{b64("JPEGFACEPHOTO"), b64("PNGFACE"), b64("%PDF face"), b64("JPEG2"), "image/png", "image/jpeg"},
		required:  []string{`"DocumentReference"`},
	}, {
		name: "other unique numbers: accession, UIDs, MRN-derived ids",
		resources: []string{`{"resourceType":"Patient","id":"0048291"}`,
			`{"resourceType":"ImagingStudy","id":"is-0048291-1","status":"available","subject":{"reference":"Patient/0048291"},
			  "identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.124.113532.9.55.1"},{"type":{"coding":[{"code":"ACSN"}]},"value":"ACC88213"}],
			  "series":[{"uid":"1.2.124.113532.9.55.1.2","modality":{"code":"MR"},"instance":[{"uid":"1.2.124.113532.9.55.1.2.3","sopClass":{"code":"1.2.840.10008.5.1.4.1.1.4"}}]}],
			  "description":"Accession ACC88213, study 1.2.124.113532.9.55.1"}`,
			`{"resourceType":"DiagnosticReport","id":"dr1","status":"final","code":{"text":"MR"},"subject":{"reference":"Patient/0048291"},"imagingStudy":[{"reference":"ImagingStudy/is-0048291-1"}],"identifier":[{"value":"ACC88213"}]}`,
		},
		forbidden: []string{"0048291", "ACC88213", "1.2.124.113532", "113532"},
		required:  []string{`"uid":"2.25.`, `"value":"urn:oid:2.25.`, "1.2.840.10008.5.1.4.1.1.4"},
	}, {
		name: "free text everywhere, contained and nested extensions",
		resources: []string{caPatient,
			`{"resourceType":"DiagnosticReport","id":"d1","status":"final",` + ref + `,
			  "contained":[{"resourceType":"Observation","id":"x1","status":"final","code":{"text":"Océane Lafleur weight"},"valueQuantity":{"value":61,"unit":"kg"},"subject":{"reference":"Patient/pat-0048291"}},
			               {"resourceType":"Practitioner","id":"x2","name":[{"family":"Dubuc"}]}],
			  "code":{"coding":[{"system":"http://loinc.org","code":"11502-2"}],"text":"Labs for Lafleur"},
			  "result":[{"reference":"#x1"}],"performer":[{"reference":"#x2"}],
			  "extension":[{"url":"http://example.org/outer","extension":[{"url":"inner","extension":[{"url":"innermost","valueString":"Gaston Lafleur 418 555 0134"}]}]}],
			  "conclusion":"Béatrice Lafleur: normal.","presentedForm":[{"contentType":"text/plain","data":"` + b64("Océane Lafleur, HCN 9876 543 217, G3C 1R6, 819-555-0163, seen 2024-01-15 by Dr Dubuc.") + `"}]}`,
		},
		forbidden: []string{"Lafleur", "Océane", "Béatrice", "Gaston", "Dubuc", "9876 543 217", "G3C 1R6", "555-0163", "2024-01-15", "outer", "innermost"},
		required:  []string{`"contained"`, `"reference":"#c1"`, `"reference":"#c2"`, "weight", "normal.", "11502-2"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Deidentify(bundleOf(tc.resources...), Options{Key: testKey("adv"), Scope: "r", Now: goldenNow})
			if err != nil {
				assertNoPHIInError(t, err, tc.forbidden)
				t.Fatalf("Deidentify: %v", err)
			}
			text := outputText(t, res.Bundle)
			lower := strings.ToLower(text)
			for _, f := range tc.forbidden {
				if strings.Contains(lower, strings.ToLower(f)) {
					t.Errorf("output contains %q", f)
				}
			}
			for _, r := range tc.required {
				if !strings.Contains(text, r) {
					t.Errorf("output lacks %q", r)
				}
			}
			checkReferences(t, decodeJSON(t, res.Bundle), fullURLsOf(t, res.Bundle))
			rep := fmt.Sprintf("%+v", res.Report)
			for _, f := range tc.forbidden {
				if strings.Contains(strings.ToLower(rep), strings.ToLower(f)) {
					t.Errorf("report contains %q", f)
				}
			}
		})
	}
}

func fullURLsOf(t *testing.T, b []byte) map[string]bool {
	m := map[string]bool{}
	for _, e := range asList(decodeJSON(t, b)["entry"]) {
		m[str(e.(jsonObj)["fullUrl"])] = true
	}
	return m
}

func assertNoPHIInError(t *testing.T, err error, phi []string) {
	t.Helper()
	for _, p := range phi {
		if strings.Contains(strings.ToLower(err.Error()), strings.ToLower(p)) {
			t.Errorf("error message contains PHI %q", p)
		}
	}
}

// TestResidualRejects plants identifiers where the transformer keeps strings verbatim (codes), so only the
// residual scan can stop them: the whole output must be rejected with a path and a kind, never the value.
func TestResidualRejects(t *testing.T) {
	cases := map[string]struct {
		res  string
		kind string // the first kind found; an email also holds name words
	}{
		"health card in a code": {`{"resourceType":"Observation","id":"o","status":"final","code":{"coding":[{"system":"http://x","code":"9876543217"}]}}`, "identifier"},
		"phone in a code":       {`{"resourceType":"Observation","id":"o","status":"final","code":{"coding":[{"system":"http://x","code":"819-555-0163"}]}}`, "phone"},
		"name in a system":      {`{"resourceType":"Observation","id":"o","status":"final","code":{"coding":[{"system":"http://lafleur.example/x","code":"a"}]}}`, "name"},
		"mrn as a number":       {`{"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"},"valueInteger":9876543217}`, "identifier"},
		"email in a unit code":  {`{"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"},"valueQuantity":{"value":1,"code":"oceane.lafleur@courriel.example"}}`, "name"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			res, err := Deidentify(bundleOf(caPatient, tc.res), Options{Key: testKey("adv"), Scope: "r"})
			var re *ResidualError
			if !errors.As(err, &re) {
				t.Fatalf("got %v (%T), want *ResidualError", err, err)
			}
			if res != nil {
				t.Error("output returned despite rejection")
			}
			if re.Kind != tc.kind || !strings.HasPrefix(re.Path, "Bundle.entry[1].resource.Observation.") {
				t.Errorf("got kind %q path %q, want kind %q", re.Kind, re.Path, tc.kind)
			}
			assertNoPHIInError(t, err, []string{"9876543217", "819-555-0163", "lafleur", "courriel"})
		})
	}
}

// TestInputLimits covers invalid UTF-8, deep nesting, very long strings and the other limits: each gives an
// *InputError that names the problem and no content.
func TestInputLimits(t *testing.T) {
	secret := "Lafleur-9876543217"
	deep := strings.Repeat(`{"extension":[`, 200) + strings.Repeat(`]}`, 200)
	cases := map[string]struct {
		in   string
		lim  Limits
		want string
	}{
		"invalid UTF-8":          {`{"resourceType":"Patient","name":[{"family":"` + secret + "\xff\xfe" + `"}]}`, Limits{}, "invalid UTF-8"},
		"invalid UTF-8 in name":  {`{"resourceType":"Patient","` + "\xc3\x28" + `":1}`, Limits{}, "invalid UTF-8"},
		"deep nesting":           {`{"resourceType":"Patient","extension":[` + deep + `]}`, Limits{}, "nesting deeper"},
		"very long string":       {`{"resourceType":"Patient","id":"` + strings.Repeat("A", 2000) + secret + `"}`, Limits{MaxStringBytes: 1000}, "string longer"},
		"input too large":        {`{"resourceType":"Patient","id":"` + secret + `"}`, Limits{MaxInputBytes: 10}, "larger than the limit"},
		"too many entries":       {string(bundleOf(`{"resourceType":"Basic"}`, `{"resourceType":"Basic"}`, `{"resourceType":"Basic"}`)), Limits{MaxEntries: 2}, "Bundle entries"},
		"truncated":              {`{"resourceType":"Patient","id":"` + secret, Limits{}, "JSON"},
		"not an object":          {`["` + secret + `"]`, Limits{}, "not a JSON object"},
		"no resourceType":        {`{"id":"` + secret + `"}`, Limits{}, "no resourceType"},
		"duplicate member":       {`{"resourceType":"Patient","id":"a","id":"` + secret + `"}`, Limits{}, "duplicate"},
		"trailing data":          {`{"resourceType":"Patient"} {"id":"` + secret + `"}`, Limits{}, "after the top-level"},
		"entry resource not obj": {`{"resourceType":"Bundle","entry":[{"resource":"` + secret + `"}]}`, Limits{}, "not an object"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Deidentify([]byte(tc.in), Options{Key: testKey("x"), Limits: tc.lim})
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("got %v (%T), want *InputError", err, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			assertNoPHIInError(t, err, []string{secret, "Lafleur", "AAAAAAAA"})
		})
	}
	t.Run("short key", func(t *testing.T) {
		_, err := Deidentify([]byte(`{"resourceType":"Patient"}`), Options{Key: Key{ID: "k", Secret: []byte("short")}})
		var ie *InputError
		if !errors.As(err, &ie) || !errors.Is(err, ErrKey) {
			t.Fatalf("got %v, want *InputError wrapping ErrKey", err)
		}
	})
	t.Run("deep but allowed", func(t *testing.T) {
		in := `{"resourceType":"Patient","id":"p","extension":[` + strings.Repeat(`{"url":"u","extension":[`, 20) + `{"url":"v","valueString":"x"}` + strings.Repeat(`]}`, 20) + `]}`
		if _, err := Deidentify([]byte(in), Options{Key: testKey("x")}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestBirthDateCollision: when the keyed shift would make another date equal the true birth date verbatim,
// the next keyed shift is used, deterministically, and intervals stay intact.
func TestBirthDateCollision(t *testing.T) {
	key := testKey("collide")
	shift := newKeyer(key, "r").dayShift(0)
	y, m, d := shiftYMD(1980, 5, 17, -shift)
	collide := fmt.Sprintf("%04d-%02d-%02d", y, m, d)
	in := bundleOf(`{"resourceType":"Patient","id":"p","birthDate":"1980-05-17"}`,
		`{"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p"},"effectiveDateTime":"`+collide+`","issued":"`+collide+`T10:00:00Z"}`)
	res, err := Deidentify(in, Options{Key: key, Scope: "r", Now: goldenNow})
	if err != nil {
		t.Fatal(err)
	}
	out := string(res.Bundle)
	if strings.Contains(out, "1980-05-17") {
		t.Fatal("true birth date in output")
	}
	again, _ := Deidentify(in, Options{Key: key, Scope: "r", Now: goldenNow})
	if string(again.Bundle) != out {
		t.Fatal("not deterministic")
	}
}

// TestConcurrentUse: one compiled profile serves concurrent calls (run with -race).
func TestConcurrentUse(t *testing.T) {
	p := mustProfile(t)
	in := bundleOf(caPatient, `{"resourceType":"Observation","id":"o","status":"final","code":{"text":"Lafleur"},"subject":{"reference":"Patient/pat-0048291"}}`)
	want, err := Deidentify(in, Options{Profile: p, Key: testKey("c"), Scope: "s"})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			got, err := Deidentify(in, Options{Profile: p, Key: testKey("c"), Scope: "s"})
			if err == nil && string(got.Bundle) != string(want.Bundle) {
				err = errors.New("different output")
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestModifierExtensions: a resource or element carrying a modifier extension the profile cannot honour is
// dropped, not kept with its meaning silently changed.
func TestModifierExtensions(t *testing.T) {
	in := bundleOf(`{"resourceType":"Patient","id":"p"}`,
		`{"resourceType":"Condition","id":"c","modifierExtension":[{"url":"http://x/negated","valueBoolean":true}],"code":{"text":"x"},"subject":{"reference":"Patient/p"}}`,
		`{"resourceType":"Observation","id":"o","status":"final","code":{"text":"BP"},"subject":{"reference":"Patient/p"},"hasMember":[{"reference":"Condition/c"}],
		  "component":[{"code":{"text":"sys"},"valueQuantity":{"value":120}},{"modifierExtension":[{"url":"http://x/m","valueBoolean":true}],"code":{"text":"dia"},"valueQuantity":{"value":80}}]}`)
	res, err := Deidentify(in, Options{Key: testKey("m")})
	if err != nil {
		t.Fatal(err)
	}
	out := string(res.Bundle)
	if strings.Contains(out, `"Condition"`) || strings.Contains(out, "dia") || strings.Contains(out, "hasMember") || !strings.Contains(out, "sys") {
		t.Errorf("output: %s", out)
	}
	if res.Report.DroppedResources["Condition"] != 1 || len(res.Report.Warnings) != 1 {
		t.Errorf("report: %+v", res.Report)
	}
}

// TestUIDConsistency: a study UID gets the same keyed 2.25 replacement in ImagingStudy.identifier, wherever it
// is repeated, and when written in a description.
func TestUIDConsistency(t *testing.T) {
	in := bundleOf(`{"resourceType":"ImagingStudy","id":"a","status":"available","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.124.113532.9.55.1"}],"description":"repeat of 1.2.124.113532.9.55.1",
	   "series":[{"uid":"1.2.124.113532.9.55.1.2","modality":{"code":"MR"}}]}`,
		`{"resourceType":"ImagingStudy","id":"b","status":"available","identifier":[{"system":"urn:ietf:rfc:3986","value":"urn:oid:1.2.124.113532.9.55.1"}],"series":[{"uid":"1.2.124.113532.9.55.1.2","modality":{"code":"MR"}}]}`)
	res, err := Deidentify(in, Options{Key: testKey("uid"), Scope: "s"})
	if err != nil {
		t.Fatal(err)
	}
	want := newKeyer(testKey("uid"), "s").uid("1.2.124.113532.9.55.1")
	series := newKeyer(testKey("uid"), "s").uid("1.2.124.113532.9.55.1.2")
	out := string(res.Bundle)
	if strings.Count(out, `"urn:oid:`+want+`"`) != 2 || !strings.Contains(out, "repeat of "+want) || strings.Count(out, `"uid":"`+series+`"`) != 2 {
		t.Errorf("UIDs not consistent: %s", out)
	}
}

// TestShortNumericIdentifierNoFalseRejection: a 5-digit MRN must not reject output in which its digits only
// appear across separators (a ratio, a date), while the MRN itself is still removed.
func TestShortNumericIdentifierNoFalseRejection(t *testing.T) {
	in := bundleOf(`{"resourceType":"Patient","id":"p","identifier":[{"value":"04271"}]}`,
		`{"resourceType":"Observation","id":"o","status":"final","code":{"text":"ratio 104/271 on 2010-04-27"},"subject":{"reference":"Patient/p"},
		  "note":[{"text":"MRN 04271, MRN04271"}],"effectiveDateTime":"2010-04-27T10:00:00Z"}`)
	res, err := Deidentify(in, Options{Key: testKey("n")})
	if err != nil {
		t.Fatal(err)
	}
	out := string(res.Bundle)
	if !strings.Contains(out, "104/271") || strings.Contains(out, "MRN 04271") || strings.Contains(out, "MRN04271") {
		t.Errorf("output: %s", out)
	}
}
