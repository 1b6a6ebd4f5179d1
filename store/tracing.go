package store

import (
	"fmt"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"go.opentelemetry.io/otel/trace"
)

// InstrumentTracing makes every Redis command of the store's client a span of tp, named by the command ("hgetall",
// "evalsha", "redis.pipeline hset expire"). Statements are never recorded: keys name reviews and values hold sealed
// records, tokens and state. Nor is the caller's file and line. Call it once, before the store is used.
func (s *Store) InstrumentTracing(tp trace.TracerProvider) error {
	if err := redisotel.InstrumentTracing(s.rdb,
		redisotel.WithTracerProvider(tp),
		redisotel.WithDBStatement(false),
		redisotel.WithCallerEnabled(false),
	); err != nil {
		return fmt.Errorf("store: instrument tracing: %w", err)
	}
	return nil
}
