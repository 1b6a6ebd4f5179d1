package sandbox

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNewRejectsInvalidInput(t *testing.T) {
	good := []byte(`{"resourceType":"Bundle","type":"collection","entry":[]}`)
	tests := []struct {
		name    string
		opts    Options
		wantErr []string // substrings that must all appear
	}{
		{"unparsable bundle", Options{Sites: []SiteOptions{{Bundles: [][]byte{[]byte(`{"resourceType":`)}}}},
			[]string{"parse bundle 0"}},
		{"not a bundle", Options{Sites: []SiteOptions{{Bundles: [][]byte{[]byte(`{"resourceType":"Patient","id":"x"}`)}}}},
			[]string{"not Bundle"}},
		{"searchset bundle", Options{Sites: []SiteOptions{{Bundles: [][]byte{
			[]byte(`{"resourceType":"Bundle","type":"searchset"}`)}}}}, []string{"unsupported bundle type"}},
		{"entry without resourceType", Options{Sites: []SiteOptions{{Bundles: [][]byte{good,
			[]byte(`{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"id":"x"}}]}`)}}}},
			[]string{"parse bundle 1 entry 0"}},
		{"entry without id or urn:uuid", Options{Sites: []SiteOptions{{Bundles: [][]byte{
			[]byte(`{"resourceType":"Bundle","type":"batch","entry":[{"fullUrl":"http://x/Patient/1","resource":{"resourceType":"Patient"}}]}`)}}}},
			[]string{"no id"}},
		{"invalid id", Options{Sites: []SiteOptions{{Bundles: [][]byte{
			[]byte(`{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"resourceType":"Patient","id":"a b"}}]}`)}}}},
			[]string{"not a valid FHIR id"}},
		{"every config problem at once", Options{Sites: []SiteOptions{
			{Name: "a/b", Bundles: [][]byte{good}},
			{Name: "x", DefaultPageSize: 50, MaxPageSize: 10},
			{Name: "x"},
		}}, []string{`"a/b" is not a plain URL segment`, "DefaultPageSize 50 exceeds MaxPageSize 10", `"x" is used twice`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if err == nil {
				t.Fatal("New succeeded, want an error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestLoadRewritesReferencesAndKeepsContent pages through every type on a site loaded with all 13 bundles and
// compares each served resource with the source after rewriting fullUrl references: nothing lost, nothing extra,
// every urn:uuid gone.
func TestLoadRewritesReferencesAndKeepsContent(t *testing.T) {
	fx := loadFixture(t)
	ts := newTestServer(t, Options{Sites: []SiteOptions{{Name: "hospital", Bundles: fx.bundles}}})
	base := ts.base("hospital")

	wantByType := map[string][]string{}
	for key := range fx.resources {
		typ, id, _ := strings.Cut(key, "/")
		wantByType[typ] = append(wantByType[typ], id)
	}
	urnLeft := 0
	for typ, want := range wantByType {
		var got []string
		for _, page := range ts.searchAll(t, u(base, typ, "_count", "200")) {
			for _, e := range entries(t, page) {
				got = append(got, e.id)
				key := e.typ + "/" + e.id
				if e.fullURL != base+"/"+key {
					t.Errorf("fullUrl %q, want %q", e.fullURL, base+"/"+key)
				}
				if want := fx.expected(key); !cmp.Equal(want, any(e.resource)) {
					t.Errorf("%s differs from its source (-want +got):\n%s", key, cmp.Diff(want, any(e.resource)))
				}
				raw, _ := json.Marshal(e.resource)
				urnLeft += bytes.Count(raw, []byte(`"reference":"urn:uuid:`))
			}
		}
		if diff := cmp.Diff(sorted(want), sorted(got)); diff != "" {
			t.Errorf("%s ids (-want +got):\n%s", typ, diff)
		}
	}
	if urnLeft != 0 {
		t.Errorf("%d urn:uuid references left unresolved", urnLeft)
	}
	// The group C patient's conditional references name identifiers no loaded resource has: they stay as they are.
	r := ts.get(t, base+"/Encounter?_count=200&patient=3f6fd0bb-6cd3-eb3f-4401-cd38ace25f2b")
	if !bytes.Contains(r.body, []byte(`"reference":"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999955949"`)) {
		t.Error("unresolvable conditional reference was not kept as is")
	}
}

func TestLoadResolvesConditionalReferences(t *testing.T) {
	directory := `{"resourceType":"Bundle","type":"collection","entry":[
	 {"fullUrl":"urn:uuid:0rg1","resource":{"resourceType":"Organization","id":"org-1","name":"Early",
	   "identifier":[{"system":"http://sys","value":"A"}]}},
	 {"resource":{"resourceType":"Organization","id":"org-2","identifier":[{"system":"http://sys","value":"dup"}]}},
	 {"resource":{"resourceType":"Organization","id":"org-3","identifier":[{"system":"http://sys","value":"dup"}]}},
	 {"resource":{"resourceType":"Practitioner","id":"pr-1","identifier":[{"system":"http://npi","value":"42"}]}}]}`
	patient := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:11111111-1111-1111-1111-111111111111","resource":{"resourceType":"Patient",
	   "id":"11111111-1111-1111-1111-111111111111","_gender":{"extension":[{"url":"http://x","valueString":"kept"}]}},
	   "request":{"method":"POST","url":"Patient"}},
	 {"fullUrl":"urn:uuid:22222222-2222-2222-2222-222222222222","resource":{"resourceType":"Organization","name":"no id"},
	   "request":{"method":"POST","url":"Organization"}},
	 {"fullUrl":"urn:uuid:e1","resource":{"resourceType":"Encounter","id":"e-1",
	   "contained":[{"resourceType":"Organization","id":"c1","partOf":{"reference":"urn:uuid:0rg1"}}],
	   "subject":{"reference":"urn:uuid:11111111-1111-1111-1111-111111111111","display":"x"},
	   "serviceProvider":{"reference":"Organization?identifier=http://sys|A"},
	   "participant":[{"individual":{"reference":"Practitioner?identifier=http://npi|42"}},
	                  {"individual":{"reference":"Practitioner?identifier=42"}}],
	   "location":[{"location":{"reference":"Location?identifier=http://sys|none"}},
	               {"location":{"reference":"Organization?identifier=http://sys|dup"}}],
	   "reasonReference":[{"reference":"#c1"}],
	   "extension":[{"url":"http://x","valueReference":{"reference":"urn:uuid:22222222-2222-2222-2222-222222222222"}},
	                {"url":"http://y","valueDecimal":1.50000000000000000001}]},
	   "request":{"method":"POST","url":"Encounter"}}]}`
	later := `{"resourceType":"Bundle","type":"batch","entry":[
	 {"resource":{"resourceType":"Organization","id":"org-1","name":"Later","identifier":[{"system":"http://sys","value":"A"}]}}]}`

	ts := newTestServer(t, Options{Sites: []SiteOptions{{Name: "h", Bundles: [][]byte{[]byte(directory), []byte(patient), []byte(later)}}}})
	base := ts.base("h")
	r := ts.get(t, base+"/Encounter/e-1")
	if r.status != 200 {
		t.Fatalf("read Encounter: status %d", r.status)
	}
	if !bytes.Contains(r.body, []byte(`"valueDecimal":1.50000000000000000001`)) {
		t.Errorf("decimal text not preserved: %s", r.body)
	}
	var got any
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.UseNumber()
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"resourceType": "Encounter", "id": "e-1",
		"contained": []any{map[string]any{"resourceType": "Organization", "id": "c1",
			"partOf": map[string]any{"reference": "Organization/org-1"}}},
		"subject":         map[string]any{"reference": "Patient/11111111-1111-1111-1111-111111111111", "display": "x"},
		"serviceProvider": map[string]any{"reference": "Organization/org-1"},
		"participant": []any{
			map[string]any{"individual": map[string]any{"reference": "Practitioner/pr-1"}},
			map[string]any{"individual": map[string]any{"reference": "Practitioner/pr-1"}},
		},
		"location": []any{
			map[string]any{"location": map[string]any{"reference": "Location?identifier=http://sys|none"}},
			map[string]any{"location": map[string]any{"reference": "Organization?identifier=http://sys|dup"}},
		},
		"reasonReference": []any{map[string]any{"reference": "#c1"}},
		"extension": []any{
			map[string]any{"url": "http://x", "valueReference": map[string]any{
				"reference": "Organization/22222222-2222-2222-2222-222222222222"}},
			map[string]any{"url": "http://y", "valueDecimal": json.Number("1.50000000000000000001")},
		},
	}
	if diff := cmp.Diff(any(want), got); diff != "" {
		t.Errorf("Encounter (-want +got):\n%s", diff)
	}

	// Duplicate ids: the later bundle's Organization wins.
	if r := ts.get(t, base+"/Organization/org-1"); !bytes.Contains(r.body, []byte(`"name":"Later"`)) {
		t.Errorf("duplicate id: got %s, want the later version", r.body)
	}
	// A resource without id gets the uuid of its fullUrl.
	if r := ts.get(t, base+"/Organization/22222222-2222-2222-2222-222222222222"); r.status != 200 ||
		!bytes.Contains(r.body, []byte(`"id":"22222222-2222-2222-2222-222222222222"`)) {
		t.Errorf("id from fullUrl: status %d body %s", r.status, r.body)
	}
	// Primitive extensions survive.
	if r := ts.get(t, base+"/Patient/11111111-1111-1111-1111-111111111111"); !bytes.Contains(r.body, []byte(`"_gender":{"extension"`)) {
		t.Errorf("primitive extension lost: %s", r.body)
	}
	if diff := cmp.Diff([]string{"11111111-1111-1111-1111-111111111111"}, ts.srv.Site("h").Patients()); diff != "" {
		t.Errorf("Patients (-want +got):\n%s", diff)
	}
}

func TestDefaultBundlesAndLoadDir(t *testing.T) {
	def, err := DefaultBundles()
	if err != nil {
		t.Fatal(err)
	}
	if len(def) != 4 {
		t.Errorf("DefaultBundles: %d bundles, want 4", len(def))
	}
	srv, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	site := srv.Site(DefaultSiteName)
	if site == nil {
		t.Fatal("zero Options: no site named hospital")
	}
	want := []string{"0ce18c7d-fd78-46d9-81b5-8bed231c337a", "fe07e69a-4d6d-4e11-a675-de69f62de5f3"}
	if diff := cmp.Diff(want, site.Patients()); diff != "" {
		t.Errorf("default patients (-want +got):\n%s", diff)
	}
	if srv.Site("nope") != nil {
		t.Error("Site of an unknown name is not nil")
	}

	all, err := LoadDir(syntheaDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 13 {
		t.Errorf("LoadDir(%s): %d bundles, want 13 (README.md skipped)", syntheaDir, len(all))
	}
	first, err := os.ReadFile(filepath.Join(syntheaDir, "Antonia30_Ruelas156_fe07e69a-4d6d-4e11-a675-de69f62de5f3.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(all) > 0 && !bytes.Equal(all[0], first) {
		t.Error("LoadDir is not sorted by name")
	}

	dir := t.TempDir()
	for name, body := range map[string]string{"b.json": "B", "a.json": "A", "c.txt": "C", "sub/d.json": "D"} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([][]byte{[]byte("A"), []byte("B")}, got); diff != "" {
		t.Errorf("LoadDir (-want +got):\n%s", diff)
	}
	if _, err := LoadDir(filepath.Join(dir, "missing")); err == nil {
		t.Error("LoadDir of a missing directory succeeded")
	}
}
