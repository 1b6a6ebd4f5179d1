package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"secondlook"
	"secondlook/caller"
	"secondlook/caller/callertest"
	"secondlook/review"
	"secondlook/store"
	"secondlook/store/storetest"
)

const audience = "https://gateway.test"

type apiEnv struct {
	srv    *httptest.Server
	store  *store.Store
	issuer *callertest.Issuer
	logs   *bytes.Buffer
	// redisCPU, where set (the load environment), reads the Redis server's CPU time.
	redisCPU func(context.Context) time.Duration
}

func newAPIEnv(t *testing.T) *apiEnv {
	t.Helper()
	st, _ := storetest.RealRedis(t)
	return newAPIEnvWith(t, st)
}

func newAPIEnvWith(t testing.TB, st *store.Store, update ...func(*ReviewsConfig)) *apiEnv {
	var logs bytes.Buffer
	e := newAPIEnvLogging(t, st, &logs, update...)
	e.logs = &logs
	return e
}

// newAPIEnvLogging is newAPIEnvWith logging to w (the load tests discard their logs, which would otherwise grow
// by a line per request for the whole run).
func newAPIEnvLogging(t testing.TB, st *store.Store, w io.Writer, update ...func(*ReviewsConfig)) *apiEnv {
	t.Helper()
	is := callertest.NewIssuer(t)
	v, err := caller.New([]caller.Issuer{{URL: is.URL, Audience: audience, Clients: []caller.Client{
		{ID: "ehr-1", Kind: caller.EHR}, {ID: "ehr-2", Kind: caller.EHR},
		{ID: "onco", Kind: caller.Provider}, {ID: "cardio", Kind: caller.Provider},
	}}}, caller.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{
		Logger:  slog.New(slog.NewJSONHandler(w, nil)),
		OpenAPI: secondlook.OpenAPI,
		Reviews: func() *ReviewsConfig {
			rc := &ReviewsConfig{
				Callers: v, Store: st, PublicURL: "https://gateway.test",
				Catalog: review.Catalog{
					Sources:   func(id string) bool { return id == "hospital" || id == "lab" },
					Providers: func(id string) bool { return id == "onco" || id == "cardio" },
					Types:     []string{"DiagnosticReport", "ImagingStudy", "Condition", "DocumentReference"},
				},
			}
			for _, u := range update {
				u(rc)
			}
			return rc
		}(),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return &apiEnv{srv: srv, store: st, issuer: is, logs: &bytes.Buffer{}}
}

// do sends a request as client (or anonymously when client is ""), validated against openapi.yaml.
func (e *apiEnv) do(t *testing.T, client, method, path string, body string, header map[string]string, skipRequestCheck bool) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if client != "" {
		req.Header.Set("Authorization", "Bearer "+e.issuer.Token(t, client, audience, nil))
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	hc := &http.Client{Transport: &validating{t: t, next: &http.Transport{DisableCompression: true}, skipRequest: skipRequestCheck}}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

const validReview = `{"sources":[{"source":"hospital","patient":"0ce18c7d-fd78-46d9-81b5-8bed231c337a"},{"source":"lab"}],
 "provider":"onco","resourceTypes":["DiagnosticReport","Condition"],"lookBackDays":730,
 "question":"Todd315 Stamm704, 999-35-5722: is the forearm fracture healed?"}`

func TestReviewLifecycleAPI(t *testing.T) {
	e := newAPIEnv(t)
	resp, body := e.do(t, "ehr-1", "POST", "/api/v1/reviews", validReview, nil, false)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	var r reviewView
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	if r.State != review.AwaitingConsent || resp.Header.Get("Location") != "/api/v1/reviews/"+r.ID || !strings.HasSuffix(r.ConsentURL, "/consent/"+r.ID) {
		t.Errorf("created %+v, Location %q", r, resp.Header.Get("Location"))
	}
	if bytes.Contains(body, []byte("Stamm704")) || strings.Contains(e.logs.String(), "Stamm704") || strings.Contains(e.logs.String(), "999-35") {
		t.Error("the clinical question (PHI) was echoed or logged")
	}
	resp, _ = e.do(t, "ehr-1", "GET", "/api/v1/reviews/"+r.ID, "", nil, false)
	if resp.StatusCode != 200 {
		t.Errorf("own review: %d", resp.StatusCode)
	}
	// Who may see it: only its requester.
	for _, tc := range []struct {
		client string
		status int
	}{{"ehr-2", 404}, {"onco", 403}, {"", 401}} {
		resp, _ := e.do(t, tc.client, "GET", "/api/v1/reviews/"+r.ID, "", nil, false)
		if resp.StatusCode != tc.status {
			t.Errorf("%q reading the review: %d, want %d", tc.client, resp.StatusCode, tc.status)
		}
		if tc.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
			t.Error("401 without WWW-Authenticate")
		}
	}
	resp, body = e.do(t, "ehr-1", "GET", "/api/v1/reviews/"+r.ID+"/audit", "", nil, false)
	if resp.StatusCode != 200 || bytes.Count(body, []byte(`"AuditEvent"`)) < 3 {
		t.Errorf("audit: %d %s", resp.StatusCode, body)
	}
	if !bytes.Contains(body, []byte(`"ehr-2"`)) {
		t.Error("the other EHR's denied read is not in the trail")
	}
}

func TestReviewRequestErrors(t *testing.T) {
	e := newAPIEnv(t)
	tests := []struct {
		name, body, ctype string
		status            int
		fields            int
	}{
		{"every problem at once", `{"sources":[{"source":"nowhere"},{"source":"hospital","patient":"../x"}],"provider":"nobody","resourceTypes":["Claim"],"lookBackDays":-3,"question":""}`, "application/json", 422, 6},
		{"malformed JSON", `{"sources":[`, "application/json", 400, 0},
		{"unknown field", `{"sources":[{"source":"hospital"}],"provider":"onco","question":"q","admin":true}`, "application/json", 400, 0},
		{"two documents", validReview + validReview, "application/json", 400, 0},
		{"wrong content type", validReview, "text/plain", 415, 0},
		{"too large", `{"question":"` + strings.Repeat("x", 70<<10) + `"}`, "application/json", 413, 0},
	}
	for _, tc := range tests {
		resp, body := e.do(t, "ehr-1", "POST", "/api/v1/reviews", tc.body, map[string]string{"Content-Type": tc.ctype}, true)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d, want %d: %s", tc.name, resp.StatusCode, tc.status, body)
			continue
		}
		var p Problem
		if err := json.Unmarshal(body, &p); err != nil {
			t.Errorf("%s: not a problem: %s", tc.name, body)
		}
		if len(p.Errors) != tc.fields {
			t.Errorf("%s: %d field errors, want %d: %+v", tc.name, len(p.Errors), tc.fields, p.Errors)
		}
		if strings.Contains(string(body), "nowhere") || strings.Contains(string(body), "../x") {
			t.Errorf("%s: problem echoes the caller's values: %s", tc.name, body)
		}
	}
	ids, _ := e.store.ProviderReviews(context.Background(), "onco")
	if len(ids) != 0 {
		t.Errorf("%d reviews stored by rejected requests", len(ids))
	}
}

// readyReview stores a review with a packet, as assembly would leave it.
func readyReview(t testing.TB, e *apiEnv, provider string) (*review.Review, []byte) {
	t.Helper()
	ctx := context.Background()
	r, _ := review.New("ehr-1", review.Request{Sources: []review.SourceRequest{{Source: "hospital"}}, Provider: provider, Question: "q"}, time.Now(), time.Hour)
	if err := e.store.CreateReview(ctx, r); err != nil {
		t.Fatal(err)
	}
	for _, to := range []review.State{review.Consented, review.Assembling, review.Ready} {
		from := map[review.State]review.State{review.Consented: review.AwaitingConsent, review.Assembling: review.Consented, review.Ready: review.Assembling}[to]
		if _, err := e.store.MoveReview(ctx, r.ID, []review.State{from}, to, ""); err != nil {
			t.Fatal(err)
		}
	}
	bundle := []byte(`{"resourceType":"Bundle","type":"document","entry":[{"resource":{"resourceType":"Composition"}}],"signature":{"sigFormat":"application/jose"}}`)
	if _, err := e.store.SavePacket(ctx, store.StoredPacket{ID: "p-" + r.ID, ReviewID: r.ID, Provider: provider, ETag: "e1", Created: time.Now(), Report: []byte(`{"profile":"safe-harbor"}`)}, bundle, r.ExpiresAt); err != nil {
		t.Fatal(err)
	}
	return r, bundle
}

func TestPacketAccess(t *testing.T) {
	e := newAPIEnv(t)
	r, bundle := readyReview(t, e, "onco")
	path := "/api/v1/packets/" + r.ID

	resp, body := e.do(t, "onco", "GET", "/api/v1/packets", "", nil, false)
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(r.ID)) {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do(t, "cardio", "GET", "/api/v1/packets", "", nil, false)
	if resp.StatusCode != 200 || bytes.Contains(body, []byte(r.ID)) {
		t.Errorf("another provider's list shows the packet: %s", body)
	}
	resp, body = e.do(t, "onco", "GET", path, "", nil, false)
	if resp.StatusCode != 200 || !bytes.Equal(body, bundle) || resp.Header.Get("Content-Type") != "application/fhir+json" || resp.Header.Get("ETag") != `"e1"` {
		t.Fatalf("get: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("ETag"))
	}
	resp, _ = e.do(t, "onco", "GET", path, "", map[string]string{"If-None-Match": `"e1"`}, false)
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("conditional GET: %d", resp.StatusCode)
	}
	resp, body = e.do(t, "onco", "GET", path, "", map[string]string{"Accept-Encoding": "gzip"}, false)
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("gzip not served")
	} else if zr, err := gzip.NewReader(bytes.NewReader(body)); err != nil {
		t.Error(err)
	} else if plain, _ := io.ReadAll(zr); !bytes.Equal(plain, bundle) {
		t.Error("gzip body is not the packet")
	}
	resp, body = e.do(t, "onco", "GET", path+"/report", "", nil, false)
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("safe-harbor")) {
		t.Errorf("report: %d %s", resp.StatusCode, body)
	}
	for _, tc := range []struct {
		client, path string
		status       int
	}{
		{"cardio", path, 404}, {"cardio", path + "/report", 404}, {"ehr-1", path, 403}, {"", path, 401},
		{"onco", "/api/v1/packets/aaaaaaaaaaaaaaaaaaaaaaaaaa", 404},
	} {
		resp, _ := e.do(t, tc.client, "GET", tc.path, "", nil, false)
		if resp.StatusCode != tc.status {
			t.Errorf("%q GET %s: %d, want %d", tc.client, tc.path, resp.StatusCode, tc.status)
		}
	}
	resp, _ = e.do(t, "onco", "GET", "/api/v1/packets/..%2f..%2fetc", "", nil, true)
	if resp.StatusCode != 404 {
		t.Errorf("traversal id: %d", resp.StatusCode)
	}

	// Withdrawal cuts access at once.
	if _, err := e.store.MoveReview(context.Background(), r.ID, []review.State{review.Ready}, review.Withdrawn, "withdrawn by the patient"); err != nil {
		t.Fatal(err)
	}
	resp, _ = e.do(t, "onco", "GET", path, "", nil, false)
	if resp.StatusCode != http.StatusGone {
		t.Errorf("after withdrawal: %d, want 410", resp.StatusCode)
	}
	resp, body = e.do(t, "onco", "GET", "/api/v1/packets", "", nil, false)
	if resp.StatusCode != http.StatusOK || bytes.Contains(body, []byte(r.ID)) {
		t.Errorf("list after withdrawal: %d %s; want 200 without the withdrawn packet", resp.StatusCode, body)
	}
}

