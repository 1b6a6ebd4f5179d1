package sandbox

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// syntheaDir holds the 13 shared Synthea bundles (11 patients and the two information bundles).
const syntheaDir = "../testdata/synthea"

// fixture is an independent reading of the source bundles with encoding/json, used as the oracle for what the
// server must serve.
type fixture struct {
	bundles  [][]byte
	patients []fixturePatient
	// resources is every loaded resource by Type/id (later bundles win), decoded with UseNumber so numbers keep
	// their text.
	resources map[string]map[string]any
	// urls maps every fullUrl to Type/id.
	urls map[string]string
}

type fixturePatient struct {
	file string
	id   string
	// ids lists, per resource type, the ids of the resources in the patient's own bundle.
	ids map[string][]string
}

func loadFixture(t testing.TB) *fixture {
	t.Helper()
	bundles, err := LoadDir(syntheaDir)
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	names, err := filepath.Glob(filepath.Join(syntheaDir, "*.json"))
	if err != nil || len(names) != len(bundles) {
		t.Fatalf("glob bundles: %v (%d names, %d bundles)", err, len(names), len(bundles))
	}
	slices.Sort(names)
	for i := range names {
		names[i] = filepath.Base(names[i])
	}
	return fixtureFrom(t, bundles, names)
}

// fixtureFrom decodes bundles; names label them in failure messages.
func fixtureFrom(t testing.TB, bundles [][]byte, names []string) *fixture {
	t.Helper()
	f := &fixture{bundles: bundles, resources: map[string]map[string]any{}, urls: map[string]string{}}
	for i, b := range bundles {
		var bundle struct {
			Entry []struct {
				FullURL  string         `json:"fullUrl"`
				Resource map[string]any `json:"resource"`
			} `json:"entry"`
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&bundle); err != nil {
			t.Fatalf("decode %s: %v", names[i], err)
		}
		p := fixturePatient{file: names[i], ids: map[string][]string{}}
		for _, e := range bundle.Entry {
			typ, _ := e.Resource["resourceType"].(string)
			id, _ := e.Resource["id"].(string)
			f.urls[e.FullURL] = typ + "/" + id
			f.resources[typ+"/"+id] = e.Resource
			p.ids[typ] = append(p.ids[typ], id)
			if typ == "Patient" {
				p.id = id
			}
		}
		if p.id != "" {
			f.patients = append(f.patients, p)
		}
	}
	return f
}

// expected returns the resource as the server must serve it: every reference that names a fullUrl rewritten to
// Type/id, everything else unchanged.
func (f *fixture) expected(key string) any {
	return rewriteRefs(f.resources[key], f.urls)
}

func rewriteRefs(v any, urls map[string]string) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if s, ok := e.(string); ok && k == "reference" {
				if to, ok := urls[s]; ok {
					e = to
				}
			}
			out[k] = rewriteRefs(e, urls)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = rewriteRefs(e, urls)
		}
		return out
	}
	return v
}

// testServer is a running sandbox on 127.0.0.1.
type testServer struct {
	srv    *Server
	http   *httptest.Server
	client *http.Client
}

func newTestServer(t testing.TB, opts Options) *testServer {
	t.Helper()
	srv, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &testServer{srv: srv, http: hs, client: hs.Client()}
}

// base is the FHIR base URL of a site.
func (ts *testServer) base(site string) string { return ts.http.URL + "/" + site + "/fhir" }

type httpResult struct {
	status int
	header http.Header
	body   []byte
}

func (ts *testServer) do(t testing.TB, method, rawURL string, header http.Header, body io.Reader) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, body)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body of %s %s: %v", method, rawURL, err)
	}
	return httpResult{status: resp.StatusCode, header: resp.Header, body: b}
}

func (ts *testServer) get(t testing.TB, rawURL string) httpResult {
	t.Helper()
	return ts.do(t, http.MethodGet, rawURL, nil, nil)
}

