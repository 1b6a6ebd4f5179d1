package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"secondlook/store"
)

// TestTracingRecordsCommandsNotStatements: with tracing on, each command is a span named by the command, a child
// of the caller's span, and no span holds a key or a value, even before the exporter's redaction.
func TestTracingRecordsCommandsNotStatements(t *testing.T) {
	rdb, mr, err := store.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	defer mr.Close()
	defer rdb.Close()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	s := store.New(rdb, "trace-test:")
	if err := s.InstrumentTracing(tp); err != nil {
		t.Fatal(err)
	}
	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	const key, value = "patient-0ce18c7d", "Todd315 Stamm704"
	if err := s.PutState(ctx, key, []byte(value), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakeState(ctx, key); err != nil {
		t.Fatal(err)
	}
	parent.End()
	ended := rec.Ended()
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, sp := range ended {
		byID[sp.SpanContext().SpanID()] = sp
	}
	underParent := func(sp sdktrace.ReadOnlySpan) bool {
		for p := sp.Parent(); p.IsValid(); {
			if p.SpanID() == parent.SpanContext().SpanID() {
				return true
			}
			up, ok := byID[p.SpanID()]
			if !ok {
				return false
			}
			p = up.Parent()
		}
		return false
	}
	var commands int
	for _, sp := range ended {
		if sp.Name() == "request" {
			continue
		}
		commands++
		// A pool dial may start on its own; every command runs under its caller.
		if sp.Name() != "redis.dial" && !underParent(sp) {
			t.Errorf("span %q is not under the caller's span", sp.Name())
		}
		for _, kv := range sp.Attributes() {
			v := kv.Value.Emit()
			if kv.Key == "db.statement" || kv.Key == "db.query.text" || strings.HasPrefix(string(kv.Key), "code.") ||
				strings.Contains(v, key) || strings.Contains(v, value) || strings.Contains(v, "trace-test:") {
				t.Errorf("span %q records %s=%q", sp.Name(), kv.Key, v)
			}
		}
	}
	if commands < 2 {
		t.Errorf("%d command spans, want one for each of PutState and TakeState", commands)
	}
}
