package fhirjson

import "testing"

func TestHead(t *testing.T) {
	for _, tc := range []struct {
		in       string
		typ, id  string
		rejected bool
	}{
		{in: `{"resourceType":"Condition","id":"c1","code":{"text":"x"}}`, typ: "Condition", id: "c1"},
		{in: `{"meta":{"versionId":"1"},"id":"o1","resourceType":"Observation"}`, typ: "Observation", id: "o1"},
		{in: `{"resourceType":"Patient"}`, typ: "Patient"},
		{in: `{"resourceType":"Patient","id":7}`, rejected: true},
		{in: `{"resourceType":{"x":1},"id":"p"}`, rejected: true},
		{in: `["resourceType","Patient"]`, rejected: true},
		{in: `{"resourceType":"Patient","id":"p1"` /* cut after both: already answered */, typ: "Patient", id: "p1"},
		{in: `{"text":{"div":`, rejected: true},
	} {
		typ, id, err := Head([]byte(tc.in))
		if tc.rejected {
			if err == nil {
				t.Errorf("%s: accepted as %s/%s", tc.in, typ, id)
			}
			continue
		}
		if err != nil || typ != tc.typ || id != tc.id {
			t.Errorf("%s: %q %q %v, want %q %q", tc.in, typ, id, err, tc.typ, tc.id)
		}
	}
}
