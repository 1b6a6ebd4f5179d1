package fhir

import (
	"context"
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// opKey carries the operation of a request ("search DiagnosticReport") to the tracing transport.
type opKey struct{}

func withOp(ctx context.Context, op string) context.Context {
	return context.WithValue(ctx, opKey{}, op)
}

// spanName names an upstream request's span by its operation: "FHIR search DiagnosticReport", "FHIR read Binary".
// The URL, which carries the patient id (?patient=, Patient/{id}), never becomes part of it.
func spanName(_ string, r *http.Request) string {
	if op, ok := r.Context().Value(opKey{}).(string); ok && op != "" {
		return "FHIR " + op
	}
	return "FHIR " + r.Method
}

// tracedTransport wraps base so that each request is a client span of tp. Trace context is not sent to the source:
// a hospital's server sees the same request whether tracing is on or off. The span's URL attributes still hold the
// patient id; the exporter reduces them to the origin (tracing.Redact).
func tracedTransport(base http.RoundTripper, tp trace.TracerProvider) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return otelhttp.NewTransport(base,
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithMeterProvider(noop.NewMeterProvider()),
		otelhttp.WithPropagators(propagation.NewCompositeTextMapPropagator()),
		otelhttp.WithSpanNameFormatter(spanName),
	)
}
