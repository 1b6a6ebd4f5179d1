package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/trace/noop"

	"secondlook/config"
)

// collector is an OTLP/HTTP endpoint on loopback that keeps what it receives: each export as its Authorization
// header line followed by the raw protobuf body (span names and attribute strings appear in it as they are).
type collector struct {
	*httptest.Server
	mu       sync.Mutex
	received []string
}

func newCollector(t *testing.T) *collector {
	t.Helper()
	c := &collector{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		c.received = append(c.received, "Authorization: "+r.Header.Get("Authorization")+"\n"+string(b))
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *collector) exports() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.received...)
}

// TestTracingOffByDefault: without a tracing section the gateway gets the no-op provider, and nothing reaches a
// collector, not even one the standard OTEL_EXPORTER_OTLP_* variables point at. Turned on, the same spans arrive,
// so the check is not vacuous.
func TestTracingOffByDefault(t *testing.T) {
	c := newCollector(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", c.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", c.URL+"/v1/traces")
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	cfg, err := config.Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	run := func(tc config.Tracing) any {
		tp, stop, err := startTracing(context.Background(), tc, logger)
		if err != nil {
			t.Fatal(err)
		}
		_, span := tp.Tracer("test").Start(context.Background(), "GET /healthz")
		span.End()
		stop()
		return tp
	}
	if tp := run(cfg.Tracing); tp != (noop.TracerProvider{}) {
		t.Errorf("tracing off gave %T, want the no-op provider", tp)
	}
	if n := len(c.exports()); n != 0 {
		t.Fatalf("tracing off, yet the collector received %d exports", n)
	}
	on := cfg.Tracing
	on.Enabled, on.Endpoint = true, c.URL
	run(on)
	if n := len(c.exports()); n == 0 {
		t.Error("tracing on, yet nothing was exported: the check above proves nothing")
	}
}
