package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"secondlook/store/storetest"
)

// TestTracingRecordsCommandsNotStatements: with tracing on, each command is a span named by the command, under the
// caller's span, and no span holds a key or a value, even before the exporter's redaction. Against the real Redis
// it runs on whatever REDIS_URL names, a Cluster included, whose client already knows its nodes when instrumented.
func TestTracingRecordsCommandsNotStatements(t *testing.T) {
	for name, newStore := range map[string]storetest.NewStore{"embedded": storetest.EmbeddedRedis, "real": storetest.RealRedis} {
		t.Run(name, func(t *testing.T) {
			s, _ := newStore(t)
			// A store already in use: a Cluster client has created its node clients by now.
			if err := s.PutState(context.Background(), "warm-up", []byte("x"), time.Minute); err != nil {
				t.Fatal(err)
			}
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			if err := s.InstrumentTracing(context.Background(), tp); err != nil {
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
			commands := 0
			for _, sp := range ended {
				if sp.Name() == "request" || sp.Name() == "redis.dial" {
					continue // a pool dial may start on its own; every command runs under its caller
				}
				if underParent(sp) {
					commands++
				}
				for _, kv := range sp.Attributes() {
					v := kv.Value.String()
					if kv.Key == "db.statement" || kv.Key == "db.query.text" || strings.HasPrefix(string(kv.Key), "code.") ||
						strings.Contains(v, key) || strings.Contains(v, value) {
						t.Errorf("span %q records %s=%q", sp.Name(), kv.Key, v)
					}
				}
			}
			if commands < 2 {
				t.Errorf("%d command spans under the caller's, want one for each of PutState and TakeState", commands)
			}
		})
	}
}
