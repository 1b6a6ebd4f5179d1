package sandbox

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/samply/golang-fhir-models/fhir-models/fhir"
)

type capabilityJSON struct {
	ResourceType   string   `json:"resourceType"`
	Status         string   `json:"status"`
	Kind           string   `json:"kind"`
	FHIRVersion    string   `json:"fhirVersion"`
	Format         []string `json:"format"`
	Implementation struct {
		URL string `json:"url"`
	} `json:"implementation"`
	Rest []struct {
		Mode     string `json:"mode"`
		Resource []struct {
			Type        string `json:"type"`
			Interaction []struct {
				Code string `json:"code"`
			} `json:"interaction"`
			SearchInclude []string   `json:"searchInclude"`
			SearchParam   []capParam `json:"searchParam"`
		} `json:"resource"`
	} `json:"rest"`
}

type capParam struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

func fetchCapabilities(t *testing.T, ts *testServer, site string) capabilityJSON {
	t.Helper()
	r := ts.get(t, ts.base(site)+"/metadata")
	if r.status != http.StatusOK || r.header.Get("Content-Type") != fhirJSON {
		t.Fatalf("metadata: %d %q", r.status, r.header.Get("Content-Type"))
	}
	if _, err := fhir.UnmarshalCapabilityStatement(r.body); err != nil {
		t.Fatalf("metadata is not a valid CapabilityStatement: %v", err)
	}
	var cs capabilityJSON
	if err := json.Unmarshal(r.body, &cs); err != nil {
		t.Fatal(err)
	}
	return cs
}

