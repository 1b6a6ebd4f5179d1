package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"secondlook/internal/syncbuf"
	"strconv"
	"strings"
	"testing"
	"time"
)

type syncBuffer = syncbuf.Buffer

// startSandbox runs `secondlook sandbox` in-process on a free loopback port and returns its FHIR base.
func startSandbox(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runSandbox(ctx, append([]string{"--addr", "127.0.0.1:0", "--no-auth"}, args...), &out, &errOut)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("sandbox exited %d: %s", code, errOut.String())
			}
		case <-time.After(10 * time.Second):
			t.Error("sandbox did not stop")
		}
	})
	re := regexp.MustCompile(`(http://127\.0\.0\.1:\d+/hospital/fhir)`)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		select {
		case code := <-done:
			t.Fatalf("sandbox exited %d: %s", code, errOut.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatal("sandbox did not print its base URL")
	return ""
}

func TestSandboxCommandServesMetadataAndPages(t *testing.T) {
	base := startSandbox(t, "--data", "../../testdata/synthea")
	resp, err := http.Get(base + "/metadata")
	if err != nil {
		t.Fatal(err)
	}
	var cs struct {
		ResourceType string `json:"resourceType"`
		FHIRVersion  string `json:"fhirVersion"`
	}
	err = json.NewDecoder(resp.Body).Decode(&cs)
	resp.Body.Close()
	if err != nil || cs.ResourceType != "CapabilityStatement" || cs.FHIRVersion != "4.0.1" {
		t.Fatalf("metadata: %+v, %v", cs, err)
	}
	// The pages of DiagnosticReport?patient=ID&_count=10 are exactly the patient's reports.
	const patient = "0ce18c7d-fd78-46d9-81b5-8bed231c337a"
	want := bundleIDs(t, "../../testdata/synthea/Todd315_Stamm704_0ce18c7d-fd78-46d9-81b5-8bed231c337a.json", "DiagnosticReport")
	got := map[string]int{}
	next := base + "/DiagnosticReport?patient=" + patient + "&_count=10"
	pages := 0
	for next != "" && pages < 10 {
		pages++
		resp, err := http.Get(next)
		if err != nil {
			t.Fatal(err)
		}
		var b struct {
			Type  string `json:"type"`
			Entry []struct {
				Resource struct {
					ResourceType string `json:"resourceType"`
					ID           string `json:"id"`
				} `json:"resource"`
			} `json:"entry"`
			Link []struct {
				Relation string `json:"relation"`
				URL      string `json:"url"`
			} `json:"link"`
		}
		err = json.NewDecoder(resp.Body).Decode(&b)
		resp.Body.Close()
		if err != nil || b.Type != "searchset" {
			t.Fatalf("page %d: type %q, %v", pages, b.Type, err)
		}
		if len(b.Entry) > 10 {
			t.Errorf("page %d has %d entries, _count=10", pages, len(b.Entry))
		}
		next = ""
		for _, l := range b.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
		for _, e := range b.Entry {
			got[e.Resource.ResourceType+"/"+e.Resource.ID]++
		}
	}
	if pages != 2 {
		t.Errorf("%d pages for 19 reports at 10 a page", pages)
	}
	if len(got) != len(want) {
		t.Errorf("got %d distinct reports, want %d", len(got), len(want))
	}
	for k, n := range got {
		if !want[strings.TrimPrefix(k, "DiagnosticReport/")] || n != 1 {
			t.Errorf("%s returned %d times; in the patient's bundle: %v", k, n, want[strings.TrimPrefix(k, "DiagnosticReport/")])
		}
	}
}

func TestSandboxRefusesNonLoopback(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := runSandbox(context.Background(), []string{"--addr", "0.0.0.0:0"}, &out, &errOut); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
}

// TestFetchEverySyntheaPatient runs `secondlook fetch` against the sandbox for every shared patient and compares
// the NDJSON files with the patient's source bundle.
func TestFetchEverySyntheaPatient(t *testing.T) {
	base := startSandbox(t, "--data", "../../testdata/synthea")
	files, err := filepath.Glob("../../testdata/synthea/*_*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 11 {
		t.Fatalf("%d patient bundles", len(files))
	}
	for _, f := range files {
		patient := bundleIDs(t, f, "Patient")
		if len(patient) != 1 {
			t.Fatalf("%s: %d patients", f, len(patient))
		}
		var id string
		for k := range patient {
			id = k
		}
		t.Run(filepath.Base(f)[:12], func(t *testing.T) {
			dir := t.TempDir()
			var out, errOut bytes.Buffer
			code := dispatch(context.Background(), []string{"fetch", "--base", base, "--patient", id, "--out", dir}, &out, &errOut)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			for _, typ := range []string{"DiagnosticReport", "ImagingStudy", "Condition"} {
				want := bundleIDs(t, f, typ)
				got := ndjsonIDs(t, filepath.Join(dir, typ+".ndjson"))
				if !sameSet(want, got) {
					t.Errorf("%s: got %d, want %d", typ, len(got), len(want))
				}
			}
			if got := ndjsonIDs(t, filepath.Join(dir, "Observation.ndjson")); !sameSet(resultIDs(t, f), got) {
				t.Errorf("Observation: got %d, want the %d results", len(got), len(resultIDs(t, f)))
			}
			m := regexp.MustCompile(`HTTP requests: (\d+)`).FindStringSubmatch(out.String())
			if m == nil {
				t.Fatalf("no request count in output:\n%s", out.String())
			}
			if n, _ := strconv.Atoi(m[1]); n < 4 {
				t.Errorf("%d requests reported", n)
			}
		})
	}
}

func TestFetchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"fetch"},
		{"fetch", "--patient", "x", "--out", "/tmp/x"},
		{"fetch", "--base", "http://127.0.0.1:1/fhir", "--source", "a", "--patient", "x", "--out", "/tmp/x"},
		{"fetch", "--base", "http://127.0.0.1:1/fhir", "--out", "/tmp/x"},
	} {
		var out, errOut bytes.Buffer
		if code := dispatch(context.Background(), args, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	var out, errOut bytes.Buffer
	if code := dispatch(context.Background(), []string{"nope"}, &out, &errOut); code != 2 {
		t.Errorf("unknown command: exit %d", code)
	}
}

func bundleIDs(t *testing.T, file, typ string) map[string]bool {
	t.Helper()
	var b struct {
		Entry []struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
				ID           string `json:"id"`
			} `json:"resource"`
		} `json:"entry"`
	}
	readJSON(t, file, &b)
	out := map[string]bool{}
	for _, e := range b.Entry {
		if e.Resource.ResourceType == typ {
			out[e.Resource.ID] = true
		}
	}
	return out
}

