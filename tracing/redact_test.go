package tracing

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"secondlook"
	"secondlook/tracing/tracingtest"
)

// What the spans below carry that must never be exported.
var secrets = []string{
	"0ce18c7d-fd78-46d9-81b5-8bed231c337a", // patient id
	"Todd315", "Stamm704", "999-35-5722", "1944-06-29", "Wiza Extension",
	"code=", "state=", "SplxlOBeZQQYbYS6WxSbIA", "eyJhbGciOi", "Bearer", "access_token",
	"secondlook:{", "Mozilla", "203.0.113.7", "/home/", ".go",
}

// leakySpans records spans the way instrumentation libraries do by default: raw URLs with patient ids and OAuth
// parameters, Redis statements with keys and values, user agents, client addresses, error messages.
func leakySpans(t *testing.T, tp trace.TracerProvider) {
	t.Helper()
	tr := tp.Tracer("test")
	ctx, root := tr.Start(context.Background(), "GET /api/v1/packets/:id", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("http.request.method", "GET"),
			attribute.String("http.route", "/api/v1/packets/:id"),
			attribute.Int("http.response.status_code", 200),
			attribute.String("http.target", "/auth/callback/hospital?code=SplxlOBeZQQYbYS6WxSbIA&state=abc"),
			attribute.String("url.path", "/consent/0ce18c7d-fd78-46d9-81b5-8bed231c337a"),
			attribute.String("url.query", "patient=0ce18c7d-fd78-46d9-81b5-8bed231c337a"),
			attribute.String("user_agent.original", "Mozilla/5.0 Todd315"),
			attribute.String("client.address", "203.0.113.7"),
			attribute.String("http.request.header.authorization", "Bearer eyJhbGciOiJSUzI1NiJ9"),
			attribute.String(string(AttrReviewID), "R7QK2M4XN3PZ6WJ5"),
		))
	_, up := tr.Start(ctx, "GET https://fhir.example.org/r4/Patient/0ce18c7d-fd78-46d9-81b5-8bed231c337a?_format=json",
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("url.full", "https://fhir.example.org/r4/DiagnosticReport?patient=0ce18c7d-fd78-46d9-81b5-8bed231c337a"),
			attribute.String("http.url", "https://user:pw@fhir.example.org:8443/r4/Patient/0ce18c7d-fd78-46d9-81b5-8bed231c337a"),
			attribute.String("server.address", "fhir.example.org"),
			attribute.Int("server.port", 443),
			attribute.String("error.type", "*url.Error"),
			attribute.String("http.request.method", "Todd315 Stamm704 was here"), // free text in a kept key
		),
		trace.WithLinks(trace.Link{SpanContext: root.SpanContext(), Attributes: []attribute.KeyValue{
			attribute.String("patient.name", "Todd315 Stamm704"),
		}}))
	up.RecordError(errors.New(`Get "https://fhir.example.org/r4/Patient/0ce18c7d-fd78-46d9-81b5-8bed231c337a": EOF`),
		trace.WithStackTrace(true))
	up.AddEvent("retrying Patient/0ce18c7d-fd78-46d9-81b5-8bed231c337a", trace.WithAttributes(attribute.String("birthDate", "1944-06-29")))
	up.SetStatus(codes.Error, `Get "https://fhir.example.org/r4/Patient?name=Todd315&birthdate=1944-06-29": EOF`)
	up.End()
	_, rd := tr.Start(ctx, "hset", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("db.system", "redis"),
		attribute.String("db.statement", "hset secondlook:{R7QK2M4XN3PZ6WJ5}:review patient 0ce18c7d-fd78-46d9-81b5-8bed231c337a"),
		attribute.String("db.connection_string", "redis://127.0.0.1:6379"),
		attribute.String("code.filepath", "/home/build/secondlook/store/review.go"),
		attribute.String("code.function", "store.PutReview"),
	))
	rd.End()
	_, odd := tr.Start(ctx, "Todd315 Stamm704 999-35-5722 1944-06-29", trace.WithAttributes(
		attribute.String("server.address", "Wiza Extension"), // free text in a kept key
	))
	odd.End()
	root.End()
}

