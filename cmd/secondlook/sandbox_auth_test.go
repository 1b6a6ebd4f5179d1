package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestSandboxCommandAuthByDefault runs `secondlook sandbox` without --no-auth: it prints the demo client, serves
// SMART discovery and refuses FHIR requests without a token.
func TestSandboxCommandAuthByDefault(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() { done <- runSandbox(ctx, []string{"--addr", "127.0.0.1:0"}, &out, &errOut) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("sandbox did not stop")
		}
	})
	re := regexp.MustCompile(`(http://127\.0\.0\.1:\d+/hospital/fhir) `)
	var base string
	for deadline := time.Now().Add(30 * time.Second); base == "" && time.Now().Before(deadline); {
		if m := re.FindStringSubmatch(out.String()); m != nil && strings.Contains(out.String(), "demo client") {
			base = m[1]
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if base == "" {
		t.Fatalf("sandbox did not start: %s %s", out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "client_id="+demoClientID) || !strings.Contains(out.String(), "client_secret="+demoClientSecret) {
		t.Errorf("start-up output does not show the demo client: %s", out.String())
	}
	get := func(u string) (int, []byte) {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	status, body := get(base + "/.well-known/smart-configuration")
	var sc map[string]any
	if status != http.StatusOK || json.Unmarshal(body, &sc) != nil || sc["token_endpoint"] != strings.TrimSuffix(base, "/fhir")+"/auth/token" {
		t.Errorf("smart-configuration: %d %s", status, body)
	}
	if status, _ := get(base + "/Patient"); status != http.StatusUnauthorized {
		t.Errorf("FHIR search without a token: %d, want 401", status)
	}
	if status, body := get(base + "/metadata"); status != http.StatusOK || !bytes.Contains(body, []byte("SMART-on-FHIR")) {
		t.Errorf("metadata: %d", status)
	}
}