func resultIDs(t *testing.T, file string) map[string]bool {
	t.Helper()
	var b struct {
		Entry []struct {
			Resource struct {
				Result []struct {
					Reference string `json:"reference"`
				} `json:"result"`
			} `json:"resource"`
		} `json:"entry"`
	}
	readJSON(t, file, &b)
	out := map[string]bool{}
	for _, e := range b.Entry {
		for _, r := range e.Resource.Result {
			out[strings.TrimPrefix(r.Reference, "urn:uuid:")] = true
		}
	}
	return out
}

func readJSON(t *testing.T, file string, v any) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatal(err)
	}
}

func ndjsonIDs(t *testing.T, file string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	f, err := os.Open(file)
	if os.IsNotExist(err) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			var res struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(line, &res); err != nil {
				t.Fatalf("%s: line is not JSON: %v", file, err)
			}
			if out[res.ID] {
				t.Errorf("%s: %s twice", file, res.ID)
			}
			out[res.ID] = true
		}
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// TestFetchFromConfiguredSource runs fetch --source against a config file, with an environment override, and
// checks that a bad config is reported with every problem and exit 1.
func TestFetchFromConfiguredSource(t *testing.T) {
	base := startSandbox(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "secondlook.yaml")
	yaml := "sources:\n  - id: sandbox-hospital\n    name: Sandbox\n    kind: hospital\n    fhir_base_url: " + base +
		"\n    auth:\n      method: none\n    resource_types: [Condition]\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SECONDLOOK_SOURCES_SANDBOX_HOSPITAL_CONCURRENCY", "2")
	out := filepath.Join(dir, "out")
	var stdout, stderr bytes.Buffer
	code := dispatch(context.Background(), []string{"fetch", "--config", cfg, "--source", "sandbox-hospital",
		"--patient", "0ce18c7d-fd78-46d9-81b5-8bed231c337a", "--out", out}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if got := ndjsonIDs(t, filepath.Join(out, "Condition.ndjson")); len(got) != 6 {
		t.Errorf("%d Conditions, want 6", len(got))
	}
	if _, err := os.Stat(filepath.Join(out, "DiagnosticReport.ndjson")); !os.IsNotExist(err) {
		t.Errorf("DiagnosticReport.ndjson written though the source's resource_types exclude it")
	}

	bad := "sources:\n  - id: Bad_ID\n    kind: clinic\n    fhir_base_url: ftp://x\n"
	if err := os.WriteFile(cfg, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	code = dispatch(context.Background(), []string{"fetch", "--config", cfg, "--source", "x", "--patient", "p", "--out", out}, &stdout, &stderr)
	if code != 1 || strings.Count(stderr.String(), "\n") < 4 {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and every problem listed", code, stderr.String())
	}
}
