package main

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"secondlook/config"
	"secondlook/tracing"
)

// startTracing builds the tracer provider the configuration asks for. Off (the default), it is the no-op provider:
// no exporter, no connection, and the gateway installs no instrumentation. The returned stop flushes buffered spans
// (within the tracing package's own bound) and logs, rather than returns, a failure to do so.
func startTracing(ctx context.Context, cfg config.Tracing, logger *slog.Logger) (trace.TracerProvider, func(), error) {
	var o tracing.Options
	if cfg.Enabled {
		headers, err := cfg.ResolveHeaders()
		if err != nil {
			return nil, nil, err
		}
		o = tracing.Options{Enabled: true, Endpoint: cfg.Endpoint, Headers: headers, SampleRatio: cfg.SampleRatio,
			ServiceName: cfg.ServiceName, ServiceVersion: buildVersion()}
		// Export failures are reported by the SDK through the process-wide handler: send them to the log. They name
		// the collector, never span contents.
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			logger.LogAttrs(context.Background(), slog.LevelWarn, "tracing export failed", slog.String("error", err.Error()))
		}))
	}
	tp, shutdown, err := tracing.New(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	if cfg.Enabled {
		logger.Info("tracing on", "sample_ratio", cfg.SampleRatio, "service_name", cfg.ServiceName)
	}
	stop := func() {
		if err := shutdown(context.Background()); err != nil {
			logger.Warn("tracing flush failed", "error", err.Error())
		}
	}
	return tp, stop, nil
}
