package fhir_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"secondlook/fhir"
	"secondlook/sandbox"
)

const todd = "0ce18c7d-fd78-46d9-81b5-8bed231c337a" // 19 DiagnosticReports, 1 ImagingStudy, 6 Conditions

func retrieveTodd(t *testing.T, c *fhir.Client, types ...string) (*fhir.Record, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return c.Retrieve(ctx, fhir.Query{PatientID: todd, Types: types})
}

// assertNoPHI fails when an error message carries the patient's id or the server's URL.
func assertNoPHI(t *testing.T, h *hospital, err error) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for _, s := range []string{todd, "Stamm", "Todd315", h.srv.URL} {
		if strings.Contains(msg, s) {
			t.Errorf("error %q contains %q", msg, s)
		}
	}
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name   string
		fault  sandbox.Fault
		opts   func(*fhir.Options)
		check  func(t *testing.T, h *hospital, rec *fhir.Record, err error, elapsed time.Duration)
		types  []string
		faults []sandbox.Fault
	}{
		{
			name:  "Retry-After honoured on 429",
			fault: sandbox.Fault{Path: "DiagnosticReport", Times: 1, Status: 429, RetryAfter: "1"},
			check: func(t *testing.T, _ *hospital, rec *fhir.Record, err error, elapsed time.Duration) {
				if err != nil {
					t.Fatal(err)
				}
				if elapsed < time.Second {
					t.Errorf("finished in %s, before the 1 s Retry-After", elapsed)
				}
				if rec.Stats.Retries != 1 {
					t.Errorf("retries = %d, want 1", rec.Stats.Retries)
				}
			},
			types: []string{"DiagnosticReport"},
		},
		{
			name:  "Retry-After longer than the client waits is not cut short",
			fault: sandbox.Fault{Path: "Condition", Status: 503, RetryAfter: "120"},
			check: func(t *testing.T, h *hospital, _ *fhir.Record, err error, _ time.Duration) {
				var oe *fhir.OutcomeError
				if !errors.As(err, &oe) || oe.StatusCode != 503 || oe.RetryAfter != "120" {
					t.Fatalf("err = %v, want the 503 with its Retry-After", err)
				}
				if n := h.rec.count("Condition"); n != 1 {
					t.Errorf("Condition tried %d times, want 1: the server asked for 120 s", n)
				}
			},
			types: []string{"Condition"},
		},
		{
			name:  "503 retried",
			fault: sandbox.Fault{Path: "Condition", Times: 2, Status: 503},
			check: kept("Condition", 6, 2, ""),
			types: []string{"Condition"},
		},
		{
			name: "502 and 504 retried, network reset retried",
			faults: []sandbox.Fault{
				{Path: "Condition", Times: 1, Status: 502},
				{Path: "Condition", Times: 1, Status: 504},
				{Path: "Condition", Times: 1, TruncateAfter: 10},
			},
			check: func(t *testing.T, _ *hospital, rec *fhir.Record, err error, _ time.Duration) {
				if err != nil {
					t.Fatal(err)
				}
				if rec.Stats.Retries != 3 {
					t.Errorf("retries %d, want 3", rec.Stats.Retries)
				}
			},
			opts:  func(o *fhir.Options) { o.Retry.MaxAttempts = 4 },
			types: []string{"Condition"},
		},
		{
			name:  "400 not retried",
			fault: sandbox.Fault{Path: "Condition", Status: 400},
			check: func(t *testing.T, h *hospital, _ *fhir.Record, err error, _ time.Duration) {
				var oe *fhir.OutcomeError
				if !errors.As(err, &oe) || oe.StatusCode != 400 {
					t.Fatalf("err = %v, want an OutcomeError 400", err)
				}
				if n := h.rec.count("Condition"); n != 1 {
					t.Errorf("Condition searched %d times, want 1", n)
				}
				if len(oe.Issues) == 0 {
					t.Errorf("OperationOutcome issues not parsed")
				}
			},
			types: []string{"Condition"},
		},
		{
			name:  "5xx storm gives up after max attempts",
			fault: sandbox.Fault{Path: "Condition", Status: 503},
			opts:  func(o *fhir.Options) { o.Retry.MaxAttempts = 3 },
			check: func(t *testing.T, h *hospital, _ *fhir.Record, err error, _ time.Duration) {
				var oe *fhir.OutcomeError
				if !errors.As(err, &oe) || oe.StatusCode != 503 {
					t.Fatalf("err = %v, want 503", err)
				}
				if n := h.rec.count("Condition"); n != 3 {
					t.Errorf("Condition tried %d times, want 3", n)
				}
			},
			types: []string{"Condition"},
		},
		{
			name:  "per-request timeout",
			fault: sandbox.Fault{Path: "Condition", Latency: 3 * time.Second},
			opts: func(o *fhir.Options) {
				o.RequestTimeout = 200 * time.Millisecond
				o.Retry.MaxAttempts = 2
			},
			check: func(t *testing.T, _ *hospital, _ *fhir.Record, err error, elapsed time.Duration) {
				if err == nil || !strings.Contains(err.Error(), "timed out") {
					t.Fatalf("err = %v, want a timeout", err)
				}
				if elapsed > 2*time.Second {
					t.Errorf("took %s; the request timeout is 200ms", elapsed)
				}
			},
			types: []string{"Condition"},
		},
		{
			name:  "stalled body cut by the request timeout",
			fault: sandbox.Fault{Path: "Condition", SlowBody: 300 * time.Millisecond},
			opts: func(o *fhir.Options) {
				o.RequestTimeout = 250 * time.Millisecond
				o.Retry.MaxAttempts = 1
			},
			check: func(t *testing.T, _ *hospital, _ *fhir.Record, err error, _ time.Duration) {
				if err == nil || !strings.Contains(err.Error(), "timed out") {
					t.Fatalf("err = %v, want a timeout", err)
				}
			},
			types: []string{"Condition"},
		},
		{
			name:  "truncated JSON gives a clear error",
			fault: sandbox.Fault{Path: "Condition", TruncateAfter: 200},
			opts:  func(o *fhir.Options) { o.Retry.MaxAttempts = 2 },
			check: func(t *testing.T, _ *hospital, _ *fhir.Record, err error, _ time.Duration) {
				if err == nil || !strings.Contains(err.Error(), "search Condition") ||
					!(strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "truncated")) {
					t.Fatalf("err = %v, want a truncated-response error naming the search", err)
				}
			},
			types: []string{"Condition"},
		},
		{
			name: "complete but cut JSON is not retried",
			fault: sandbox.Fault{Path: "Condition", Rewrite: func(b []byte) []byte {
				return b[:len(b)/2]
			}},
			check: func(t *testing.T, _ *hospital, _ *fhir.Record, err error, _ time.Duration) {
				if !errors.Is(err, fhir.ErrInvalidResponse) || !strings.Contains(err.Error(), "truncated JSON") {
					t.Fatalf("err = %v, want truncated JSON", err)
				}
			},
			types: []string{"Condition"},
		},
		{
			name: "next link to another host refused",
			fault: sandbox.Fault{Path: "DiagnosticReport", Rewrite: rewriteBundle(func(b map[string]any) {
				setLink(b, "next", strings.Replace(link(b, "next"), "127.0.0.1", "127.0.0.2", 1))
			})},
			check: func(t *testing.T, h *hospital, _ *fhir.Record, err error, _ time.Duration) {
				if !errors.Is(err, fhir.ErrForeignURL) {
					t.Fatalf("err = %v, want ErrForeignURL", err)
				}
				if n := h.rec.count("DiagnosticReport"); n != 1 {
					t.Errorf("%d DiagnosticReport requests, want 1 (the first page only)", n)
				}
			},
			types: []string{"DiagnosticReport"},
		},
		{
			name: "next link looping back refused",
			fault: sandbox.Fault{Path: "DiagnosticReport", Rewrite: rewriteBundle(func(b map[string]any) {
				setLink(b, "next", link(b, "self")) // next points at the page itself
			})},
			check: func(t *testing.T, _ *hospital, _ *fhir.Record, err error, _ time.Duration) {
				if !errors.Is(err, fhir.ErrPagingLoop) {
					t.Fatalf("err = %v, want ErrPagingLoop", err)
				}
			},
			types: []string{"DiagnosticReport"},
		},
		{
			name:  "page cap reached is an error, not truncation",
			opts:  func(o *fhir.Options) { o.PageSize = 5; o.Limits.MaxPages = 2 },
			check: limitCheck("max_pages"),
			types: []string{"DiagnosticReport"},
		},
		{
			name:  "resource cap",
			opts:  func(o *fhir.Options) { o.Limits.MaxResources = 10 },
			check: limitCheck("max_resources"),
			types: []string{"DiagnosticReport"},
		},
		{
			name:  "body size cap",
			opts:  func(o *fhir.Options) { o.Limits.MaxBodyBytes = 4096 },
			check: limitCheck("max_body_bytes"),
			types: []string{"DiagnosticReport"},
		},
		{
			name:  "retrieval byte budget",
			opts:  func(o *fhir.Options) { o.Limits.MaxBytes = 16 << 10 },
			check: limitCheck("max_bytes"),
			types: []string{"DiagnosticReport"},
		},
		{
			name: "very deep JSON",
			fault: sandbox.Fault{Path: "Condition", ContentType: "application/fhir+json", Body: []byte(
				`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Condition","id":"x","subject":{"reference":"Patient/` + todd + `"},"note":` +
					strings.Repeat("[", 500) + strings.Repeat("]", 500) + `}}]}`)},
			check: limitCheck("max_json_depth"),
			types: []string{"Condition"},
		},
		{
			name:  "HTML error page with status 200",
			fault: sandbox.Fault{Path: "Condition", ContentType: "text/html", Body: []byte("<html><body>Service unavailable</body></html>")},
			check: func(t *testing.T, _ *hospital, _ *fhir.Record, err error, _ time.Duration) {
				if !errors.Is(err, fhir.ErrInvalidResponse) {
					t.Fatalf("err = %v, want ErrInvalidResponse", err)
				}
			},
			types: []string{"Condition"},
		},
		{
			name:  "invalid UTF-8",
			fault: sandbox.Fault{Path: "Condition", Rewrite: func(b []byte) []byte { return bytes.Replace(b, []byte(`"Condition"`), []byte("\"Cond\xffition\""), 1) }},
			check: func(t *testing.T, _ *hospital, _ *fhir.Record, err error, _ time.Duration) {
				if !errors.Is(err, fhir.ErrInvalidResponse) {
					t.Fatalf("err = %v, want ErrInvalidResponse", err)
				}
			},
			types: []string{"Condition"},
		},
		{
			name: "resource about another patient dropped and reported",
			opts: func(o *fhir.Options) { o.PageSize = 5 },
			fault: sandbox.Fault{Path: "Condition", Times: 1, Rewrite: func(b []byte) []byte {
				loc := regexp.MustCompile(`"reference"\s*:\s*"Patient/` + todd + `"`).FindIndex(b)
				if loc == nil {
					return b
				}
				return append(append(append([]byte{}, b[:loc[0]]...), `"reference":"Patient/someone-else"`...), b[loc[1]:]...)
			}},
			check: kept("Condition", 5, -1, fhir.WarnSubjectMismatch),
			types: []string{"Condition"},
		},
		{
			name: "resource naming no patient dropped: a subject under another spelling is not a subject",
			opts: func(o *fhir.Options) { o.PageSize = 5 },
			fault: sandbox.Fault{Path: "Condition", Times: 1, Rewrite: func(b []byte) []byte {
				return bytes.Replace(b, []byte(`"subject"`), []byte(`"SUBJECT"`), 1)
			}},
			check: kept("Condition", 5, -1, fhir.WarnSubjectMismatch),
			types: []string{"Condition"},
		},
		{
			name:  "duplicate resources across pages kept once",
			opts:  func(o *fhir.Options) { o.PageSize = 5 },
			fault: sandbox.Fault{Path: "DiagnosticReport", Rewrite: duplicateFirstEntry},
			check: kept("DiagnosticReport", 19, -1, ""),
			types: []string{"DiagnosticReport"},
		},
		{
			name:  "searchset that claims more than it has: the pages decide, not total",
			opts:  func(o *fhir.Options) { o.PageSize = 5 },
			fault: sandbox.Fault{Path: "DiagnosticReport", Rewrite: rewriteBundle(func(b map[string]any) { b["total"] = 5000 })},
			check: kept("DiagnosticReport", 19, -1, ""), // the 19 the pages hold
			types: []string{"DiagnosticReport"},
		},
		{
			name:  "searchset that claims less than it has: every page is still read",
			opts:  func(o *fhir.Options) { o.PageSize = 5 },
			fault: sandbox.Fault{Path: "DiagnosticReport", Rewrite: rewriteBundle(func(b map[string]any) { b["total"] = 1 })},
			check: kept("DiagnosticReport", 19, -1, ""),
			types: []string{"DiagnosticReport"},
		},
		{
			name:  "burst of 429s ridden out",
			fault: sandbox.Fault{Path: "Condition", Times: 3, Status: 429, RetryAfter: "0"},
			opts:  func(o *fhir.Options) { o.Retry.MaxAttempts = 5 },
			check: kept("Condition", 6, 3, ""),
			types: []string{"Condition"},
		},
		{
			name:  "JSON under a wrong content type refused",
			fault: sandbox.Fault{Path: "Condition", ContentType: "text/plain"},
			check: func(t *testing.T, _ *hospital, _ *fhir.Record, err error, _ time.Duration) {
				if !errors.Is(err, fhir.ErrInvalidResponse) || !strings.Contains(err.Error(), "content type") {
					t.Fatalf("err = %v, want ErrInvalidResponse for the content type", err)
				}
			},
			types: []string{"Condition"},
		},
		{
			name:  "slow body within the request timeout completes",
			fault: sandbox.Fault{Path: "Condition", SlowBody: 20 * time.Millisecond, ChunkSize: 4096},
			check: kept("Condition", 6, -1, ""),
			types: []string{"Condition"},
		},
		{
			name:  "server that is not R4",
			fault: sandbox.Fault{Path: "metadata", Rewrite: func(b []byte) []byte { return bytes.Replace(b, []byte(`"4.0.1"`), []byte(`"5.0.0"`), 1) }},
			check: func(t *testing.T, _ *hospital, _ *fhir.Record, err error, _ time.Duration) {
				if !errors.Is(err, fhir.ErrUnsupportedVersion) {
					t.Fatalf("err = %v, want ErrUnsupportedVersion", err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHospital(t, nil)
			if !reflect.ValueOf(tc.fault).IsZero() {
				h.site.Faults().Add(tc.fault)
			}
			for _, f := range tc.faults {
				h.site.Faults().Add(f)
			}
			c := h.client(t, tc.opts)
			start := time.Now()
			rec, err := retrieveTodd(t, c, tc.types...)
			tc.check(t, h, rec, err, time.Since(start))
			assertNoPHI(t, h, err)
		})
	}
}

