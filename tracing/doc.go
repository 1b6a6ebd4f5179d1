// Package tracing builds the gateway's OpenTelemetry tracer provider: spans are sampled parent-based at a
// configured ratio, batched, and exported over OTLP/HTTP, always through [Redact], an exporter wrapper that lets out
// only allow-listed attributes (method, route pattern, status, host, Redis command name, ids the gateway minted)
// and reduces or drops everything else, so that no patient id, name, authorization code, state or token that an
// instrumentation library put in a span ever leaves the process.
//
// Tracing is off by default. Off, [New] returns a no-op provider and starts no exporter: nothing is recorded and no
// connection is made. The provider is passed explicitly to the parts that trace (api, store, fhir, auth, assembly);
// this package never sets the process-wide provider.
package tracing