// searchset is the part of a searchset Bundle the tests read.
type searchset struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Total        *int   `json:"total"`
	Link         []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Search   struct {
			Mode string `json:"mode"`
		} `json:"search"`
	} `json:"entry"`
}

func (b *searchset) link(rel string) string {
	for _, l := range b.Link {
		if l.Relation == rel {
			return l.URL
		}
	}
	return ""
}

func decodeSearchset(t testing.TB, r httpResult) *searchset {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d, want 200: %.300s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != fhirJSON {
		t.Fatalf("Content-Type %q, want %q", ct, fhirJSON)
	}
	if _, err := fhir.UnmarshalBundle(r.body); err != nil {
		t.Fatalf("searchset is not a valid Bundle: %v", err)
	}
	var b searchset
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("decode searchset: %v", err)
	}
	if b.ResourceType != "Bundle" || b.Type != "searchset" {
		t.Fatalf("got %s/%s, want a searchset Bundle", b.ResourceType, b.Type)
	}
	return &b
}

// page is one entry of a searchset, reduced to what the tests compare.
type pageEntry struct {
	typ, id, fullURL, mode string
	resource               map[string]any
}

func entries(t testing.TB, b *searchset) []pageEntry {
	t.Helper()
	var out []pageEntry
	for _, e := range b.Entry {
		dec := json.NewDecoder(bytes.NewReader(e.Resource))
		dec.UseNumber()
		var res map[string]any
		if err := dec.Decode(&res); err != nil {
			t.Fatalf("decode entry resource: %v", err)
		}
		typ, _ := res["resourceType"].(string)
		id, _ := res["id"].(string)
		out = append(out, pageEntry{typ: typ, id: id, fullURL: e.FullURL, mode: e.Search.Mode, resource: res})
	}
	return out
}

// searchAll follows next links from first and returns every page, failing on a loop or too many pages.
func (ts *testServer) searchAll(t testing.TB, first string) []*searchset {
	t.Helper()
	var pages []*searchset
	seen := map[string]bool{}
	for u := first; u != ""; {
		if seen[u] || len(pages) > 500 {
			t.Fatalf("paging does not terminate at %s", u)
		}
		seen[u] = true
		b := decodeSearchset(t, ts.get(t, u))
		pages = append(pages, b)
		u = b.link("next")
	}
	return pages
}

// operationOutcomeCode decodes an OperationOutcome body and returns its first issue code.
func operationOutcomeCode(t testing.TB, r httpResult) string {
	t.Helper()
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Severity string `json:"severity"`
			Code     string `json:"code"`
		} `json:"issue"`
	}
	if err := json.Unmarshal(r.body, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
		t.Fatalf("want an OperationOutcome, got %.300s (%v)", r.body, err)
	}
	if _, err := fhir.UnmarshalOperationOutcome(r.body); err != nil {
		t.Errorf("not a valid OperationOutcome: %v", err)
	}
	if ct := r.header.Get("Content-Type"); ct != fhirJSON {
		t.Errorf("OperationOutcome Content-Type %q, want %q", ct, fhirJSON)
	}
	return oo.Issue[0].Code
}

// sorted returns a sorted copy; empty input gives nil so that "none" compares equal however it was built.
func sorted(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func duplicates(s []string) []string {
	seen := map[string]int{}
	var dups []string
	for _, x := range s {
		seen[x]++
		if seen[x] == 2 {
			dups = append(dups, x)
		}
	}
	return dups
}

// u builds base + "/" + path + "?" + encoded query pairs (in order).
func u(base, path string, pairs ...string) string {
	var sb strings.Builder
	sb.WriteString(base + "/" + path)
	for i := 0; i+1 < len(pairs); i += 2 {
		if i == 0 {
			sb.WriteByte('?')
		} else {
			sb.WriteByte('&')
		}
		sb.WriteString(url.QueryEscape(pairs[i]) + "=" + url.QueryEscape(pairs[i+1]))
	}
	return sb.String()
}
