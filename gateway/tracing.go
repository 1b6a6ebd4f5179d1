package gateway

import (
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// activeTracer returns tp, or nil when tracing is off (nil or the no-op provider tracing.New returns then), so that
// a gateway without tracing installs no middleware, hook or transport at all.
func activeTracer(tp trace.TracerProvider) trace.TracerProvider {
	if _, off := tp.(noop.TracerProvider); off {
		return nil
	}
	return tp
}
