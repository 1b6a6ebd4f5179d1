package deid

import (
	"errors"
	"strings"
	"testing"
)

func TestLoadProfile(t *testing.T) {
	p, err := LoadProfile("")
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "safe-harbor" || p.Version == "" {
		t.Errorf("got %q %q", p.Name, p.Version)
	}
	want := []string{"AllergyIntolerance", "Condition", "DiagnosticReport", "DocumentReference", "Encounter", "ImagingStudy",
		"Immunization", "Medication", "MedicationRequest", "Observation", "Organization", "Patient", "Practitioner", "Procedure", "Specimen"}
	if got := strings.Join(p.ResourceTypes(), ","); got != strings.Join(want, ",") {
		t.Errorf("resource types %s", got)
	}
	for _, bad := range []string{"nope", "../profiles/safe-harbor", "safe-harbor.yaml"} {
		if _, err := LoadProfile(bad); err == nil {
			t.Errorf("LoadProfile(%q) succeeded", bad)
		}
	}
}

func TestParseProfileErrors(t *testing.T) {
	cases := map[string]struct {
		src  string
		want []string
	}{
		"empty":               {``, []string{"empty profile"}},
		"unknown key":         {"profile: x\nversion: 1\nresources: {Patient: {gender: keep}}\nbogus: 1\n", []string{"unknown field"}},
		"not yaml":            {"profile: [\n", []string{"syntax error"}},
		"missing name":        {"version: 1\nresources: {Patient: {gender: keep}}\n", []string{"name missing"}},
		"wrong fhir version":  {"profile: x\nversion: 1\nfhirVersion: 5.0.0\nresources: {Patient: {gender: keep}}\n", []string{"only FHIR R4"}},
		"unknown type":        {"profile: x\nversion: 1\nresources: {Patientt: {gender: keep}}\n", []string{"resources.Patientt: not a supported"}},
		"endpoint":            {"profile: x\nversion: 1\nresources: {Endpoint: {status: keep}}\n", []string{"Endpoint resources are always dropped"}},
		"unknown element":     {"profile: x\nversion: 1\nresources:\n  Observation:\n    valu[x]: keep\n    cod: keep\n", []string{`no element "valu[x]"`, `no element "cod"`}},
		"unknown child":       {"profile: x\nversion: 1\nresources: {ImagingStudy: {series.uidd: uid}}\n", []string{`ImagingStudy.series has no element "uidd"`}},
		"bad treatment":       {"profile: x\nversion: 1\nresources: {Observation: {status: shred}}\n", []string{`unknown treatment "shred"`}},
		"name kept":           {"profile: x\nversion: 1\nresources: {Patient: {name: keep, telecom: keep, photo: keep}}\n", []string{"Patient.name (HumanName) can never be kept", "Patient.telecom (ContactPoint) can never be kept"}},
		"identifier kept":     {"profile: x\nversion: 1\nresources: {Encounter: {identifier: keep}}\n", []string{"identifiers are removed"}},
		"managed":             {"profile: x\nversion: 1\nresources: {Observation: {meta: keep, text: keep, id: keep, extension: keep}}\n", []string{"meta is written", "narrative is always dropped", "id is always pseudonymized", "extension URLs"}},
		"generalize misuse":   {"profile: x\nversion: 1\nresources: {Observation: {status: generalize}}\n", []string{"generalize applies to"}},
		"uid misuse":          {"profile: x\nversion: 1\nresources: {Observation: {code: uid}}\n", []string{"uid applies to"}},
		"pseudonymize misuse": {"profile: x\nversion: 1\nresources: {Observation: {code: pseudonymize}}\n", []string{"pseudonymize applies to Identifier"}},
		"relative extension":  {"profile: x\nversion: 1\nextensions: [race]\nresources: {Observation: {status: keep}}\n", []string{"not an absolute URL"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseProfile([]byte(tc.src))
			var pe *ProfileError
			if !errors.As(err, &pe) {
				t.Fatalf("got %v (%T), want *ProfileError", err, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestUserProfile: a user profile (JSON here) narrows what survives; unlisted elements are dropped and counted,
// while the fixed rules still apply.
func TestUserProfile(t *testing.T) {
	p, err := ParseProfile([]byte(`{"profile":"labs-only","version":"0.1","resources":{"Observation":{"status":"keep","code":"keep","value[x]":"keep","identifier":"pseudonymize","subject":"keep"},"Patient":{}}}`))
	if err != nil {
		t.Fatal(err)
	}
	in := bundleOf(caPatient, `{"resourceType":"Observation","id":"o","status":"final","identifier":[{"system":"urn:lab","value":"L-77812"}],
	  "code":{"text":"Hb for Lafleur"},"subject":{"reference":"Patient/pat-0048291"},"valueQuantity":{"value":120,"unit":"g/L"},"note":[{"text":"kept?"}],"interpretation":[{"text":"L"}]}`,
		`{"resourceType":"Condition","id":"c","code":{"text":"x"}}`)
	res, err := Deidentify(in, Options{Profile: p, Key: testKey("u")})
	if err != nil {
		t.Fatal(err)
	}
	out := string(res.Bundle)
	for _, f := range []string{"kept?", "interpretation", "Condition", "L-77812", "Lafleur"} {
		if strings.Contains(out, f) {
			t.Errorf("output contains %q", f)
		}
	}
	for _, r := range []string{`"system":"` + IdentifierSystem + `"`, `"text":"Hb for [NAME]"`, `"value":120`} {
		if !strings.Contains(out, r) {
			t.Errorf("output lacks %q", r)
		}
	}
	if res.Report.DroppedElements["Observation.note"] != 1 || res.Report.DroppedResources["Condition"] != 1 {
		t.Errorf("report: %+v %+v", res.Report.DroppedElements, res.Report.DroppedResources)
	}
	if res.Report.Profile != "labs-only" || res.Report.ProfileVersion != "0.1" || res.Report.KeyID != "test-u" {
		t.Errorf("report header %+v", res.Report)
	}
}

// TestKeepCannotLeakUIDs: keeping a whole backbone still replaces the UIDs inside it and drops its
// identifiers, because those rules do not depend on the profile.
func TestKeepCannotLeakUIDs(t *testing.T) {
	p, err := ParseProfile([]byte("profile: wide\nversion: 1\nresources:\n  ImagingStudy:\n    series: keep\n    status: keep\n"))
	if err != nil {
		t.Fatal(err)
	}
	in := []byte(`{"resourceType":"ImagingStudy","id":"i","status":"available","identifier":[{"value":"urn:oid:1.2.3.4.5.6"}],
	  "series":[{"uid":"1.2.3.4.5.6.7","modality":{"code":"CT"},"endpoint":[{"reference":"Endpoint/e"}],"instance":[{"uid":"1.2.3.4.5.6.7.8","sopClass":{"code":"1.2.840.10008.5.1.4.1.1.2"}}]}]}`)
	res, err := Deidentify(in, Options{Profile: p, Key: testKey("w")})
	if err != nil {
		t.Fatal(err)
	}
	out := string(res.Bundle)
	if strings.Contains(out, "1.2.3.4.5.6") || strings.Contains(out, "Endpoint") || strings.Contains(out, `"identifier"`) || strings.Count(out, `"uid":"2.25.`) != 2 {
		t.Errorf("output: %s", out)
	}
}
