// Package tracingtest helps tests read what a tracer exported.
package tracingtest

import (
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// Text writes out every string the spans export, one item a line: name, kind, status (code and description),
// scope (name, version, attributes), attributes, events with theirs, links' attributes and the resource. A test
// looks in it for what must never leave.
func Text(spans tracetest.SpanStubs) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "span %q kind %s status %s %q scope %q %q\n", s.Name, s.SpanKind, s.Status.Code, s.Status.Description,
			s.InstrumentationScope.Name, s.InstrumentationScope.Version)
		for _, kv := range s.Attributes {
			fmt.Fprintf(&b, "  attr %s: %s\n", kv.Key, kv.Value.String())
		}
		for _, kv := range s.InstrumentationScope.Attributes.ToSlice() {
			fmt.Fprintf(&b, "  scope attr %s: %s\n", kv.Key, kv.Value.String())
		}
		for _, e := range s.Events {
			fmt.Fprintf(&b, "  event %q\n", e.Name)
			for _, kv := range e.Attributes {
				fmt.Fprintf(&b, "    attr %s: %s\n", kv.Key, kv.Value.String())
			}
		}
		for _, l := range s.Links {
			for _, kv := range l.Attributes {
				fmt.Fprintf(&b, "  link attr %s: %s\n", kv.Key, kv.Value.String())
			}
		}
		if s.Resource != nil {
			for _, kv := range s.Resource.Attributes() {
				fmt.Fprintf(&b, "  resource %s: %s\n", kv.Key, kv.Value.String())
			}
		}
	}
	return b.String()
}
