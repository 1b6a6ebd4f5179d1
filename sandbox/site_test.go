package sandbox

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/samply/golang-fhir-models/fhir-models/fhir"
)

func defaultFixture(t *testing.T) *fixture {
	t.Helper()
	bundles, err := DefaultBundles()
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(bundles))
	for i := range names {
		names[i] = fmt.Sprintf("seed bundle %d", i)
	}
	return fixtureFrom(t, bundles, names)
}

func TestExternalizeAttachments(t *testing.T) {
	fx := defaultFixture(t)
	ts := newTestServer(t, Options{Sites: []SiteOptions{
		{Name: "epic", Bundles: fx.bundles, ExternalizeAttachments: true},
		{Name: "inline", Bundles: fx.bundles},
	}})
	base := ts.base("epic")

	moved := 0
	for _, c := range []struct {
		typ         string
		attachments func(map[string]any) []map[string]any
	}{
		{"DiagnosticReport", func(r map[string]any) []map[string]any {
			var out []map[string]any
			forms, _ := r["presentedForm"].([]any)
			for _, f := range forms {
				out = append(out, f.(map[string]any))
			}
			return out
		}},
		{"DocumentReference", func(r map[string]any) []map[string]any {
			var out []map[string]any
			contents, _ := r["content"].([]any)
			for _, c := range contents {
				out = append(out, c.(map[string]any)["attachment"].(map[string]any))
			}
			return out
		}},
	} {
		for _, page := range ts.searchAll(t, u(base, c.typ, "patient", toddID, "_count", "50")) {
			for _, e := range entries(t, page) {
				want := fx.expected(c.typ + "/" + e.id).(map[string]any)
				srcAtts := c.attachments(want)
				gotAtts := c.attachments(e.resource)
				if len(srcAtts) != len(gotAtts) {
					t.Fatalf("%s/%s: %d attachments, want %d", c.typ, e.id, len(gotAtts), len(srcAtts))
				}
				for i, src := range srcAtts {
					got := gotAtts[i]
					data, hasData := src["data"].(string)
					if !hasData {
						continue
					}
					moved++
					if _, ok := got["data"]; ok {
						t.Errorf("%s/%s attachment %d still has inline data", c.typ, e.id, i)
					}
					url, _ := got["url"].(string)
					if !strings.HasPrefix(url, base+"/Binary/") {
						t.Errorf("%s/%s attachment %d: url %q, want %s/Binary/<id>", c.typ, e.id, i, url, base)
					}
					if got["contentType"] != src["contentType"] {
						t.Errorf("%s/%s attachment %d: contentType %v, want %v", c.typ, e.id, i, got["contentType"], src["contentType"])
					}
					checkBinary(t, ts, url, src["contentType"].(string), data)
					// Apart from data -> url the resource is unchanged.
					delete(got, "url")
					got["data"] = data
				}
				if diff := cmp.Diff(any(want), any(e.resource)); diff != "" {
					t.Errorf("%s/%s changed beyond the attachment (-want +got):\n%s", c.typ, e.id, diff)
				}
			}
		}
	}
	if moved != 34 {
		t.Errorf("moved %d attachments of Todd's, want 34 (17 reports and 17 documents)", moved)
	}

	// The plain site keeps data inline and has no Binary resources.
	b := decodeSearchset(t, ts.get(t, u(ts.base("inline"), "DocumentReference", "patient", toddID, "_count", "1")))
	if !bytes.Contains(b.Entry[0].Resource, []byte(`"data":"`)) {
		t.Error("inline site lost attachment data")
	}
	if r := ts.get(t, ts.base("inline")+"/Binary/x"); r.status != http.StatusNotFound {
		t.Errorf("inline site Binary read: %d", r.status)
	}
	cs := fetchCapabilities(t, ts, "epic")
	found := false
	for _, res := range cs.Rest[0].Resource {
		found = found || res.Type == "Binary"
	}
	if !found {
		t.Error("externalizing site does not advertise Binary")
	}
}

