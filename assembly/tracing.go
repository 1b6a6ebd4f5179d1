package assembly

import (
	"context"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"secondlook/tracing"
)

// tracerName is the instrumentation scope of the assembly spans.
const tracerName = "secondlook/assembly"

// startSpan starts the span of one attempt at a job: "assemble review", with the review id (random, minted by the
// gateway; never a patient id). The stages become its events, and the upstream FHIR requests and Redis commands
// of the attempt its descendants. Without a TracerProvider it returns ctx and a span that records nothing.
func (w *Worker) startSpan(ctx context.Context, reviewID string) (context.Context, trace.Span) {
	tp := w.cfg.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return tp.Tracer(tracerName).Start(ctx, "assemble review", trace.WithAttributes(tracing.AttrReviewID.String(reviewID)))
}
