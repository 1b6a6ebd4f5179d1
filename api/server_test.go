package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

func newTestServer(t *testing.T, update func(*Config), routes func(e *echo.Echo)) (*httptest.Server, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	cfg := Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), BodyLimit: "1K"}
	if update != nil {
		update(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if routes != nil {
		routes(s.e)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv, &logs
}

func readProblem(t *testing.T, resp *http.Response) Problem {
	t.Helper()
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q, want application/problem+json", ct)
	}
	var p Problem
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatalf("problem body: %v", err)
	}
	if p.Status != resp.StatusCode || p.Title == "" {
		t.Errorf("problem %+v does not match status %d", p, resp.StatusCode)
	}
	return p
}

func TestErrorsAreProblems(t *testing.T) {
	const secret = "Todd315-Stamm704-999-12-3456"
	srv, logs := newTestServer(t, nil, func(e *echo.Echo) {
		e.POST("/echo", func(c echo.Context) error {
			b, err := io.ReadAll(c.Request().Body)
			if err != nil {
				return err
			}
			return c.Blob(http.StatusOK, "text/plain", b)
		})
		e.GET("/panic", func(echo.Context) error { panic("patient " + secret) })
		e.GET("/fail", func(echo.Context) error { return errors.New("store unreachable") })
	})
	tests := []struct {
		method, path string
		body         string
		status       int
	}{
		{"GET", "/nowhere?patient=" + secret, "", 404},
		{"DELETE", "/healthz", "", 405},
		{"POST", "/echo", strings.Repeat("x", 2048), 413},
		{"GET", "/panic", "", 500},
		{"GET", "/fail", "", 500},
	}
	for _, tc := range tests {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
		}
		p := readProblem(t, resp)
		if strings.Contains(p.Detail+p.Title, secret) || strings.Contains(p.Detail, "goroutine") || strings.Contains(p.Detail, "unreachable") {
			t.Errorf("%s %s: problem leaks internals: %+v", tc.method, tc.path, p)
		}
		for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"} {
			if resp.Header.Get(h) == "" {
				t.Errorf("%s %s: no %s header", tc.method, tc.path, h)
			}
		}
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("log carries request data:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "store unreachable") {
		t.Errorf("the 500's cause was not logged server-side:\n%s", logs.String())
	}
}

type component string

func (c component) Error() string     { return "dial redis://user:pw@10.0.0.1: refused" }
func (c component) Component() string { return string(c) }

func TestHealth(t *testing.T) {
	var failing error
	srv, _ := newTestServer(t, func(c *Config) {
		c.Ready = func(context.Context) error { return failing }
		c.JWKS = func() ([]byte, error) { return []byte(`{"keys":[]}`), nil }
	}, nil)
	for _, tc := range []struct {
		path   string
		err    error
		status int
	}{
		{"/healthz", nil, 200},
		{"/readyz", nil, 200},
		{"/readyz", component("redis"), 503},
		{"/.well-known/jwks.json", nil, 200},
	} {
		failing = tc.err
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d, want %d", tc.path, resp.StatusCode, tc.status)
		}
		if strings.Contains(string(body), "pw@") {
			t.Errorf("%s leaks a connection string: %s", tc.path, body)
		}
		if tc.status == 503 && !strings.Contains(string(body), "redis unavailable") {
			t.Errorf("%s: %s", tc.path, body)
		}
	}
}

func TestCORS(t *testing.T) {
	srv, _ := newTestServer(t, func(c *Config) { c.CORSOrigins = []string{"https://ehr.example.org"} }, nil)
	for _, tc := range []struct {
		origin string
		allow  bool
	}{{"https://ehr.example.org", true}, {"https://evil.example", false}} {
		req, _ := http.NewRequest("OPTIONS", srv.URL+"/healthz", nil)
		req.Header.Set("Origin", tc.origin)
		req.Header.Set("Access-Control-Request-Method", "GET")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Access-Control-Allow-Origin") == tc.origin; got != tc.allow {
			t.Errorf("origin %s: allowed %v, want %v", tc.origin, got, tc.allow)
		}
	}
	// Without configuration, CORS is off.
	srv2, _ := newTestServer(t, nil, nil)
	req, _ := http.NewRequest("GET", srv2.URL+"/healthz", nil)
	req.Header.Set("Origin", "https://ehr.example.org")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Error("CORS answered though none is configured")
	}
}

// TestSecurityHeaders: pages carry the full set with the strict page policy; API responses the API set; and a
// handler that adds to a shared header value changes its own response only, never the next one's.
func TestSecurityHeaders(t *testing.T) {
	srv, _ := newTestServer(t, nil, func(e *echo.Echo) {
		e.GET("/api/v1/probe", func(c echo.Context) error {
			c.Response().Header().Add("X-Content-Type-Options", "extra")
			return c.JSON(http.StatusOK, map[string]string{})
		})
	})
	get := func(path string) http.Header {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header
	}
	page := get("/healthz")
	for _, f := range pageHeaders {
		if got := page.Values(f.name); len(got) != 1 || got[0] != f.value[0] {
			t.Errorf("page %s = %q, want %q", f.name, got, f.value[0])
		}
	}
	if !strings.Contains(page.Get("Content-Security-Policy"), "form-action 'self'") {
		t.Errorf("page CSP %q is not the page policy", page.Get("Content-Security-Policy"))
	}
	for range 2 {
		api := get("/api/v1/probe")
		if got := api.Values("X-Content-Type-Options"); len(got) != 2 || got[0] != "nosniff" {
			t.Errorf("API X-Content-Type-Options = %q, want nosniff then the handler's own", got)
		}
		for _, name := range []string{"Content-Security-Policy", "X-Frame-Options", "Referrer-Policy", "Cross-Origin-Resource-Policy"} {
			if api.Get(name) == "" {
				t.Errorf("API response has no %s", name)
			}
		}
		if csp := api.Get("Content-Security-Policy"); csp != "default-src 'none'; frame-ancestors 'none'" {
			t.Errorf("API CSP = %q", csp)
		}
	}
	for _, f := range append(slices.Clone(pageHeaders), apiHeaders...) {
		if len(f.value) != 1 || cap(f.value) != 1 {
			t.Errorf("%s: shared value has len %d cap %d", f.name, len(f.value), cap(f.value))
		}
	}
}
