package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"secondlook/store"
	"secondlook/store/storetest"
)

// marker is put into every malicious value, so a test can tell whether the gateway echoed it anywhere.
const marker = "zq9MARKERzq9"

func snapshot(t *testing.T, st *store.Store) map[string]string {
	t.Helper()
	snap, err := storetest.Snapshot(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// checkRefused asserts the answer to a malicious request: a 4xx (never a 5xx, never a success), as problem+json,
// echoing neither the marker nor the caller's token.
func checkRefused(t *testing.T, name string, resp *http.Response, body []byte, want int, secrets ...string) {
	t.Helper()
	if want != 0 && resp.StatusCode != want || resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Errorf("%s: status %d, want %d: %.300s", name, resp.StatusCode, want, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s: Content-Type %q, want application/problem+json", name, ct)
	}
	var p Problem
	if err := json.Unmarshal(body, &p); err != nil || p.Status != resp.StatusCode {
		t.Errorf("%s: not a problem for %d: %.300s", name, resp.StatusCode, body)
	}
	for _, s := range append(secrets, marker) {
		if s != "" && strings.Contains(string(body), s) {
			t.Errorf("%s: the answer echoes %.40q", name, s)
		}
		for k, vs := range resp.Header {
			for _, v := range vs {
				if s != "" && strings.Contains(v, s) {
					t.Errorf("%s: header %s echoes %.40q", name, k, s)
				}
			}
		}
	}
}

// send posts body to the review API as ehr-1 with the given content type, outside the OpenAPI check (the requests
// are malformed on purpose).
func (e *apiEnv) send(t *testing.T, method, path, ctype string, body io.Reader, header map[string]string) (*http.Response, []byte, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	tok := e.issuer.Token(t, "ehr-1", audience, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b, tok
}

// TestMaliciousReviewRequests sends review requests built to hurt: too large, malformed, of the wrong type, JSON
// bombs, unknown names. Each gets a clear 4xx problem that echoes nothing, and nothing is stored: no review, no
// index, no audit entry, no queue entry.
func TestMaliciousReviewRequests(t *testing.T) {
	e := newAPIEnv(t)
	const valid = `"sources":[{"source":"hospital"}],"provider":"onco","question":"q"`
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	many := func(item string, n int) string { return strings.TrimSuffix(strings.Repeat(item+",", n), ",") }
	tests := []struct {
		name, ctype, body string
		status            int
	}{
		// Size.
		{"over the review limit", "application/json", `{` + valid + `,"x":"` + strings.Repeat(marker, 6<<10) + `"}`, 413},
		{"over the server's body limit", "application/json", `{"question":"` + strings.Repeat(marker, 200<<10) + `"}`, 413},
		// Malformed.
		{"empty body", "application/json", ``, 400},
		{"truncated", "application/json", `{"sources":[{"source":"` + marker, 400},
		{"not an object", "application/json", `["` + marker + `"]`, 400},
		{"a string", "application/json", `"` + marker + `"`, 400},
		{"trailing garbage", "application/json", `{` + valid + `}` + marker, 400},
		{"byte order mark", "application/json", "\ufeff{" + valid + "}", 400},
		{"invalid UTF-8", "application/json", `{` + valid + `,"question":"` + marker + "\xff\xfe" + `"}`, 400},
		{"unknown field", "application/json", `{` + valid + `,"` + marker + `":true}`, 400},
		{"unknown nested field", "application/json", `{"sources":[{"source":"hospital","` + marker + `":1}],"provider":"onco","question":"q"}`, 400},
		{"field in another case", "application/json", `{"Sources":[{"source":"hospital"}],"provider":"onco","question":"` + marker + `"}`, 400},
		// A second value for a field is ambiguous: a proxy that reads the first would see another request.
		{"duplicate key", "application/json", `{"provider":"cardio",` + valid + `}`, 400},
		{"duplicate nested key", "application/json", `{"sources":[{"source":"lab","source":"hospital"}],"provider":"onco","question":"q"}`, 400},
		// Content type.
		{"text/plain", "text/plain", `{` + valid + `}`, 415},
		{"form", "application/x-www-form-urlencoded", `{` + valid + `}`, 415},
		{"no content type", "", `{` + valid + `}`, 415},
		{"json lookalike", "application/jsonp", `{` + valid + `}`, 415},
		// JSON bombs, within the size limit.
		{"10000 levels of nesting", "application/json", `{"sources":` + nest(10000) + `,"provider":"onco","question":"q"}`, 400},
		{"deep nesting in an unknown field", "application/json", `{` + valid + `,"x":` + nest(10000) + `}`, 400},
		{"20000 sources", "application/json", `{"sources":[` + many(`{}`, 20000) + `],"provider":"onco","question":"q"}`, 422},
		{"4000 resource types", "application/json", `{` + valid + `,"resourceTypes":[` + many(`"`+marker+`"`, 4000) + `]}`, 422},
		{"the same type 4000 times", "application/json", `{` + valid + `,"resourceTypes":[` + many(`"Condition"`, 4000) + `]}`, 422},
		{"a 60 KB question", "application/json", `{"sources":[{"source":"hospital"}],"provider":"onco","question":"` + strings.Repeat(marker, 5000) + `"}`, 422},
		{"a 60 KB provider", "application/json", `{"sources":[{"source":"hospital"}],"provider":"` + strings.Repeat(marker, 5000) + `","question":"q"}`, 422},
		{"a 60 KB patient id", "application/json", `{"sources":[{"source":"hospital","patient":"` + strings.Repeat(marker, 5000) + `"}],"provider":"onco","question":"q"}`, 422},
		{"number 1e999", "application/json", `{` + valid + `,"lookBackDays":1e999}`, 400},
		{"number 2^63", "application/json", `{` + valid + `,"lookBackDays":9223372036854775808}`, 400},
		{"fraction", "application/json", `{` + valid + `,"lookBackDays":1.5}`, 400},
		{"negative look-back", "application/json", `{` + valid + `,"lookBackDays":-1}`, 422},
		// Names the gateway does not know.
		{"unknown source", "application/json", `{"sources":[{"source":"` + marker + `"}],"provider":"onco","question":"q"}`, 422},
		{"unknown provider", "application/json", `{"sources":[{"source":"hospital"}],"provider":"` + marker + `","question":"q"}`, 422},
		{"unknown type", "application/json", `{` + valid + `,"resourceTypes":["` + marker + `"]}`, 422},
		{"a source twice", "application/json", `{"sources":[{"source":"hospital"},{"source":"hospital"}],"provider":"onco","question":"q"}`, 422},
		{"too many sources", "application/json", `{"sources":[` + many(`{"source":"hospital"}`, 11) + `],"provider":"onco","question":"q"}`, 422},
		{"patient id with a path", "application/json", `{"sources":[{"source":"hospital","patient":"../` + marker + `"}],"provider":"onco","question":"q"}`, 422},
		{"provider with a key tag", "application/json", `{"sources":[{"source":"hospital"}],"provider":"{onco}","question":"q"}`, 422},
	}
	before := snapshot(t, e.store)
	for _, tc := range tests {
		resp, body, tok := e.send(t, "POST", "/api/v1/reviews", tc.ctype, strings.NewReader(tc.body), nil)
		checkRefused(t, tc.name, resp, body, tc.status, tok)
		if len(body) > 8<<10 {
			t.Errorf("%s: a %d-byte answer: the problem list must stay bounded", tc.name, len(body))
		}
	}
	// A body sent in chunks, with no length announced, is cut at the limit all the same.
	resp, body, tok := e.send(t, "POST", "/api/v1/reviews", "application/json",
		io.MultiReader(strings.NewReader(`{"question":"`), strings.NewReader(strings.Repeat(marker, 200<<10))), nil)
	checkRefused(t, "chunked over the limit", resp, body, 413, tok)
	if d := storetest.Changes(before, snapshot(t, e.store)); len(d) > 0 {
		t.Errorf("rejected requests stored something:\n%s", strings.Join(d, "\n"))
	}
	// The same environment accepts a valid request, so the refusals above are not an artefact of the set-up.
	if resp, body, _ := e.send(t, "POST", "/api/v1/reviews", "application/json", strings.NewReader(`{`+valid+`}`), nil); resp.StatusCode != http.StatusCreated {
		t.Fatalf("valid request: %d %s", resp.StatusCode, body)
	}
}

// TestMaliciousHeaders: a bearer token too long or malformed is a 401 that echoes nothing; a request id chosen by
// the client is neither reflected nor logged (it is not validated input); and nothing a client sends in a header
// reaches a response header.
func TestMaliciousHeaders(t *testing.T) {
	e := newAPIEnv(t)
	for name, auth := range map[string]string{
		"oversized token":   "Bearer " + strings.Repeat(marker, 1000),
		"three dots":        "Bearer " + marker + "." + marker + "." + marker,
		"basic":             "Basic " + marker,
		"empty bearer":      "Bearer ",
		"token with spaces": "Bearer " + marker + " " + marker,
	} {
		req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/packets", nil)
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		checkRefused(t, name, resp, body, http.StatusUnauthorized)
		if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
			t.Errorf("%s: WWW-Authenticate %q", name, resp.Header.Get("WWW-Authenticate"))
		}
	}

	// A client's request id: the gateway mints its own, in the response and in the log.
	for name, id := range map[string]string{
		"plain":      marker,
		"markup":     "<script>" + marker + "</script>",
		"json":       `","level":"ERROR","msg":"` + marker,
		"long":       strings.Repeat(marker, 400),
		"obs-text":   marker + "\xe9\xff",
		"tab":        marker + "\tX-Injected: 1",
		"a token":    e.issuer.Token(t, "ehr-1", audience, nil) + marker,
		"a uuid-ish": "0ce18c7d-fd78-46d9-81b5-" + marker,
	} {
		before := e.logs.Len()
		resp, body, tok := e.send(t, "GET", "/api/v1/reviews/aaaaaaaaaaaaaaaaaaaaaaaaaa", "", nil, map[string]string{"X-Request-Id": id})
		checkRefused(t, "request id "+name, resp, body, http.StatusNotFound, tok)
		if got := resp.Header.Get("X-Request-Id"); got == "" || got == id {
			t.Errorf("request id %s: answered with X-Request-Id %q", name, got)
		}
		if logged := e.logs.String()[before:]; strings.Contains(logged, marker) {
			t.Errorf("request id %s reached the log: %s", name, logged)
		}
	}

	// CR and LF cannot be sent through net/http; on a raw connection, they end the header line, so an "injected"
	// header is only a request header, and none comes back.
	u, _ := url.Parse(e.srv.URL)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: %s\r\nX-Request-Id: a\rSet-Cookie: %s=1\r\nConnection: close\r\n\r\n", u.Host, marker)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusOK || resp.Header.Get("Set-Cookie") != "" || strings.Contains(string(raw), marker) {
		t.Errorf("bare CR in a header: %d, Set-Cookie %q", resp.StatusCode, resp.Header.Get("Set-Cookie"))
	}
}