func exported(t *testing.T, wrap func(sdktrace.SpanExporter) sdktrace.SpanExporter) (tracetest.SpanStubs, string) {
	t.Helper()
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "patient.id=0ce18c7d-fd78-46d9-81b5-8bed231c337a,service.namespace=clinical")
	mem := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(wrap(mem)))
	leakySpans(t, tp)
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := mem.GetSpans()
	_ = tp.Shutdown(context.Background())
	if len(spans) != 4 {
		t.Fatalf("%d spans exported, want 4", len(spans))
	}
	return spans, tracingtest.Text(spans)
}

func TestRedactDropsEveryIdentifier(t *testing.T) {
	spans, text := exported(t, Redact)
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("exported spans contain %q:\n%s", s, text)
		}
	}
	// What is useful survives.
	byName := map[string]tracetest.SpanStub{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	attrs := func(name string) map[string]string {
		s, ok := byName[name]
		if !ok {
			t.Fatalf("no span %q among %v", name, text)
		}
		m := map[string]string{}
		for _, kv := range s.Attributes {
			m[string(kv.Key)] = kv.Value.String()
		}
		return m
	}
	if diff := cmp.Diff(map[string]string{
		"http.request.method": "GET", "http.route": "/api/v1/packets/:id", "http.response.status_code": "200",
		"secondlook.review_id": "R7QK2M4XN3PZ6WJ5",
	}, attrs("GET /api/v1/packets/:id")); diff != "" {
		t.Errorf("server span attributes (-want +got):\n%s", diff)
	}
	up := byName["GET /_/_/_"]
	if diff := cmp.Diff(map[string]string{
		"url.full": "https://fhir.example.org", "http.url": "https://fhir.example.org:8443",
		"server.address": "fhir.example.org", "server.port": "443", "error.type": "*url.Error",
	}, attrs("GET /_/_/_")); diff != "" {
		t.Errorf("client span attributes (-want +got):\n%s", diff)
	}
	if up.Status.Code != codes.Error || up.Status.Description != "" {
		t.Errorf("status %v %q, want Error without description", up.Status.Code, up.Status.Description)
	}
	var events []string
	for _, e := range up.Events {
		events = append(events, e.Name)
	}
	if diff := cmp.Diff([]string{"exception", "_"}, events); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"db.system": "redis"}, attrs("hset")); diff != "" {
		t.Errorf("redis span attributes (-want +got):\n%s", diff)
	}
	if _, ok := byName["_ _ _ _"]; !ok {
		t.Errorf("free-text span name not reduced:\n%s", text)
	}
}

// TestRedactIsTheGuard shows the same spans leak without the wrapper, so the test above is not vacuous.
func TestRedactIsTheGuard(t *testing.T) {
	_, text := exported(t, func(e sdktrace.SpanExporter) sdktrace.SpanExporter { return e })
	for _, s := range []string{"0ce18c7d-fd78-46d9-81b5-8bed231c337a", "code=", "Todd315", "1944-06-29"} {
		if !strings.Contains(text, s) {
			t.Errorf("unredacted spans lack %q: the leaky spans no longer exercise Redact", s)
		}
	}
}

