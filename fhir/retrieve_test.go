package fhir_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"secondlook/fhir"
	"secondlook/sandbox"
)

// TestRetrieveEverySyntheaPatient checks, for every shared Synthea patient, that retrieval returns exactly the
// DiagnosticReports, ImagingStudies and Conditions of the source bundle and every Observation a report names in
// result: once with _include, once through the fallback (batched _id searches), once through reads alone.
func TestRetrieveEverySyntheaPatient(t *testing.T) {
	want := expectations(t)
	modes := []struct {
		name    string
		site    func(*sandbox.SiteOptions)
		include bool
	}{
		{name: "include", include: true},
		{name: "no-include", site: func(o *sandbox.SiteOptions) { o.DisableInclude = true }},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			h := newHospital(t, m.site)
			c := h.client(t, nil)
			for _, exp := range want {
				rec, err := c.Retrieve(context.Background(), fhir.Query{PatientID: exp.patientID})
				if err != nil {
					t.Fatalf("patient %d: %v", len(exp.names), err)
				}
				if rec.Patient.ID != exp.patientID || rec.Patient.Type != "Patient" {
					t.Errorf("Patient = %s, want the requested patient", rec.Patient.Key())
				}
				for _, typ := range []string{"DiagnosticReport", "ImagingStudy", "Condition"} {
					if diff := cmp.Diff(exp.byType[typ], ids(rec.Resources[typ]), cmpopts.EquateEmpty()); diff != "" {
						t.Errorf("%s of %s (-want +got):\n%s", typ, exp.patientID, diff)
					}
				}
				if diff := cmp.Diff(exp.results, ids(rec.Resources["Observation"]), cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("result Observations of %s (-want +got):\n%s", exp.patientID, diff)
				}
				if len(rec.Warnings) != 0 {
					t.Errorf("warnings for %s: %+v", exp.patientID, rec.Warnings)
				}
				for _, res := range rec.Resources["DiagnosticReport"] {
					if !json.Valid(res.Raw) || !strings.Contains(string(res.Raw), `"Patient/`+exp.patientID+`"`) {
						t.Errorf("DiagnosticReport raw JSON is not the server's resource")
					}
				}
			}
		})
	}
}

// TestRetrieveFallbackUsesBatches checks the path without _include: the missing result Observations are fetched by
// _id searches of at most 50 ids, not one read each, and by reads when the server cannot search by _id.
func TestRetrieveFallbackUsesBatches(t *testing.T) {
	h := newHospital(t, func(o *sandbox.SiteOptions) { o.DisableInclude = true })
	// Antonia30 has 105 DiagnosticReports naming a few hundred Observations.
	const patient = "fe07e69a-4d6d-4e11-a675-de69f62de5f3"
	c := h.client(t, func(o *fhir.Options) { o.PageSize = 200 })
	rec, err := c.Retrieve(context.Background(), fhir.Query{PatientID: patient})
	if err != nil {
		t.Fatal(err)
	}
	obs := len(rec.Resources["Observation"])
	if obs == 0 {
		t.Fatal("no Observations retrieved")
	}
	searches, reads := 0, 0
	h.rec.mu.Lock()
	for _, p := range h.rec.paths {
		switch {
		case p == "Observation":
			searches++
		case strings.HasPrefix(p, "Observation/"):
			reads++
		}
	}
	h.rec.mu.Unlock()
	if reads != 0 || searches == 0 || searches > (obs+49)/50+1 {
		t.Errorf("%d Observations took %d _id searches and %d reads; want about %d searches and no reads", obs, searches, reads, (obs+49)/50)
	}
	if rec.Stats.Requests != len(h.rec.paths) {
		t.Errorf("Stats.Requests = %d, server saw %d", rec.Stats.Requests, len(h.rec.paths))
	}
}

