package api

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of the HTTP edge's spans.
const tracerName = "secondlook/api"

// traced starts a server span for every request, named by method and route pattern ("GET /api/v1/packets/:id"),
// never the raw path or query, which carry review ids, patient ids and, on the OAuth callback, the code and state.
// Its attributes are the method, the route pattern, the scheme and the status; no header, address or user agent.
// A W3C traceparent from the caller (a load balancer, an EHR that traces) is continued.
func traced(tp trace.TracerProvider) echo.MiddlewareFunc {
	tracer := tp.Tracer(tracerName)
	prop := propagation.TraceContext{}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			method := spanMethod(req.Method)
			route := c.Path()
			name := method
			if route != "" {
				name += " " + route
			}
			scheme := "http"
			if req.TLS != nil {
				scheme = "https"
			}
			ctx := prop.Extract(req.Context(), propagation.HeaderCarrier(req.Header))
			ctx, span := tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
				attribute.String("http.request.method", method),
				attribute.String("http.route", route),
				attribute.String("url.scheme", scheme),
			))
			defer span.End()
			c.SetRequest(req.WithContext(ctx))
			err := next(c)
			if err != nil {
				// Let the error handler write the response now, so the span records the status the client gets.
				c.Error(err)
			}
			status := c.Response().Status
			span.SetAttributes(attribute.Int("http.response.status_code", status))
			if status >= http.StatusInternalServerError {
				span.SetStatus(codes.Error, "")
			}
			return nil
		}
	}
}

// spanMethod keeps the standard methods and reduces any other to "_OTHER", as the semantic conventions do: a
// method is sent by the client and could be anything.
func spanMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
		http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "_OTHER"
}
