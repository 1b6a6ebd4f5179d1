package auth

import (
	"context"
	"errors"
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// opKey carries the operation of a request to an authorization server ("token") to the tracing transport.
type opKey struct{}

func withOp(ctx context.Context, op string) context.Context {
	return context.WithValue(ctx, opKey{}, op)
}

// tokenOp names a request to the token or revocation endpoint by what it is for.
func tokenOp(kind error) string {
	switch {
	case errors.Is(kind, ErrRefresh):
		return "token refresh"
	case errors.Is(kind, ErrRevoke):
		return "revoke"
	}
	return "token"
}

// spanName names a request's span "SMART discovery", "SMART token", "SMART token refresh", "SMART revoke" or
// "SMART jwks". The URL is never part of it: authorization URLs carry state and code, and token requests are
// bound to a patient's grant.
func spanName(_ string, r *http.Request) string {
	if op, ok := r.Context().Value(opKey{}).(string); ok && op != "" {
		return "SMART " + op
	}
	return "SMART " + r.Method
}

// tracedTransport wraps base so that each request is a client span of tp. No trace context is sent to the
// authorization server, and only the exporter's allow-list decides what of the span leaves (tracing.Redact).
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