// TestMetadataIsTruthful checks the CapabilityStatement and then exercises every advertised parameter with
// Prefer: handling=strict, so an advertised but unimplemented parameter fails, and checks that a parameter it does
// not advertise is refused.
func TestMetadataIsTruthful(t *testing.T) {
	bundles, err := DefaultBundles()
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, Options{Sites: []SiteOptions{
		{Name: "hospital", Bundles: bundles},
		{Name: "noinclude", Bundles: bundles, DisableInclude: true},
	}})
	cs := fetchCapabilities(t, ts, "hospital")
	if cs.ResourceType != "CapabilityStatement" || cs.Status != "active" || cs.Kind != "instance" ||
		cs.FHIRVersion != "4.0.1" || !slices.Contains(cs.Format, "json") || len(cs.Rest) != 1 || cs.Rest[0].Mode != "server" {
		t.Fatalf("CapabilityStatement header fields: %+v", cs)
	}
	if cs.Implementation.URL != ts.base("hospital") {
		t.Errorf("implementation.url %q, want %q", cs.Implementation.URL, ts.base("hospital"))
	}

	// Every loaded type and every core search type, nothing else.
	srvTypes := map[string]bool{}
	for typ := range ts.srv.Site("hospital").store.types {
		srvTypes[typ] = true
	}
	for _, typ := range coreSearchTypes() {
		srvTypes[typ] = true
	}
	var advertised []string
	for _, res := range cs.Rest[0].Resource {
		advertised = append(advertised, res.Type)
	}
	if diff := cmp.Diff(sorted(keys(srvTypes)), sorted(advertised)); diff != "" {
		t.Errorf("advertised types (-want +got):\n%s", diff)
	}

	// The core types advertise exactly the parameters the sandbox promises, no more.
	wantParams := map[string][]string{
		"Patient":           {"_id", "identifier", "name", "birthdate"},
		"DiagnosticReport":  {"_id", "patient", "subject", "category", "code", "date"},
		"Observation":       {"_id", "patient", "subject", "category", "code", "date"},
		"ImagingStudy":      {"_id", "patient", "subject", "started", "modality"},
		"Condition":         {"_id", "patient", "subject", "category", "code", "onset-date", "recorded-date"},
		"DocumentReference": {"_id", "patient", "subject", "category", "type", "date"},
		"Encounter":         {"_id", "patient", "subject", "date", "type"},
		"Claim":             {"_id", "patient"},
		"Organization":      {"_id"},
	}
	for _, res := range cs.Rest[0].Resource {
		want, ok := wantParams[res.Type]
		if !ok {
			continue
		}
		var got []string
		for _, p := range res.SearchParam {
			got = append(got, p.Name)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s search parameters (-want +got):\n%s", res.Type, diff)
		}
	}

	strict := http.Header{"Prefer": {"handling=strict"}}
	sample := map[string]string{
		"token":     "http://loinc.org|8302-2",
		"string":    "a",
		"date":      "ge2000-01-01",
		"reference": "Patient/" + toddID,
	}
	base := ts.base("hospital")
	for _, res := range cs.Rest[0].Resource {
		var interactions []string
		for _, i := range res.Interaction {
			interactions = append(interactions, i.Code)
		}
		if diff := cmp.Diff([]string{"read", "search-type"}, interactions); diff != "" {
			t.Errorf("%s interactions (-want +got):\n%s", res.Type, diff)
		}
		if !slices.ContainsFunc(res.SearchParam, func(p capParam) bool { return p.Name == "_id" }) {
			t.Errorf("%s does not advertise _id", res.Type)
		}
		for _, p := range res.SearchParam {
			v, ok := sample[p.Type]
			if !ok {
				t.Errorf("%s.%s has unexpected type %q", res.Type, p.Name, p.Type)
				continue
			}
			r := ts.do(t, http.MethodGet, u(base, res.Type, p.Name, v), strict, nil)
			if r.status != http.StatusOK {
				t.Errorf("advertised %s?%s (%s) fails under strict handling: %d %.200s", res.Type, p.Name, p.Type, r.status, r.body)
			}
		}
		for _, inc := range res.SearchInclude {
			b := decodeSearchset(t, ts.do(t, http.MethodGet, u(base, res.Type, "patient", toddID, "_include", inc), strict, nil))
			if !slices.ContainsFunc(entries(t, b), func(e pageEntry) bool { return e.mode == "include" }) {
				t.Errorf("advertised _include=%s includes nothing", inc)
			}
		}
		// A parameter FHIR defines but this server does not implement is refused, not silently ignored.
		r := ts.do(t, http.MethodGet, u(base, res.Type, "_lastUpdated", "ge2000"), strict, nil)
		if r.status != http.StatusBadRequest {
			t.Errorf("unadvertised %s?_lastUpdated: status %d, want 400", res.Type, r.status)
		}
		// Reads work for every advertised type: a missing id is not-found, not an unknown type.
		r = ts.get(t, base+"/"+res.Type+"/no-such-id")
		if code := operationOutcomeCode(t, r); r.status != http.StatusNotFound || code != "not-found" {
			t.Errorf("read %s/no-such-id: %d %q, want 404 not-found", res.Type, r.status, code)
		}
	}
	dr := func(cs capabilityJSON) []string {
		for _, res := range cs.Rest[0].Resource {
			if res.Type == "DiagnosticReport" {
				return res.SearchInclude
			}
		}
		return nil
	}
	if diff := cmp.Diff([]string{"DiagnosticReport:result"}, dr(cs)); diff != "" {
		t.Errorf("DiagnosticReport searchInclude (-want +got):\n%s", diff)
	}

	// DisableInclude: not advertised, refused when strict, ignored when lenient.
	if got := dr(fetchCapabilities(t, ts, "noinclude")); len(got) != 0 {
		t.Errorf("DisableInclude site advertises %v", got)
	}
	q := u(ts.base("noinclude"), "DiagnosticReport", "patient", toddID, "_include", "DiagnosticReport:result")
	if r := ts.do(t, http.MethodGet, q, strict, nil); r.status != http.StatusBadRequest {
		t.Errorf("DisableInclude strict _include: status %d, want 400", r.status)
	}
	b := decodeSearchset(t, ts.get(t, q))
	for _, e := range entries(t, b) {
		if e.mode != "match" {
			t.Fatalf("DisableInclude lenient _include returned a %q entry", e.mode)
		}
	}
	if len(b.Entry) == 0 {
		t.Error("DisableInclude lenient search returned nothing")
	}
}
