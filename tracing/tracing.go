package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Options configure tracing.
type Options struct {
	// Enabled turns tracing on; off, New returns a no-op provider and nothing else is read.
	Enabled bool
	// Endpoint is the OTLP/HTTP traces URL, e.g. https://otel-collector.internal:4318/v1/traces; a URL without a
	// path gets /v1/traces. Required when Enabled.
	Endpoint string
	// Headers are sent with every export (an API key, say).
	Headers map[string]string
	// SampleRatio is the share of traces started here that are recorded, in (0, 1]; default 1. A request that
	// arrives with a W3C traceparent follows its caller's decision.
	SampleRatio float64
	// ServiceName and ServiceVersion name the process in the resource; default "secondlook" and no version.
	ServiceName, ServiceVersion string
}

// DefaultServiceName is the service.name of the gateway's spans unless configured otherwise.
const DefaultServiceName = "secondlook"

// shutdownTimeout bounds the final flush when the caller's context has no deadline.
const shutdownTimeout = 5 * time.Second

// New returns the gateway's tracer provider and a function that flushes and stops it. With tracing off it returns a
// no-op provider and a no-op shutdown: no exporter is created and no connection made. With tracing on, spans go
// through Redact to an OTLP/HTTP exporter; the exporter connects only when it first exports.
func New(ctx context.Context, o Options) (trace.TracerProvider, func(context.Context) error, error) {
	if !o.Enabled {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	endpoint, err := endpointURL(o.Endpoint)
	if err != nil {
		return nil, nil, err
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(endpoint)}
	if len(o.Headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(o.Headers))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: create exporter: %w", err)
	}
	tp := NewProvider(exp, o)
	return tp, shutdownFunc(tp), nil
}

// NewProvider builds the tracer provider around exp, which it wraps with Redact: spans are sampled (parent-based,
// at o.SampleRatio for new traces; Redis commands never start a trace of their own), batched and exported. Tests
// pass an in-memory exporter and call ForceFlush before reading it.
func NewProvider(exp sdktrace.SpanExporter, o Options) *sdktrace.TracerProvider {
	ratio := o.SampleRatio
	if ratio <= 0 || ratio > 1 {
		ratio = 1
	}
	name := o.ServiceName
	if name == "" {
		name = DefaultServiceName
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", name)}
	if o.ServiceVersion != "" {
		attrs = append(attrs, attribute.String("service.version", o.ServiceVersion))
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attrs...))
	if err != nil {
		// Default and a schemaless resource always merge; keep ours if they ever do not.
		res = resource.NewSchemaless(attrs...)
	}
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(Redact(exp)),
		sdktrace.WithSampler(sdktrace.ParentBased(rootSampler{ratio: sdktrace.TraceIDRatioBased(ratio)})),
		sdktrace.WithResource(res),
	)
}

func shutdownFunc(tp *sdktrace.TracerProvider) func(context.Context) error {
	return func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, shutdownTimeout)
			defer cancel()
		}
		if err := tp.Shutdown(ctx); err != nil {
			return fmt.Errorf("tracing: shut down: %w", err)
		}
		return nil
	}
}

// endpointURL checks the OTLP endpoint and gives a URL without a path the standard traces path. Errors never quote
// the URL, which may carry credentials.
func endpointURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("tracing: the endpoint must be an absolute http or https URL")
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return u.String(), nil
}

// rootSampler decides for spans that start a trace. A Redis command with no request or job around it (the workers
// polling the queue, the sweeper) is not worth a trace of its own; everything else is sampled at the ratio.
type rootSampler struct {
	ratio sdktrace.Sampler
}

func (s rootSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	for _, kv := range p.Attributes {
		if kv.Key == "db.system" || kv.Key == "db.system.name" {
			return sdktrace.SamplingResult{Decision: sdktrace.Drop, Tracestate: trace.SpanContextFromContext(p.ParentContext).TraceState()}
		}
	}
	return s.ratio.ShouldSample(p)
}

func (s rootSampler) Description() string {
	return "NoRootRedis{" + s.ratio.Description() + "}"
}
