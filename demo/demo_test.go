package demo

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestWalkthrough runs `secondlook demo --walkthrough` in-process: the EHR creates the review with a Backend
// Services token, the patient consents at both sandbox sites over HTTP, the packet is assembled from both, and the
// provider downloads it, verifies its signature and finds no PHI.
func TestWalkthrough(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, err := Start(ctx, Options{Addr: "127.0.0.1:0", SandboxAddr: "127.0.0.1:0", RedisURL: os.Getenv("REDIS_URL")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var out bytes.Buffer
	if err := d.Walkthrough(ctx, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"verified its signature", "none found", "review state: ready"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("walkthrough output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestSplitKeepsEveryResourceOnce(t *testing.T) {
	raw, err := os.ReadFile("../testdata/synthea/Todd315_Stamm704_0ce18c7d-fd78-46d9-81b5-8bed231c337a.json")
	if err != nil {
		t.Fatal(err)
	}
	h, p, err := split(raw)
	if err != nil {
		t.Fatal(err)
	}
	count := func(b []byte, s string) int { return bytes.Count(b, []byte(s)) }
	if count(h, `"resourceType":"Patient"`)+count(h, `"resourceType": "Patient"`) != 1 || count(p, `"resourceType":"Patient"`)+count(p, `"resourceType": "Patient"`) != 1 {
		t.Error("both sites must hold the Patient")
	}
	if count(p, `"ImagingStudy"`) != 0 || count(h, `"LAB"`) != 0 {
		t.Error("imaging belongs to the hospital, laboratory reports to the province")
	}
}

// TestMetricsAfterWalkthrough scrapes /metrics after the whole flow: the families are there with the expected
// counts, and no label carries a patient id, a name, a review id or a path.
func TestMetricsAfterWalkthrough(t *testing.T) {
	d, _ := startDemo(t)
	var out bytes.Buffer
	if err := d.Walkthrough(context.Background(), &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	resp, err := http.Get(d.GatewayURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`secondlook_assemblies_total{outcome="ready"} 1`,
		`secondlook_consent_events_total{event="granted"} 2`,
		`secondlook_http_requests_total{method="GET",route="/api/v1/packets/:id",status="200"}`,
		`secondlook_upstream_requests_total{interaction="search",outcome="2xx",source="hospital",type="DiagnosticReport"}`,
		`secondlook_upstream_requests_total{interaction="search",outcome="2xx",source="province",type="DiagnosticReport"}`,
		`secondlook_assembly_stage_duration_seconds_count{stage="de-identifying"} 1`,
		`secondlook_assembly_jobs_pending 0`,
		`secondlook_reviews{state="ready"} 1`,
		`secondlook_reviews{state="awaiting-consent"} 0`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, secret := range []string{Patient, "Todd315", "Stamm704", d.ReviewID} {
		if strings.Contains(text, secret) {
			t.Errorf("metrics contain %q", secret)
		}
	}
}
