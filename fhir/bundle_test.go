package fhir

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestReadSearchsetEntries: entries are read in one pass from the page's decoder. The edge cases of that reading:
// member names written with escapes mean what they spell, a null resource is no resource, unknown members are
// skipped but still bounded in depth, and malformed or duplicated members are refused.
func TestReadSearchsetEntries(t *testing.T) {
	const cond = `{"resourceType":"Condition","id":"c1"}`
	page := func(entries ...string) string {
		return `{"resourceType":"Bundle","type":"searchset","entry":[` + strings.Join(entries, ",") + `]}`
	}
	for _, tc := range []struct {
		name, body string
		wantIDs    []string
		wantModes  []string
		wantErr    error
	}{
		{"plain", page(`{"fullUrl":"x","resource":` + cond + `,"search":{"mode":"match"}}`), []string{"c1"}, []string{"match"}, nil},
		{"escaped names", page(`{"resourc\u0065":` + cond + `,"se\u0061rch":{"mode":"include"}}`), []string{"c1"}, []string{"include"}, nil},
		{"null resource", page(`{"resource":null,"search":{"mode":"outcome"}}`), []string{""}, []string{"outcome"}, nil},
		{"no resource", page(`{"fullUrl":"x"}`), []string{""}, []string{""}, nil},
		{"two entries, the first's bytes not reused", page(`{"resource":`+cond+`}`, `{"resource":{"resourceType":"Condition","id":"c2"}}`), []string{"c1", "c2"}, []string{"", ""}, nil},
		{"entry not an object", page(`[1]`), nil, nil, ErrInvalidResponse},
		{"search not an object", page(`{"resource":` + cond + `,"search":"match"}`), nil, nil, ErrInvalidResponse},
		{"duplicate resource member", page(`{"resource":` + cond + `,"resource":{"resourceType":"Condition","id":"c9"}}`), nil, nil, ErrInvalidResponse},
		{"duplicate member under another spelling", page(`{"resource":` + cond + `,"resourc\u0065":{"resourceType":"Condition","id":"c9"}}`), nil, nil, ErrInvalidResponse},
		{"resource without id", page(`{"resource":{"resourceType":"Condition"}}`), nil, nil, ErrInvalidResponse},
		{"unknown member too deep", page(`{"resource":` + cond + `,"extension":` + strings.Repeat("[", 10) + strings.Repeat("]", 10) + `}`), nil, nil, nil},
		{"truncated", page(`{"resource":` + cond)[:60], nil, nil, ErrInvalidResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := readSearchset(bytes.NewReader([]byte(tc.body)), 10)
			if tc.name == "unknown member too deep" {
				var le *LimitError
				if !errors.As(err, &le) || le.Limit != "max_json_depth" {
					t.Fatalf("err = %v, want the depth limit", err)
				}
				return
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(p.entries) != len(tc.wantIDs) {
				t.Fatalf("%d entries, want %d", len(p.entries), len(tc.wantIDs))
			}
			for i, e := range p.entries {
				if e.resource.ID != tc.wantIDs[i] || e.mode != tc.wantModes[i] {
					t.Errorf("entry %d: id %q mode %q, want %q %q", i, e.resource.ID, e.mode, tc.wantIDs[i], tc.wantModes[i])
				}
				if e.resource.ID != "" && !bytes.HasPrefix(e.resource.Raw, []byte(`{"resourceType":"Condition","id":"`+tc.wantIDs[i])) {
					t.Errorf("entry %d: raw %s", i, e.resource.Raw)
				}
			}
		})
	}
}
