package fhir_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"secondlook/fhir"
	"secondlook/sandbox"
)

// TestTracingNamesSpansByOperation: with a tracer provider, each upstream request is a child span of the caller's,
// named by its operation, never by its URL; and the source receives no trace context.
func TestTracingNamesSpansByOperation(t *testing.T) {
	const patient = "0ce18c7d-fd78-46d9-81b5-8bed231c337a"
	s, err := sandbox.New(sandbox.Options{Sites: []sandbox.SiteOptions{{Name: "hospital", Bundles: allBundles(t)}}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var propagated []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, h := range []string{"Traceparent", "Tracestate", "Baggage"} {
			if v := r.Header.Get(h); v != "" {
				mu.Lock()
				propagated = append(propagated, h+": "+v)
				mu.Unlock()
			}
		}
		s.Handler().ServeHTTP(w, r)
	}))
	defer srv.Close()

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	c, err := fhir.NewClient(fhir.Options{BaseURL: srv.URL + "/hospital/fhir", TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	ctx, parent := tp.Tracer("test").Start(context.Background(), "assemble")
	if _, err := c.Retrieve(ctx, fhir.Query{PatientID: patient, Types: []string{"DiagnosticReport", "Condition"}}); err != nil {
		t.Fatal(err)
	}
	parent.End()

	names := map[string]bool{}
	for _, sp := range rec.Ended() {
		if sp.Name() == "assemble" {
			continue
		}
		names[sp.Name()] = true
		if strings.Contains(sp.Name(), patient) || strings.Contains(sp.Name(), "/") {
			t.Errorf("span name %q carries a path", sp.Name())
		}
		if sp.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("span %q is not a child of the caller's span", sp.Name())
		}
	}
	for _, want := range []string{"FHIR read metadata", "FHIR read Patient", "FHIR search DiagnosticReport", "FHIR search Condition"} {
		if !names[want] {
			t.Errorf("no span %q among %v", want, names)
		}
	}
	if len(propagated) > 0 {
		t.Errorf("trace context sent to the source: %v", propagated)
	}
}