// TestRetrieveAttachmentsByURL checks that attachments a server serves as Binary URLs on its own base are fetched,
// and that their content is the content the report had inline.
func TestRetrieveAttachmentsByURL(t *testing.T) {
	h := newHospital(t, func(o *sandbox.SiteOptions) { o.ExternalizeAttachments = true })
	c := h.client(t, nil)
	const patient = "0ce18c7d-fd78-46d9-81b5-8bed231c337a" // Todd315: 17 notes
	rec, err := c.Retrieve(context.Background(), fhir.Query{PatientID: patient, Types: []string{"DiagnosticReport", "DocumentReference"}})
	if err != nil {
		t.Fatal(err)
	}
	var want int
	for _, e := range expectations(t) {
		if e.patientID == patient {
			want = e.binaries
		}
	}
	bins := rec.Resources["Binary"]
	if len(bins) != want || want == 0 {
		t.Fatalf("got %d Binary resources, want %d", len(bins), want)
	}
	for _, b := range bins {
		var bin struct {
			ContentType string `json:"contentType"`
			Data        string `json:"data"`
		}
		if err := json.Unmarshal(b.Raw, &bin); err != nil || bin.Data == "" || !strings.HasPrefix(bin.ContentType, "text/plain") {
			t.Errorf("Binary %s: contentType %q, %d bytes of data, err %v", b.ID, bin.ContentType, len(bin.Data), err)
		}
	}
	// Too small a limit: the attachments are left out and reported, the rest of the record stands.
	c = h.client(t, func(o *fhir.Options) { o.Limits.MaxAttachmentBytes = 64 })
	rec, err = c.Retrieve(context.Background(), fhir.Query{PatientID: patient, Types: []string{"DiagnosticReport"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Resources["Binary"]) != 0 || len(rec.Resources["DiagnosticReport"]) == 0 {
		t.Errorf("with a 64-byte attachment limit: %d Binaries, %d reports", len(rec.Resources["Binary"]), len(rec.Resources["DiagnosticReport"]))
	}
	if !hasWarning(rec, fhir.WarnAttachmentTooLarge) {
		t.Errorf("no %s warning: %+v", fhir.WarnAttachmentTooLarge, rec.Warnings)
	}
}

func hasWarning(rec *fhir.Record, code string) bool {
	for _, w := range rec.Warnings {
		if w.Code == code && w.Count > 0 {
			return true
		}
	}
	return false
}

// TestConcurrencyBound checks that no more requests are in flight at the source than the client allows, and that
// concurrency actually happens when allowed.
func TestConcurrencyBound(t *testing.T) {
	for _, n := range []int{1, 3} {
		h := newHospital(t, nil)
		h.site.Faults().Add(sandbox.Fault{Latency: 20 * time.Millisecond})
		c := h.client(t, func(o *fhir.Options) { o.Concurrency = n; o.PageSize = 5 })
		if _, err := c.Retrieve(context.Background(), fhir.Query{PatientID: "0ce18c7d-fd78-46d9-81b5-8bed231c337a"}); err != nil {
			t.Fatal(err)
		}
		if got := h.rec.maxInFlight.Load(); got != int64(n) {
			t.Errorf("concurrency %d: at most %d requests in flight, want exactly %d", n, got, n)
		}
	}
}

// TestCapabilitiesCached checks that /metadata is read once per client, however many retrievals.
func TestCapabilitiesCached(t *testing.T) {
	h := newHospital(t, nil)
	c := h.client(t, nil)
	for range 3 {
		if _, err := c.Retrieve(context.Background(), fhir.Query{PatientID: "0ce18c7d-fd78-46d9-81b5-8bed231c337a", Types: []string{"Condition"}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := h.rec.count("metadata"); n != 1 {
		t.Errorf("metadata read %d times, want 1", n)
	}
}

func TestRetrieveRejectsBadQuery(t *testing.T) {
	h := newHospital(t, nil)
	c := h.client(t, nil)
	for _, q := range []fhir.Query{
		{PatientID: ""},
		{PatientID: "../Observation"},
		{PatientID: "a?b=c"},
		{PatientID: strings.Repeat("a", 65)},
		{PatientID: "x", Types: []string{"Observation"}},
		{PatientID: "x", Types: []string{"Claim"}},
	} {
		if _, err := c.Retrieve(context.Background(), q); err == nil {
			t.Errorf("Retrieve(%+v) succeeded", q)
		}
	}
	if len(h.rec.paths) != 0 {
		t.Errorf("bad queries reached the server: %v", h.rec.paths)
	}
}

func TestUnknownPatient(t *testing.T) {
	h := newHospital(t, nil)
	c := h.client(t, nil)
	_, err := c.Retrieve(context.Background(), fhir.Query{PatientID: "no-such-patient-4711"})
	if !errors.Is(err, fhir.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	if strings.Contains(err.Error(), "4711") {
		t.Errorf("error names the patient id: %v", err)
	}
}

// TestDeadlineAndRateLimit checks that the caller's deadline bounds a retrieval even while the server asks for
// retries, and that the rate limit spaces requests out.
func TestDeadlineAndRateLimit(t *testing.T) {
	h := newHospital(t, nil)
	h.site.Faults().Add(sandbox.Fault{Path: "Condition", Status: 429, RetryAfter: "1"})
	c := h.client(t, func(o *fhir.Options) { o.Retry.MaxAttempts = 10 })
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Retrieve(ctx, fhir.Query{PatientID: "0ce18c7d-fd78-46d9-81b5-8bed231c337a", Types: []string{"Condition"}})
	if err == nil {
		t.Fatal("no error under a permanent 429")
	}
	if el := time.Since(start); el > 1600*time.Millisecond {
		t.Errorf("returned after %s; the deadline was 1.5 s", el)
	}
	if n := h.rec.count("Condition"); n != 2 {
		t.Errorf("%d Condition requests within a 1.5 s deadline and Retry-After 1, want 2", n)
	}

	// 10 requests a second with no burst: n requests take at least (n-1)/10 s.
	h = newHospital(t, nil)
	c = h.client(t, func(o *fhir.Options) { o.RateLimit = 10; o.RateBurst = 1 })
	start = time.Now()
	rec, err := c.Retrieve(context.Background(), fhir.Query{PatientID: "0ce18c7d-fd78-46d9-81b5-8bed231c337a"})
	if err != nil {
		t.Fatal(err)
	}
	if least := time.Duration(rec.Stats.Requests-1) * 100 * time.Millisecond; time.Since(start) < least {
		t.Errorf("%d requests in %s at 10/s", rec.Stats.Requests, time.Since(start))
	}
}

// TestRetrieveSince checks the look-back period: reports dated before Since are not retrieved, Conditions all are.
func TestRetrieveSince(t *testing.T) {
	h := newHospital(t, nil)
	c := h.client(t, nil)
	since := time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC)
	rec, err := c.Retrieve(context.Background(), fhir.Query{PatientID: todd, Since: since})
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		Entry []struct {
			Resource struct {
				ResourceType      string `json:"resourceType"`
				ID                string `json:"id"`
				EffectiveDateTime string `json:"effectiveDateTime"`
			} `json:"resource"`
		} `json:"entry"`
	}
	raw, err := os.ReadFile(syntheaDir + "/Todd315_Stamm704_0ce18c7d-fd78-46d9-81b5-8bed231c337a.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, e := range b.Entry {
		if e.Resource.ResourceType != "DiagnosticReport" {
			continue
		}
		at, err := time.Parse(time.RFC3339, e.Resource.EffectiveDateTime)
		if err != nil {
			t.Fatal(err)
		}
		if !at.Before(since) {
			want[e.Resource.ID] = true
		}
	}
	if len(want) == 0 || len(want) == 19 {
		t.Fatalf("test data: %d of 19 reports after %s; pick another date", len(want), since)
	}
	if diff := cmp.Diff(want, ids(rec.Resources["DiagnosticReport"])); diff != "" {
		t.Errorf("reports since %s (-want +got):\n%s", since.Format("2006-01-02"), diff)
	}
	if n := len(rec.Resources["Condition"]); n != 6 {
		t.Errorf("%d Conditions, want all 6", n)
	}
}

func TestRecordBundle(t *testing.T) {
	h := newHospital(t, nil)
	c := h.client(t, nil)
	rec, err := c.Retrieve(context.Background(), fhir.Query{PatientID: todd})
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		ResourceType, Type string
		Entry              []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
		}
	}
	if err := json.Unmarshal(fhir.CollectionBundle([]fhir.Sourced{{BaseURL: h.base, Record: rec}}), &b); err != nil {
		t.Fatal(err)
	}
	n := 1
	for _, l := range rec.Resources {
		n += len(l)
	}
	if b.ResourceType != "Bundle" || b.Type != "collection" || len(b.Entry) != n {
		t.Fatalf("%s %s with %d entries, want %d", b.ResourceType, b.Type, len(b.Entry), n)
	}
	if b.Entry[0].FullURL != h.base+"/Patient/"+todd || !bytes.Equal(b.Entry[0].Resource, rec.Patient.Raw) {
		t.Errorf("first entry %s is not the Patient as served", b.Entry[0].FullURL)
	}
}

// TestSharedLimit checks that the limiter shared across replicas is consulted before every request, and that its
// refusal stops the retrieval.
func TestSharedLimit(t *testing.T) {
	h := newHospital(t, nil)
	var calls atomic.Int64
	c := h.client(t, func(o *fhir.Options) {
		o.SharedLimit = func(context.Context) error { calls.Add(1); return nil }
	})
	rec, err := c.Retrieve(context.Background(), fhir.Query{PatientID: todd})
	if err != nil {
		t.Fatal(err)
	}
	if int(calls.Load()) != rec.Stats.Requests {
		t.Errorf("shared limiter asked %d times for %d requests", calls.Load(), rec.Stats.Requests)
	}
	c = h.client(t, func(o *fhir.Options) {
		o.SharedLimit = func(context.Context) error { return context.DeadlineExceeded }
	})
	if _, err := c.Retrieve(context.Background(), fhir.Query{PatientID: todd}); err == nil {
		t.Error("retrieval went ahead though the shared limiter refused")
	}
}
