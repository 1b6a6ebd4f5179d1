package demo

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"secondlook/tracing"
	"secondlook/tracing/tracingtest"
)

// Instrumentation scopes of the spans the gateway records.
const (
	scopeAPI      = "secondlook/api"
	scopeAssembly = "secondlook/assembly"
	scopeRedis    = "github.com/redis/go-redis/extra/redisotel"
	scopeHTTP     = "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
)

// identifying lists every identifying string of the demo patient's records (the patient id at both sites, given
// and family names, SSN, driver's licence, birth date, address, phone), and what would betray a credential or an
// OAuth callback: none may appear anywhere in a span.
var identifying = []string{
	Patient, "Todd315", "Stamm704", "999-35-5722", "S99927625", "2002-07-15", "262 Raynor Mall", "Redmond", "98007",
	"555-788-5466",
	"code=", "state=", "eyJ", "Bearer", "access_token", "refresh_token",
}

// TestNoPHIInSpans runs the whole walkthrough with tracing on, exporting to memory through the same provider and
// redaction that `secondlook serve` uses, then checks that the HTTP edge, Redis and the upstream FHIR servers are
// traced in connected traces, and that no span name, attribute, event, link, status or resource carries any
// identifying string of the input.
func TestNoPHIInSpans(t *testing.T) {
	mem := tracetest.NewInMemoryExporter()
	tp := tracing.NewProvider(mem, tracing.Options{Enabled: true, ServiceVersion: "test"})
	defer tp.Shutdown(context.Background()) //nolint:errcheck // In-memory exporter.
	spans := walkthroughSpans(t, tp, mem)

	byID := map[trace.SpanID]tracetest.SpanStub{}
	count := map[string]int{}
	for _, s := range spans {
		byID[s.SpanContext.SpanID()] = s
		count[s.InstrumentationScope.Name]++
	}
	hasAncestor := func(s tracetest.SpanStub, scope string) bool {
		for p := s.Parent; p.IsValid(); {
			up, ok := byID[p.SpanID()]
			if !ok {
				return false
			}
			if up.InstrumentationScope.Name == scope {
				return true
			}
			p = up.Parent
		}
		return false
	}
	names := map[string]bool{}
	var fhirUnderAssembly, redisUnderAPI, redisUnderAssembly bool
	for _, s := range spans {
		names[s.Name] = true
		switch {
		case strings.HasPrefix(s.Name, "FHIR ") && hasAncestor(s, scopeAssembly):
			fhirUnderAssembly = true
		case s.InstrumentationScope.Name == scopeRedis && hasAncestor(s, scopeAPI):
			redisUnderAPI = true
		case s.InstrumentationScope.Name == scopeRedis && hasAncestor(s, scopeAssembly):
			redisUnderAssembly = true
		}
	}
	for _, want := range []string{
		"POST /api/v1/reviews", "GET /consent/:review", "GET /auth/callback/:source", "GET /api/v1/packets/:id",
		"assemble review", "FHIR read metadata", "FHIR read Patient", "FHIR search DiagnosticReport",
		"FHIR search Condition", "SMART discovery", "SMART token",
	} {
		if !names[want] {
			t.Errorf("no span %q", want)
		}
	}
	for _, scope := range []string{scopeAPI, scopeAssembly, scopeRedis, scopeHTTP} {
		if count[scope] == 0 {
			t.Errorf("no span from %s", scope)
		}
	}
	if !fhirUnderAssembly {
		t.Error("no upstream FHIR span descends from an assembly span: context is not propagated")
	}
	if !redisUnderAPI || !redisUnderAssembly {
		t.Errorf("Redis spans under a request: %v, under an assembly: %v; want both", redisUnderAPI, redisUnderAssembly)
	}

	text := tracingtest.Text(spans)
	for _, s := range identifying {
		if i := strings.Index(text, s); i >= 0 {
			t.Errorf("spans contain %q: …%s…", s, text[max(0, i-200):min(len(text), i+80)])
		}
	}
}

// walkthroughSpans runs the demo's walkthrough traced by tp and returns every span exported to mem once the demo
// has stopped (so every job's span has ended).
func walkthroughSpans(t *testing.T, tp *sdktrace.TracerProvider, mem *tracetest.InMemoryExporter) tracetest.SpanStubs {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := Start(ctx, Options{Addr: "127.0.0.1:0", SandboxAddr: "127.0.0.1:0", RedisURL: os.Getenv("REDIS_URL"),
		TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = d.Walkthrough(ctx, &out)
	d.Close()
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if err := tp.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	spans := mem.GetSpans()
	if len(spans) < 50 {
		t.Fatalf("only %d spans exported", len(spans))
	}
	return spans
}
