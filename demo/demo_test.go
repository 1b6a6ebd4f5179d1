package demo

import (
	"bytes"
	"context"
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