func limitCheck(limit string) func(t *testing.T, h *hospital, rec *fhir.Record, err error, _ time.Duration) {
	return func(t *testing.T, _ *hospital, _ *fhir.Record, err error, _ time.Duration) {
		var le *fhir.LimitError
		if !errors.As(err, &le) || le.Limit != limit {
			t.Fatalf("err = %v, want LimitError %s", err, limit)
		}
	}
}

// duplicateFirstEntry repeats a page's first entry at its end, as a server does when data shifts between pages.
var duplicateFirstEntry = rewriteBundle(func(b map[string]any) {
	if entries, ok := b["entry"].([]any); ok && len(entries) > 0 {
		b["entry"] = append(entries, entries[0])
	}
})

// rewriteBundle decodes a response body, lets f change it, and encodes it again.
func rewriteBundle(f func(map[string]any)) func([]byte) []byte {
	return func(body []byte) []byte {
		var b map[string]any
		if json.Unmarshal(body, &b) != nil {
			return body
		}
		f(b)
		out, err := json.Marshal(b)
		if err != nil {
			return body
		}
		return out
	}
}

func link(b map[string]any, rel string) string {
	links, _ := b["link"].([]any)
	for _, l := range links {
		if m, ok := l.(map[string]any); ok && m["relation"] == rel {
			s, _ := m["url"].(string)
			return s
		}
	}
	return ""
}

