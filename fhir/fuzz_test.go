package fhir

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	models "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"secondlook/sandbox"
)

// The fuzz targets below feed what an upstream FHIR server sends (searchset pages, reads, the CapabilityStatement,
// error bodies, Binary content, next links and references) to the functions that parse it, straight, without HTTP.
// Their seeds are real answers of the sandbox serving a Synthea patient. Besides not panicking, each checks what the
// client promises about its output, and that its errors come from a fixed vocabulary: a server's bytes (patient
// ids, names, URLs) never reach an error message.

const (
	fuzzPatient = "0ce18c7d-fd78-46d9-81b5-8bed231c337a" // Todd315 Stamm704 in testdata/synthea
	fuzzBase    = "https://fhir.example.org/r4"
	fuzzDepth   = 16
)

// errVocabulary is every error text the decoders may produce, with %-verbs replaced by what they format. An error
// outside it could be echoing the server's bytes.
var errVocabulary = regexp.MustCompile(`^((read metadata|read Binary|search [A-Za-z]+): )?(` +
	`fhir: invalid response: (expected a Bundle|expected a searchset Bundle|Bundle\.link is malformed|Bundle\.entry is malformed|` +
	`unexpected JSON structure|data after the Bundle|data after the resource|resource is not a JSON object|` +
	`resource without a valid resourceType|[A-Z][A-Za-z]{0,63} without a valid id|truncated JSON: unexpected EOF|` +
	`truncated JSON at byte \d+|malformed JSON at byte \d+|malformed JSON|CapabilityStatement is malformed|` +
	`not a CapabilityStatement|Binary is malformed)|` +
	`fhir: server is not FHIR R4 \(4\.0\.x\) \(declares "[A-Za-z0-9._-]{0,64}"\)|` +
	`(decode JSON|read Binary): limit max_(json_depth|body_bytes) \(\d+\) reached)$`)

func checkErr(t *testing.T, err error) {
	t.Helper()
	if !errVocabulary.MatchString(err.Error()) {
		t.Fatalf("error outside the vocabulary (could echo input): %q", err)
	}
	var le *LimitError
	if !errors.Is(err, ErrInvalidResponse) && !errors.Is(err, ErrUnsupportedVersion) && !errors.As(err, &le) {
		t.Fatalf("error %T %q is neither ErrInvalidResponse nor a LimitError", err, err)
	}
}

// fuzzSeeds are real answers of the sandbox, read once per process.
type fuzzSeeds struct {
	metadata   []byte
	searchsets [][]byte // pages, including one with _include and one with a next link
	resources  [][]byte // reads
	outcomes   [][]byte // OperationOutcome bodies of error answers
	binaryJSON []byte   // a Binary read as FHIR JSON
	binaryRaw  []byte   // the same read as raw content
	binaryType string   // its Content-Type
	binaryID   string
	links      []string // next links and attachment URLs, relative to the sandbox base
	references []string // subject and result references
}

var (
	seedsOnce sync.Once
	seeds     fuzzSeeds
	seedsErr  error
)

func sandboxSeeds(f *testing.F) *fuzzSeeds {
	f.Helper()
	seedsOnce.Do(func() { seedsErr = loadSeeds(&seeds) })
	if seedsErr != nil {
		f.Fatalf("sandbox seeds: %v", seedsErr)
	}
	return &seeds
}

