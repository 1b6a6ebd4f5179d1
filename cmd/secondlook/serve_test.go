package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"secondlook/caller/callertest"
	"secondlook/sandbox"
	"secondlook/store"
)

// TestServe runs `secondlook serve` from a config file against a sandbox hospital and a test token issuer: it
// comes up, answers health and readiness, accepts a review from a registered EHR, and shuts down cleanly.
func TestServe(t *testing.T) {
	if os.Getenv("REDIS_URL") == "" {
		t.Setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
	}
	if rdb, err := store.Open(context.Background(), os.Getenv("REDIS_URL")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no Redis: %v (.ci/run starts one)", err)
		}
		t.Skipf("no Redis at REDIS_URL or 127.0.0.1:6379: %v", err)
	} else {
		_ = rdb.Close()
	}
	sb, err := sandbox.New(sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hospital := httptest.NewServer(sb.Handler())
	defer hospital.Close()
	is := callertest.NewIssuer(t)
	collector := newCollector(t)
	t.Setenv("SL_OTEL_AUTH", "Bearer collector-token")
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	sigPath := write("sig.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	oldKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	oldDER, _ := x509.MarshalPKCS8PrivateKey(oldKey)
	oldPath := write("old.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: oldDER}))
	secret := func() string { b := make([]byte, 32); _, _ = rand.Read(b); return base64.StdEncoding.EncodeToString(b) }
	t.Setenv("SL_TOKEN_KEY", secret())
	t.Setenv("SL_DEID_KEY", secret())
	t.Setenv("SL_CSRF", secret())
	t.Setenv("SL_CLIENT_SECRET", "s3cret-for-test")
	cfg := `
log: {level: info, format: json}
server:
  addr: 127.0.0.1:0
  metrics_addr: 127.0.0.1:0
  public_url: http://127.0.0.1:9
redis:
  url: ` + os.Getenv("REDIS_URL") + `
  prefix: "serve-test-` + strings.ToLower(rand.Text()[:8]) + `:"
keys:
  token_encryption: [{id: t1, secret: "env:SL_TOKEN_KEY"}]
  signing: [{id: s1, private_key: "file:` + sigPath + `"}, {id: s0, private_key: "file:` + oldPath + `"}]
  signing_current: s1
  deid: {id: d1, secret: "env:SL_DEID_KEY"}
  csrf: "env:SL_CSRF"
callers:
  issuers:
    - id: test
      url: ` + is.URL + `
      audience: https://gateway.test
      clients:
        - {id: ehr-1, name: Test EHR, kind: ehr}
        - {id: onco, name: Test Oncology, kind: provider}
  rate_limit: {requests_per_second: 0.5, burst: 3}
sources:
  - id: hospital
    name: Sandbox Hospital
    kind: hospital
    fhir_base_url: ` + hospital.URL + `/hospital/fhir
    auth: {client_id: secondlook, method: client_secret_basic, client_secret: "env:SL_CLIENT_SECRET"}
tracing:
  enabled: true
  endpoint: ` + collector.URL + `
  headers: [{name: Authorization, value: "env:SL_OTEL_AUTH"}]
`
	cfgPath := write("secondlook.yaml", []byte(cfg))

	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- runServe(ctx, []string{"--config", cfgPath}, &stdout, &stderr) }()
	re := regexp.MustCompile(`"msg":"gateway listening","addr":"(127\.0\.0\.1:\d+)"`)
	var base string
	for deadline := time.Now().Add(20 * time.Second); base == "" && time.Now().Before(deadline); {
		if m := re.FindStringSubmatch(stderr.String()); m != nil {
			base = "http://" + m[1]
			break
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d: %s", code, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if base == "" {
		t.Fatalf("serve did not come up: %s", stderr.String())
	}
	for _, p := range []string{"/healthz", "/readyz", "/openapi.yaml", "/.well-known/jwks.json"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
	// The current and the retired signing key are both published.
	if resp, err := http.Get(base + "/.well-known/jwks.json"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), `"kid":"s1"`) || !strings.Contains(string(b), `"kid":"s0"`) {
			t.Errorf("jwks lacks a signing key: %s", b)
		}
	}
	// Request headers are bounded (MaxHeaderBytes, 64 KiB): many headers, or one huge one, are refused before any
	// handler runs.
	for name, pad := range map[string]func(h http.Header){
		"2000 headers": func(h http.Header) {
			for i := range 2000 {
				h.Set("X-Pad-"+strconv.Itoa(i), strings.Repeat("x", 40))
			}
		},
		"one 100 KB header": func(h http.Header) { h.Set("X-Pad", strings.Repeat("x", 100<<10)) },
	} {
		req, _ := http.NewRequest("GET", base+"/healthz", nil)
		pad(req.Header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("%s: %d, want 431", name, resp.StatusCode)
		}
	}
	// Metrics are on their own listener, never on the public one.
	if resp, err := http.Get(base + "/metrics"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics on the public listener: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	mm := regexp.MustCompile(`"msg":"metrics listening","addr":"(127\.0\.0\.1:\d+)"`).FindStringSubmatch(stderr.String())
	if mm == nil {
		t.Fatalf("no metrics listener: %s", stderr.String())
	}
	if resp, err := http.Get("http://" + mm[1] + "/metrics"); err != nil || resp.StatusCode != 200 {
		t.Errorf("/metrics on the metrics listener: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	req, _ := http.NewRequest("POST", base+"/api/v1/reviews", strings.NewReader(`{"sources":[{"source":"hospital"}],"provider":"onco","question":"q?"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+is.Token(t, "ehr-1", "https://gateway.test", nil))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("create review: %d", resp.StatusCode)
	}
	// The configured per-client rate (burst 3) holds: the fourth quick request of one provider is refused.
	tok := is.Token(t, "onco", "https://gateway.test", nil)
	var statuses []int
	for range 5 {
		req, _ := http.NewRequest("GET", base+"/api/v1/packets", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	if !slices.Contains(statuses, http.StatusTooManyRequests) || statuses[0] != http.StatusOK {
		t.Errorf("statuses %v: want 200 first and a 429 past the configured burst of 3", statuses)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exited %d after SIGTERM-like cancel: %s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not shut down")
	}
	if strings.Contains(stderr.String(), "s3cret-for-test") || strings.Contains(stderr.String(), os.Getenv("SL_TOKEN_KEY")) {
		t.Error("a secret reached the log")
	}
	// The spans were flushed to the collector on shutdown, with the configured header.
	exports := collector.exports()
	if len(exports) == 0 {
		t.Fatal("no spans reached the collector")
	}
	all := strings.Join(exports, "")
	for _, want := range []string{"Authorization: Bearer collector-token", "POST /api/v1/reviews", "GET /readyz", "secondlook"} {
		if !strings.Contains(all, want) {
			t.Errorf("the collector did not receive %q", want)
		}
	}
}

// TestServeRejectsBadConfig reports every problem at once and exits 1 without starting.
func TestServeRejectsBadConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(p, []byte("server: {addr: nowhere}\nbogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut syncBuffer
	if code := runServe(context.Background(), []string{"--config", p}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(errOut.String(), "bogus: line 2: unknown key") || !strings.Contains(errOut.String(), "server.addr") {
		t.Errorf("want every problem listed, got:\n%s", errOut.String())
	}
}