func setLink(b map[string]any, rel, url string) {
	links, _ := b["link"].([]any)
	for _, l := range links {
		if m, ok := l.(map[string]any); ok && m["relation"] == rel {
			m["url"] = url
			return
		}
	}
	b["link"] = append(links, map[string]any{"relation": rel, "url": url})
}

// TestTokens checks the bearer token goes to the source on every request, that a 401 triggers one refresh and a
// retry, and that a redirect to another host is refused so the token cannot follow it.
func TestTokens(t *testing.T) {
	h := newHospital(t, nil)
	ts := &refreshingToken{token: "old"}
	// Require the current token, as an authorization server would after rotating it.
	guard := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer new" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		h.rec.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(guard)
	defer srv.Close()
	c, err := fhir.NewClient(fhir.Options{BaseURL: srv.URL + "/hospital/fhir", Tokens: ts})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := retrieveTodd(t, c, "Condition"); err != nil {
		t.Fatal(err)
	}
	if ts.refreshes != 1 {
		t.Errorf("refreshes = %d, want 1", ts.refreshes)
	}
	// A retrieval's own token source takes precedence over the client's.
	own := &refreshingToken{token: "new"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c2, err := fhir.NewClient(fhir.Options{BaseURL: srv.URL + "/hospital/fhir", Tokens: &refreshingToken{token: "wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Retrieve(ctx, fhir.Query{PatientID: todd, Types: []string{"Condition"}, Tokens: own}); err != nil {
		t.Fatal(err)
	}
	if own.refreshes != 0 {
		t.Errorf("the query's token was refreshed %d times; it was valid", own.refreshes)
	}
	for _, a := range h.rec.auth {
		if a != "Bearer new" {
			t.Errorf("request with Authorization %q", a)
		}
	}

	// A redirect to another host is not followed.
	var leaked bool
	other := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, _ *http.Request) {
		leaked = true
	}))
	defer other.Close()
	redir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
	}))
	defer redir.Close()
	c, err = fhir.NewClient(fhir.Options{BaseURL: redir.URL + "/hospital/fhir", Tokens: ts})
	if err != nil {
		t.Fatal(err)
	}
	_, err = retrieveTodd(t, c, "Condition")
	if !errors.Is(err, fhir.ErrForeignURL) || leaked {
		t.Errorf("err = %v, other host reached: %v", err, leaked)
	}
}