func TestOpenAPIServed(t *testing.T) {
	e := newAPIEnv(t)
	resp, body := e.do(t, "", "GET", "/openapi.yaml", "", nil, false)
	if resp.StatusCode != 200 || !bytes.Equal(body, secondlook.OpenAPI) {
		t.Errorf("openapi.yaml: %d", resp.StatusCode)
	}
}

func TestCallerRateLimit(t *testing.T) {
	st, _ := storetest.RealRedis(t)
	e := newAPIEnvWith(t, st, func(rc *ReviewsConfig) { rc.Limiter, rc.CallerRate, rc.CallerBurst = st, 1, 2 })
	codes := []int{}
	for range 3 {
		resp, _ := e.do(t, "onco", "GET", "/api/v1/packets", "", nil, false)
		codes = append(codes, resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != http.StatusTooManyRequests {
		t.Errorf("statuses %v, want 200 200 429", codes)
	}
	// Another caller has its own bucket.
	if resp, _ := e.do(t, "cardio", "GET", "/api/v1/packets", "", nil, false); resp.StatusCode != 200 {
		t.Errorf("another caller: %d", resp.StatusCode)
	}
}

// TestLogsNameTheReview: a request's log line names the review it was about once the handler found it, and never
// an id that names no review (a caller can put anything in the path).
func TestLogsNameTheReview(t *testing.T) {
	e := newAPIEnv(t)
	r, _ := readyReview(t, e, "onco")
	if resp, _ := e.do(t, "ehr-1", "GET", "/api/v1/reviews/"+r.ID, "", nil, false); resp.StatusCode != 200 {
		t.Fatalf("review: %d", resp.StatusCode)
	}
	if resp, _ := e.do(t, "onco", "GET", "/api/v1/packets/"+r.ID, "", nil, false); resp.StatusCode != 200 {
		t.Fatalf("packet: %d", resp.StatusCode)
	}
	missing, err := review.NewID()
	if err != nil {
		t.Fatal(err)
	}
	if resp, _ := e.do(t, "ehr-1", "GET", "/api/v1/reviews/"+missing, "", nil, false); resp.StatusCode != 404 {
		t.Fatalf("missing review: %d", resp.StatusCode)
	}
	named := 0
	for _, line := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		if !strings.Contains(line, `"msg":"http request"`) {
			continue
		}
		if strings.Contains(line, `"review":"`+r.ID+`"`) {
			named++
		}
		if strings.Contains(line, missing) {
			t.Errorf("a log line names an id that is no review: %s", line)
		}
	}
	if named != 2 {
		t.Errorf("%d request lines name the review, want 2:\n%s", named, e.logs.String())
	}
}
