package fhir_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"secondlook/fhir"
	"secondlook/sandbox"
)

const syntheaDir = "../testdata/synthea"

var (
	bundlesOnce sync.Once
	bundles     [][]byte
	bundlesErr  error
)

// allBundles loads every shared Synthea bundle once per test binary.
func allBundles(t testing.TB) [][]byte {
	t.Helper()
	bundlesOnce.Do(func() { bundles, bundlesErr = sandbox.LoadDir(syntheaDir) })
	if bundlesErr != nil {
		t.Fatalf("load bundles: %v", bundlesErr)
	}
	return bundles
}

// hospital is a sandbox site on a loopback server, with a request recorder in front of it.
type hospital struct {
	srv  *httptest.Server
	site *sandbox.Site
	rec  *recorder
	base string
}

// recorder counts requests by path (relative to the base) and tracks the most requests in flight at once, and the
// Authorization headers seen.
type recorder struct {
	next        http.Handler
	mu          sync.Mutex
	paths       []string
	auth        []string
	inFlight    atomic.Int64
	maxInFlight atomic.Int64
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	n := r.inFlight.Add(1)
	for {
		m := r.maxInFlight.Load()
		if n <= m || r.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	defer r.inFlight.Add(-1)
	r.mu.Lock()
	r.paths = append(r.paths, strings.TrimPrefix(req.URL.Path, "/hospital/fhir/"))
	r.auth = append(r.auth, req.Header.Get("Authorization"))
	r.mu.Unlock()
	r.next.ServeHTTP(w, req)
}

// count returns how many requests had a path starting with prefix.
func (r *recorder) count(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, p := range r.paths {
		if strings.HasPrefix(p, prefix) {
			n++
		}
	}
	return n
}

func newHospital(t testing.TB, update func(*sandbox.SiteOptions)) *hospital {
	t.Helper()
	so := sandbox.SiteOptions{Name: "hospital", Bundles: allBundles(t)}
	if update != nil {
		update(&so)
	}
	s, err := sandbox.New(sandbox.Options{Sites: []sandbox.SiteOptions{so}})
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	rec := &recorder{next: s.Handler()}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	return &hospital{srv: srv, site: s.Site("hospital"), rec: rec, base: srv.URL + "/hospital/fhir"}
}

func (h *hospital) client(t testing.TB, update func(*fhir.Options)) *fhir.Client {
	t.Helper()
	o := fhir.Options{BaseURL: h.base, PageSize: 10, Retry: fhir.Retry{BaseDelay: 5e6, MaxDelay: 2e9}}
	if update != nil {
		update(&o)
	}
	c, err := fhir.NewClient(o)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return c
}

// expected is what a patient's source bundle holds, read straight from the file.
type expected struct {
	patientID string
	names     []string // given and family names, for PHI checks on errors
	byType    map[string]map[string]bool
	results   map[string]bool // Observation ids named by DiagnosticReport.result
	binaries  int             // attachments with inline data in DiagnosticReport.presentedForm and DocumentReference
}

func expectations(t testing.TB) []expected {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(syntheaDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out []expected
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var b struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		e := expected{byType: map[string]map[string]bool{}, results: map[string]bool{}}
		for _, en := range b.Entry {
			var r struct {
				ResourceType string `json:"resourceType"`
				ID           string `json:"id"`
				Result       []struct {
					Reference string `json:"reference"`
				} `json:"result"`
				PresentedForm []json.RawMessage `json:"presentedForm"`
				Content       []json.RawMessage `json:"content"`
			}
			if err := json.Unmarshal(en.Resource, &r); err != nil {
				t.Fatal(err)
			}
			if e.byType[r.ResourceType] == nil {
				e.byType[r.ResourceType] = map[string]bool{}
			}
			e.byType[r.ResourceType][r.ID] = true
			switch r.ResourceType {
			case "Patient":
				e.patientID = r.ID
				var p struct {
					Name []struct {
						Family string   `json:"family"`
						Given  []string `json:"given"`
					} `json:"name"`
				}
				if err := json.Unmarshal(en.Resource, &p); err != nil {
					t.Fatal(err)
				}
				for _, n := range p.Name {
					e.names = append(e.names, n.Family)
					e.names = append(e.names, n.Given...)
				}
			case "DiagnosticReport":
				for _, ref := range r.Result {
					e.results[strings.TrimPrefix(ref.Reference, "urn:uuid:")] = true
				}
				e.binaries += len(r.PresentedForm)
			case "DocumentReference":
				e.binaries += len(r.Content)
			}
		}
		if e.patientID != "" {
			out = append(out, e)
		}
	}
	if len(out) != 11 {
		t.Fatalf("found %d patients in %s, want 11", len(out), syntheaDir)
	}
	return out
}

func ids(list []fhir.Resource) map[string]bool {
	m := map[string]bool{}
	for _, r := range list {
		m[r.ID] = true
	}
	return m
}