type refreshingToken struct {
	token     string
	refreshes int
}

func (r *refreshingToken) Token(context.Context) (string, error) { return r.token, nil }
func (r *refreshingToken) Refresh(_ context.Context, _ string) (string, error) {
	r.refreshes++
	r.token = "new"
	return r.token, nil
}

// TestNetworkErrorHasNoURL checks that a connection failure's message names the operation but not the URL (which
// carries the patient id).
func TestNetworkErrorHasNoURL(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL + "/hospital/fhir"
	srv.Close()
	c, err := fhir.NewClient(fhir.Options{BaseURL: base, Retry: fhir.Retry{MaxAttempts: 2, BaseDelay: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Retrieve(context.Background(), fhir.Query{PatientID: todd})
	if err == nil {
		t.Fatal("no error from a closed server")
	}
	if strings.Contains(err.Error(), srv.URL) || strings.Contains(err.Error(), todd) {
		t.Errorf("error carries the URL: %v", err)
	}
}

// kept checks a retrieval that succeeded with n resources of typ; with retries >= 0, after exactly that many
// retries; with a warning code, reporting it.
func kept(typ string, n, retries int, warning string) func(*testing.T, *hospital, *fhir.Record, error, time.Duration) {
	return func(t *testing.T, _ *hospital, rec *fhir.Record, err error, _ time.Duration) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if got := len(rec.Resources[typ]); got != n {
			t.Errorf("%d %s, want %d", got, typ, n)
		}
		if retries >= 0 && rec.Stats.Retries != retries {
			t.Errorf("retries %d, want %d", rec.Stats.Retries, retries)
		}
		if warning != "" && !hasWarning(rec, warning) {
			t.Errorf("warnings %+v, want %s", rec.Warnings, warning)
		}
	}
}
