package tracing

import (
	"context"
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// opKey carries the operation of an outgoing request ("search DiagnosticReport", "token") to ClientTransport.
type opKey struct{}

// WithOperation names the operation of the requests made with ctx, for their client spans.
func WithOperation(ctx context.Context, op string) context.Context {
	return context.WithValue(ctx, opKey{}, op)
}

// ClientTransport wraps base (nil: http.DefaultTransport) so that each request is a client span of tp, named
// system + " " + its operation (WithOperation), or its method when it has none: "FHIR search DiagnosticReport",
// "SMART token". The URL, which carries patient ids, state and codes, never becomes part of the name. No trace
// context is sent to the peer, so a hospital's server sees the same request whether tracing is on or off; what of
// the span leaves is decided by the exporter's allow-list (Redact), which reduces URL attributes to the origin.
func ClientTransport(base http.RoundTripper, tp trace.TracerProvider, system string) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return otelhttp.NewTransport(base,
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithMeterProvider(noop.NewMeterProvider()),
		otelhttp.WithPropagators(propagation.NewCompositeTextMapPropagator()),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			if op, ok := r.Context().Value(opKey{}).(string); ok && op != "" {
				return system + " " + op
			}
			return system + " " + r.Method
		}),
	)
}
