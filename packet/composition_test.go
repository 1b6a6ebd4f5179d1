package packet

import "testing"

// TestObservationTextQuantity: a quantity's value is shown as the number written; a value FHIR does not allow
// there (quoted, or an object) is not shown as if it were a number.
func TestObservationTextQuantity(t *testing.T) {
	for _, tc := range []struct{ value, want string }{
		{`12.5`, "Hemoglobin: 12.5 g/dL"},
		{`"12.5"`, "Hemoglobin: g/dL"},
		{`{"x":1}`, "Hemoglobin: g/dL"},
	} {
		raw := `{"resourceType":"Observation","code":{"text":"Hemoglobin"},"valueQuantity":{"value":` + tc.value + `,"unit":"g/dL"}}`
		if got := observationText([]byte(raw)); got != tc.want {
			t.Errorf("value %s: %q, want %q", tc.value, got, tc.want)
		}
	}
}