func loadSeeds(s *fuzzSeeds) error {
	var bundles [][]byte
	for _, name := range []string{"Todd315_Stamm704_" + fuzzPatient + ".json", "hospitalInformation1583281853074.json", "practitionerInformation1583281853074.json"} {
		b, err := os.ReadFile("../testdata/synthea/" + name)
		if err != nil {
			return err
		}
		bundles = append(bundles, b)
	}
	sb, err := sandbox.New(sandbox.Options{Sites: []sandbox.SiteOptions{{Name: "h", Bundles: bundles, ExternalizeAttachments: true}}})
	if err != nil {
		return err
	}
	const base = "http://sandbox.test/h/fhir"
	get := func(rel, accept string) (int, string, []byte) {
		req := httptest.NewRequest(http.MethodGet, base+"/"+rel, nil)
		req.Header.Set("Accept", accept)
		rec := httptest.NewRecorder()
		sb.Handler().ServeHTTP(rec, req)
		return rec.Code, rec.Header().Get("Content-Type"), rec.Body.Bytes()
	}
	_, _, s.metadata = get("metadata", fhirJSON)
	for _, q := range []string{
		"DiagnosticReport?patient=" + fuzzPatient + "&_count=2&_include=DiagnosticReport:result",
		"Condition?patient=" + fuzzPatient + "&_count=3",
		"ImagingStudy?patient=" + fuzzPatient,
		"Observation?_id=nothing-here",
	} {
		_, _, b := get(q, fhirJSON)
		s.searchsets = append(s.searchsets, b)
		var page struct {
			Link []struct{ Relation, URL string }
		}
		_ = json.Unmarshal(b, &page)
		for _, l := range page.Link {
			if l.Relation == "next" {
				s.links = append(s.links, l.URL, strings.TrimPrefix(l.URL, base+"/"))
			}
		}
	}
	_, _, patient := get("Patient/"+fuzzPatient, fhirJSON)
	s.resources = append(s.resources, patient)
	for _, rel := range []string{"Patient/no-such-patient", "Bogus/1", "DiagnosticReport?foo=bar"} {
		if status, _, b := get(rel, fhirJSON); status >= 400 {
			s.outcomes = append(s.outcomes, b)
		}
	}
	// A report with an attachment moved into a Binary: its url, and the Binary both ways.
	var reports struct {
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	_, _, all := get("DiagnosticReport?patient="+fuzzPatient+"&_count=200", fhirJSON)
	if err := json.Unmarshal(all, &reports); err != nil {
		return err
	}
	for _, e := range reports.Entry {
		rep, err := models.UnmarshalDiagnosticReport(e.Resource)
		if err != nil {
			continue
		}
		if rep.Subject != nil && rep.Subject.Reference != nil && len(s.references) < 3 {
			s.references = append(s.references, *rep.Subject.Reference)
		}
		for _, ref := range rep.Result {
			if ref.Reference != nil && len(s.references) < 6 {
				s.references = append(s.references, *ref.Reference, base+"/"+*ref.Reference)
			}
		}
		for _, a := range rep.PresentedForm {
			if a.Url != nil && s.binaryID == "" {
				s.links = append(s.links, *a.Url)
				s.binaryID = path.Base(*a.Url)
				if len(s.resources) < 4 {
					s.resources = append(s.resources, e.Resource)
				}
			}
		}
	}
	if s.binaryID == "" {
		return errors.New("no externalized attachment in the sandbox data")
	}
	_, _, s.binaryJSON = get("Binary/"+s.binaryID, fhirJSON)
	_, s.binaryType, s.binaryRaw = get("Binary/"+s.binaryID, "*/*")
	return nil
}

func fuzzClient(t testing.TB) *Client {
	c, err := NewClient(Options{BaseURL: fuzzBase, Limits: Limits{MaxJSONDepth: fuzzDepth, MaxResources: 50}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// FuzzReadSearchset decodes a searchset page as the client does, then files its entries as a retrieval of
// fuzzPatient would (each as a match of its own type's search, Observations as included results). Properties: kept entries have a valid type and id and are valid JSON within the depth limit;
// every resource kept is about fuzzPatient (or has no subject); the resource limit holds.
func FuzzReadSearchset(f *testing.F) {
	s := sandboxSeeds(f)
	for _, b := range s.searchsets {
		f.Add(b)
	}
	f.Add([]byte(`{"resourceType":"Bundle","type":"searchset","total":1,"link":[{"relation":"next","url":"x"}],` +
		`"entry":[{"resource":{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/` + fuzzPatient + `"}},"search":{"mode":"match"}},` +
		`{"resource":{"resourceType":"OperationOutcome","id":"oo"},"search":{"mode":"outcome"}}]}`))
	f.Add([]byte(`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Condition","id":"c2","subject":{"reference":"Patient/other"}}},` +
		`{"resource":{"resourceType":"Observation","id":"o2","subject":{"reference":"` + fuzzBase + `/Patient/other"}},"search":{"mode":"include"}}]}`))
	f.Add([]byte(`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Condition","id":"c3","subject":[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}}]}`))
	c := fuzzClient(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := readSearchset(bytes.NewReader(data), fuzzDepth)
		if err != nil {
			checkErr(t, err)
			return
		}
		r := &run{c: c, patientID: fuzzPatient, st: &stats{}, resources: map[string]map[string]Resource{},
			warnings: map[[2]string]int{}, reports: map[string]*models.DiagnosticReport{}}
		for _, e := range p.entries {
			if e.resource.Type == "" {
				continue
			}
			if !validType(e.resource.Type) || !validID(e.resource.ID) {
				t.Fatalf("kept an entry with type %q id %q", e.resource.Type, e.resource.ID)
			}
			if !jsontext.Value(e.resource.Raw).IsValid() {
				t.Fatal("kept an entry whose JSON is not valid")
			}
			if checkDepth(e.resource.Raw, fuzzDepth) != nil {
				t.Fatal("kept an entry deeper than the limit")
			}
			// Each entry is filed as a match of a search of its own type, and an Observation as a DiagnosticReport
			// search's included result, so that every kind of entry reaches the subject check.
			searched := e.resource.Type
			if searched == TypeObservation {
				searched = TypeDiagnosticReport
			}
			if err := r.file(searched, e); err != nil {
				var le *LimitError
				if !errors.As(err, &le) || le.Limit != "max_resources" {
					t.Fatalf("file: %v", err)
				}
				if r.count <= c.opts.Limits.MaxResources {
					t.Fatalf("max_resources reported at %d resources", r.count)
				}
				return
			}
		}
		for typ, byID := range r.resources {
			for id, res := range byID {
				if res.Type != typ || res.ID != id {
					t.Fatalf("resource %s/%s filed under %s/%s", res.Type, res.ID, typ, id)
				}
				if ref := strictSubject(res.Raw); ref != "" && ref != "Patient/"+fuzzPatient && ref != fuzzBase+"/Patient/"+fuzzPatient {
					t.Fatalf("kept a %s whose subject is %q", typ, ref)
				}
			}
		}
	})
}

// strictSubject reads subject.reference with a strict decoder (case-sensitive names, no duplicates), as a
// consumer of the packet might: if it disagrees with the client's reading, the client kept a resource it should not.
// It returns "" when there is no subject, or when the JSON is ambiguous (the client's decoding then rules).
func strictSubject(raw []byte) string {
	dec := jsontext.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return ""
	}
	for dec.PeekKind() == '"' {
		name, err := dec.ReadToken()
		if err != nil {
			return ""
		}
		if name.String() != "subject" {
			if dec.SkipValue() != nil {
				return ""
			}
			continue
		}
		v, err := dec.ReadValue()
		if err != nil {
			return ""
		}
		var subj struct {
			Reference string `json:"reference"`
		}
		if json.Unmarshal(v, &subj) != nil {
			return ""
		}
		return subj.Reference
	}
	return ""
}

// FuzzReadResource decodes the body of a read. Properties: a resource comes back only with a valid type and id,
// as valid JSON within the depth limit, and errors stay in the vocabulary.
func FuzzReadResource(f *testing.F) {
	s := sandboxSeeds(f)
	for _, b := range s.resources {
		f.Add(b)
	}
	f.Add([]byte(`{"resourceType":"Patient","id":"p"} {}`))
	f.Add([]byte(`{"id":"a b","resourceType":"Patient"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := readResource(bytes.NewReader(data), fuzzDepth)
		if err != nil {
			checkErr(t, err)
			return
		}
		if !validType(res.Type) || !validID(res.ID) || !jsontext.Value(res.Raw).IsValid() || checkDepth(res.Raw, fuzzDepth) != nil {
			t.Fatalf("accepted %s/%s with invalid JSON or depth", res.Type, res.ID)
		}
	})
}

// FuzzReadCapabilities decodes a CapabilityStatement. Properties: only FHIR 4.0.x is accepted; what Supports and
// CanSearch report follows from the statement; errors stay in the vocabulary (the declared version appears only
// when it looks like a code).
func FuzzReadCapabilities(f *testing.F) {
	s := sandboxSeeds(f)
	f.Add(s.metadata)
	f.Add([]byte(`{"resourceType":"CapabilityStatement","fhirVersion":"5.0.0"}`))
	f.Add([]byte(`{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1","rest":[{"mode":"server","searchParam":[{"name":"_id"}],` +
		`"resource":[{"type":"Observation","searchInclude":["*"]},{"type":"Condition","interaction":[{"code":"read"}]}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		caps, err := readCapabilities(bytes.NewReader(data), fuzzDepth)
		if err != nil {
			checkErr(t, err)
			return
		}
		if !strings.HasPrefix(caps.FHIRVersion, "4.0.") {
			t.Fatalf("accepted FHIR version %q", caps.FHIRVersion)
		}
		for typ, rc := range caps.Resources {
			for p := range rc.SearchParams {
				if !caps.Supports(typ, p) {
					t.Fatalf("Supports(%q, %q) is false for a declared parameter", typ, p)
				}
			}
			if caps.CanSearch(typ) != (rc.Interactions["search-type"] || len(rc.Interactions) == 0 && len(rc.SearchParams) > 0) {
				t.Fatalf("CanSearch(%q) disagrees with the statement", typ)
			}
		}
	})
}

// FuzzOutcome reads the body and Retry-After of an error answer and formats the error, as the client does for any
// non-2xx status. Properties: Error() names the status and issue codes only (never diagnostics or other text), and
// a Retry-After that parses is never negative.
func FuzzOutcome(f *testing.F) {
	s := sandboxSeeds(f)
	for _, b := range s.outcomes {
		f.Add(b, 404, "")
	}
	f.Add([]byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing <script>","diagnostics":"Patient/`+fuzzPatient+` not found"}]}`), 429, "120")
	f.Add([]byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"fatal","code":"throttled"}]}`), 503, "Wed, 21 Oct 2015 07:28:00 GMT")
	f.Add([]byte(`<html>proxy error</html>`), 502, "-1")
	shape := regexp.MustCompile(`^search Condition: server answered HTTP -?\d+( \(OperationOutcome:( [A-Za-z0-9._-]{1,64}/[A-Za-z0-9._-]{1,64})+\))?$`)
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte, status int, retryAfter string) {
		oe := &OutcomeError{Op: "search Condition", StatusCode: status, RetryAfter: retryAfter}
		oe.Issues = readOutcome(bytes.NewReader(body), fuzzDepth)
		msg := oe.Error()
		if !shape.MatchString(msg) {
			t.Fatalf("error text outside its shape: %q", msg)
		}
		if errors.Is(oe, ErrNotFound) != (status == 404 || status == 410) {
			t.Fatalf("errors.Is(ErrNotFound) wrong for status %d", status)
		}
		if d, ok := parseRetryAfter(retryAfter, now); ok && d < 0 {
			t.Fatalf("Retry-After %q gives a negative wait", retryAfter)
		}
	})
}

// FuzzReadBinary reads an attachment's Binary, as a FHIR JSON Binary or as raw content of any type. Properties: the
// result is a Binary with the asked id, valid JSON, whose decoded content respects the attachment limit.
func FuzzReadBinary(f *testing.F) {
	s := sandboxSeeds(f)
	f.Add(s.binaryJSON, fhirJSON)
	f.Add(s.binaryRaw, s.binaryType)
	f.Add([]byte(`{"resourceType":"Binary","id":"b1","contentType":"text/plain","data":"aGVsbG8gd29ybGQ="}`), "application/json; charset=utf-8")
	f.Add([]byte("%PDF-1.4 not really"), "application/pdf")
	const maxBytes = 64
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		res, err := readBinary(bytes.NewReader(body), contentType, s.binaryID, maxBytes, fuzzDepth)
		if err != nil {
			checkErr(t, err)
			return
		}
		if !jsontext.Value(res.Raw).IsValid() {
			t.Fatal("Binary is not valid JSON")
		}
		var bin struct {
			ResourceType string `json:"resourceType"`
			Data         string `json:"data"`
		}
		if err := json.Unmarshal(res.Raw, &bin); err != nil {
			t.Fatalf("Binary does not decode: %v", err)
		}
		if !isFHIRJSON(contentType) {
			if res.Type != TypeBinary || res.ID != s.binaryID || bin.ResourceType != TypeBinary {
				t.Fatalf("raw content wrapped as %s/%s", res.Type, res.ID)
			}
			data, err := base64.StdEncoding.DecodeString(bin.Data)
			if err != nil || !bytes.Equal(data, body) {
				t.Fatal("raw content does not round-trip through the wrapped Binary")
			}
		}
		if int64(base64.StdEncoding.DecodedLen(len(bin.Data))) > maxBytes+2 {
			t.Fatalf("content of %d base64 bytes passed the %d byte limit", len(bin.Data), maxBytes)
		}
	})
}

// FuzzResolve follows a next link or an attachment URL from a server. Properties: a URL is accepted only on the
// base's scheme and host, without credentials, under the base path at a segment boundary, and with no dot segment
// (plain or percent-encoded) that a server would resolve to a path outside the base; refusals are ErrForeignURL or
// ErrInvalidResponse and never quote the URL.
func FuzzResolve(f *testing.F) {
	s := sandboxSeeds(f)
	for _, l := range s.links {
		f.Add(strings.Replace(l, "http://sandbox.test/h/fhir", fuzzBase, 1))
	}
	for _, l := range []string{"DiagnosticReport?patient=1&_page=2", "https://fhir.example.org/r4-evil/x", "//evil.example/r4/x",
		"https://user@fhir.example.org/r4/x", "HTTPS://FHIR.EXAMPLE.ORG/r4/Binary/1", "https://fhir.example.org/r4/%2e%2e/admin",
		"../admin", "https://fhir.example.org/r4/a/../../admin", `https://fhir.example.org/r4/..\admin`, "https://fhir.example.org/r4/x%2F..%2F..%2Fadmin", "Binary/1?x=%zz", "https://fhir.example.org:443/r4/x"} {
		f.Add(l)
	}
	c := fuzzClient(f)
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := c.resolve(raw)
		if err != nil {
			if !errors.Is(err, ErrForeignURL) && !errors.Is(err, ErrInvalidResponse) {
				t.Fatalf("unexpected error %v", err)
			}
			if len(raw) > 12 && strings.Contains(err.Error(), raw) {
				t.Fatal("error quotes the URL")
			}
			return
		}
		if !strings.EqualFold(u.Scheme, "https") || !strings.EqualFold(u.Host, "fhir.example.org") || u.User != nil {
			t.Fatalf("accepted %q on another origin", raw)
		}
		// What a server does with the path: percent-decode, then resolve dot segments.
		decoded, err := url.PathUnescape(u.EscapedPath())
		if err != nil {
			t.Fatalf("accepted %q whose path does not decode", raw)
		}
		if decoded != "/r4" && !strings.HasPrefix(decoded, "/r4/") {
			t.Fatalf("accepted %q, path %q is not under /r4", raw, decoded)
		}
		for _, seg := range strings.Split(decoded, "/") {
			if seg == "." || seg == ".." || strings.Contains(seg, `\`) {
				t.Fatalf("accepted %q, whose path %q has a dot segment or a backslash", raw, decoded)
			}
		}
		// The URL the client sends is the one it checked.
		again, err := url.Parse(u.String())
		if err != nil || !c.underBase(again) {
			t.Fatalf("accepted %q, but its serialization %q does not parse back under the base", raw, u.String())
		}
	})
}

// FuzzLocalRef parses a reference (subject, result, attachment URL) as pointing at a resource on this source.
// Properties: a local reference has a valid type and id, an absolute one is under the base, and isPatient accepts
// exactly the references to fuzzPatient.
func FuzzLocalRef(f *testing.F) {
	s := sandboxSeeds(f)
	for _, r := range s.references {
		f.Add(strings.Replace(r, "http://sandbox.test/h/fhir", fuzzBase, 1))
	}
	for _, r := range []string{"Patient/" + fuzzPatient, "Patient/" + fuzzPatient + "/_history/2", fuzzBase + "/Patient/" + fuzzPatient,
		"#contained", "urn:uuid:" + fuzzPatient, "https://other.example/r4/Patient/" + fuzzPatient, fuzzBase + "/Patient/x?y=1", "Patient//x"} {
		f.Add(r)
	}
	r := &run{c: fuzzClient(f), patientID: fuzzPatient}
	f.Fuzz(func(t *testing.T, ref string) {
		typ, id, ok := r.localRef(ref)
		if !ok {
			if r.isPatient(ref) {
				t.Fatalf("isPatient(%q) though it is not a local reference", ref)
			}
			return
		}
		if !validType(typ) || !validID(id) {
			t.Fatalf("localRef(%q) = %q, %q", ref, typ, id)
		}
		if strings.Contains(ref, "://") {
			u, err := url.Parse(ref)
			if err != nil || !r.c.underBase(u) {
				t.Fatalf("absolute reference %q outside the base taken as local", ref)
			}
		} else if strings.Count(ref, "/") != 1 && strings.Count(ref, "/") != 3 {
			t.Fatalf("relative reference %q of unexpected shape taken as local", ref)
		}
		if r.isPatient(ref) != (typ == TypePatient && id == fuzzPatient) {
			t.Fatalf("isPatient(%q) disagrees with localRef", ref)
		}
	})
}