// checkBinary reads an externalized attachment both ways: as a Binary resource and as raw content.
func checkBinary(t *testing.T, ts *testServer, url, contentType, data string) {
	t.Helper()
	r := ts.do(t, http.MethodGet, url, http.Header{"Accept": {"application/fhir+json"}}, nil)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != fhirJSON {
		t.Fatalf("GET %s as FHIR: %d %q", url, r.status, r.header.Get("Content-Type"))
	}
	bin, err := fhir.UnmarshalBinary(r.body)
	if err != nil {
		t.Fatalf("Binary does not parse: %v", err)
	}
	if bin.ContentType != contentType || bin.Data == nil || *bin.Data != data || bin.Id == nil || !strings.HasSuffix(url, "/"+*bin.Id) {
		t.Errorf("Binary resource at %s: contentType %q id %v, data match %v", url, bin.ContentType, bin.Id, bin.Data != nil && *bin.Data == data)
	}
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, accept := range []string{"", "*/*", contentType} {
		h := http.Header{}
		if accept != "" {
			h.Set("Accept", accept)
		}
		r = ts.do(t, http.MethodGet, url, h, nil)
		if r.status != http.StatusOK || r.header.Get("Content-Type") != contentType || !bytes.Equal(r.body, raw) {
			t.Errorf("GET %s (Accept %q): %d %q, content match %v", url, accept, r.status, r.header.Get("Content-Type"), bytes.Equal(r.body, raw))
		}
	}
}

// TestSitesAreIndependent serves two sites from one server: each has its own data, base URL and request count.
func TestSitesAreIndependent(t *testing.T) {
	fx := defaultFixture(t)
	var todd, antonia [][]byte
	for i, b := range fx.bundles {
		switch {
		case bytes.Contains(b, []byte(toddID)) && !bytes.Contains(b, []byte(antoniaID)):
			todd = append(todd, b)
		case bytes.Contains(b, []byte(antoniaID)):
			antonia = append(antonia, b)
		default:
			todd = append(todd, fx.bundles[i])
			antonia = append(antonia, fx.bundles[i])
		}
	}
	var logs bytes.Buffer
	ts := newTestServer(t, Options{
		Sites: []SiteOptions{
			{Name: "north", Bundles: todd, DefaultPageSize: 5, MaxPageSize: 7},
			{Name: "south", Bundles: antonia},
		},
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	north, south := ts.srv.Site("north"), ts.srv.Site("south")
	if diff := cmp.Diff([]string{toddID}, north.Patients()); diff != "" {
		t.Errorf("north patients (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{antoniaID}, south.Patients()); diff != "" {
		t.Errorf("south patients (-want +got):\n%s", diff)
	}

	b := decodeSearchset(t, ts.get(t, u(ts.base("north"), "Observation", "patient", toddID)))
	if len(b.Entry) != 5 || !strings.HasPrefix(b.Entry[0].FullURL, ts.base("north")+"/Observation/") {
		t.Errorf("north: %d entries (want the site's default page size 5), fullUrl %q", len(b.Entry), b.Entry[0].FullURL)
	}
	b = decodeSearchset(t, ts.get(t, u(ts.base("north"), "Observation", "patient", toddID, "_count", "100")))
	if len(b.Entry) != 7 {
		t.Errorf("north: _count=100 gave %d entries, want the site's MaxPageSize 7", len(b.Entry))
	}
	b = decodeSearchset(t, ts.get(t, u(ts.base("south"), "Observation", "patient", toddID)))
	if b.Total == nil || *b.Total != 0 {
		t.Errorf("south has Todd's observations: total %v", b.Total)
	}
	if r := ts.get(t, ts.base("south")+"/Patient/"+toddID); r.status != http.StatusNotFound {
		t.Errorf("south reads north's patient: %d", r.status)
	}
	ts.get(t, ts.http.URL+"/west/fhir/metadata")
	if n, s := north.Requests(), south.Requests(); n != 2 || s != 2 {
		t.Errorf("Requests: north %d south %d, want 2 and 2", n, s)
	}

	// The request log names neither patients nor identifiers nor the query.
	ts.get(t, u(ts.base("north"), "Patient", "identifier", "http://hl7.org/fhir/sid/us-ssn|999-00-0000", "name", "Todd315"))
	if logs.Len() == 0 {
		t.Fatal("nothing logged")
	}
	for _, secret := range []string{toddID, antoniaID, "999-00-0000", "Todd315", "identifier", "us-ssn"} {
		if bytes.Contains(logs.Bytes(), []byte(secret)) {
			t.Errorf("request log contains %q", secret)
		}
	}
	var line map[string]any
	if err := json.Unmarshal(bytes.SplitN(logs.Bytes(), []byte("\n"), 2)[0], &line); err != nil || line["site"] != "north" || line["interaction"] == nil {
		t.Errorf("log line lacks site or interaction: %v %v", line, err)
	}
}