func TestSafeName(t *testing.T) {
	for in, want := range map[string]string{
		"GET /api/v1/packets/:id":                       "GET /api/v1/packets/:id",
		"POST /consent/:id/withdraw":                    "POST /consent/:id/withdraw",
		"GET /.well-known/jwks.json":                    "GET /.well-known/jwks.json",
		"GET /static/*":                                 "GET /static/*",
		"FHIR search DiagnosticReport":                  "FHIR search DiagnosticReport",
		"SMART token":                                   "SMART token",
		"redis.pipeline hset expire":                    "redis.pipeline hset expire",
		"evalsha":                                       "evalsha",
		"GET /consent/R7QK2M4XN3PZ6WJ5":                 "GET /consent/_",
		"GET /auth/callback/hospital?code=x&state=y":    "GET /auth/callback/_",
		"GET /fhir/Patient/fe07e69a-4d6d-4e11":          "GET /_/_/_",
		"HTTP GET https://h.example.org/r4/Patient/123": "HTTP GET /_/_/_",
		"GET /fhir/Patient/smith":                       "GET /_/_/_",
		"GET /api/v1/reviews/p7":                        "GET /api/v1/reviews/_",
		"GET /consent/Smith/withdraw":                   "GET /consent/_/withdraw",
		"HTTP GET /r4/Patient?name=smith":               "HTTP GET /_/_",
		"":                                              "span",
	} {
		if got := SafeName(in); got != want {
			t.Errorf("SafeName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSafeNameKeepsEveryRoute: every path openapi.yaml describes (the gateway's routes, its parameters as Echo
// writes them) passes SafeName unchanged, so a route added without adding its words to pathWords fails here instead
// of losing its name in every trace.
func TestSafeNameKeepsEveryRoute(t *testing.T) {
	paths := regexp.MustCompile(`(?m)^  (/\S*):$`).FindAllSubmatch(secondlook.OpenAPI, -1)
	if len(paths) < 15 {
		t.Fatalf("found %d paths in openapi.yaml", len(paths))
	}
	param := regexp.MustCompile(`\{([A-Za-z_]+)\}`)
	for _, m := range paths {
		name := "GET " + param.ReplaceAllString(string(m[1]), ":$1")
		if got := SafeName(name); got != name {
			t.Errorf("SafeName(%q) = %q: add the route's words to pathWords", name, got)
		}
	}
}

// TestSampling: Redis commands never start a trace; inside a request they are recorded.
func TestSampling(t *testing.T) {
	mem := tracetest.NewInMemoryExporter()
	tp := NewProvider(mem, Options{Enabled: true})
	tr := tp.Tracer("test")
	redisAttr := trace.WithAttributes(attribute.String("db.system", "redis"))
	_, lone := tr.Start(context.Background(), "xreadgroup", redisAttr)
	lone.End()
	ctx, req := tr.Start(context.Background(), "GET /readyz")
	_, inner := tr.Start(ctx, "ping", redisAttr)
	inner.End()
	req.End()
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range mem.GetSpans() {
		names = append(names, s.Name)
	}
	if diff := cmp.Diff([]string{"ping", "GET /readyz"}, names); diff != "" {
		t.Errorf("recorded spans (-want +got):\n%s", diff)
	}
	_ = tp.Shutdown(context.Background())
}

func TestDisabledIsNoop(t *testing.T) {
	tp, shutdown, err := New(context.Background(), Options{Endpoint: "http://127.0.0.1:1/v1/traces"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tp.(noop.TracerProvider); !ok {
		t.Errorf("disabled tracing gave %T, want the no-op provider", tp)
	}
	_, s := tp.Tracer("test").Start(context.Background(), "x")
	if s.IsRecording() || s.SpanContext().IsValid() {
		t.Error("a disabled provider records spans")
	}
	if err := shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

// TestExportOverOTLP runs the production path: New with an OTLP/HTTP endpoint on loopback. The collector receives
// the configured header and protobuf spans in which the redacted names survive and no identifier appears.
func TestExportOverOTLP(t *testing.T) {
	var mu sync.Mutex
	var bodies [][]byte
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, b)
		auth = append(auth, r.URL.Path+" "+r.Header.Get("X-Api-Key"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	tp, shutdown, err := New(context.Background(), Options{Enabled: true, Endpoint: srv.URL, ServiceVersion: "test",
		Headers: map[string]string{"X-Api-Key": "collector-key"}})
	if err != nil {
		t.Fatal(err)
	}
	leakySpans(t, tp)
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) == 0 {
		t.Fatal("nothing exported")
	}
	if auth[0] != "/v1/traces collector-key" {
		t.Errorf("export request %q, want path /v1/traces with the configured header", auth[0])
	}
	all := bytes.Join(bodies, nil)
	for _, want := range []string{"GET /api/v1/packets/:id", "https://fhir.example.org", "secondlook"} {
		if !bytes.Contains(all, []byte(want)) {
			t.Errorf("export lacks %q", want)
		}
	}
	for _, s := range secrets {
		if bytes.Contains(all, []byte(s)) {
			t.Errorf("export contains %q", s)
		}
	}
}

func TestEndpointURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:4318":                   "http://127.0.0.1:4318/v1/traces",
		"https://otel.example.org/":               "https://otel.example.org/v1/traces",
		"https://otel.example.org/otlp/v1/traces": "https://otel.example.org/otlp/v1/traces",
	} {
		if got, err := endpointURL(in); err != nil || got != want {
			t.Errorf("endpointURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "otel:4318", "ftp://otel.example.org", "https://"} {
		if _, err := endpointURL(bad); err == nil {
			t.Errorf("endpointURL(%q) accepted", bad)
		}
	}
}
