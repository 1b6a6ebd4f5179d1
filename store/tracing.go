package store

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
)

// InstrumentTracing makes every Redis command of the store's client a span of tp, named by the command ("hgetall",
// "evalsha", "redis.pipeline hset expire"). Statements are never recorded: keys name reviews and values hold sealed
// records, tokens and state. Nor is the caller's file and line. Call it once, before the store is used.
func (s *Store) InstrumentTracing(ctx context.Context, tp trace.TracerProvider) error {
	opts := []redisotel.TracingOption{
		redisotel.WithTracerProvider(tp),
		redisotel.WithDBStatement(false),
		redisotel.WithCallerEnabled(false),
	}
	if err := redisotel.InstrumentTracing(s.rdb, opts...); err != nil {
		return fmt.Errorf("store: instrument tracing: %w", err)
	}
	// A Cluster client traces through its node clients: the call above covers the nodes it creates from now on,
	// and the nodes it already has (Open pinged the cluster) are instrumented here.
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		if err := cc.ForEachShard(ctx, func(_ context.Context, node *redis.Client) error {
			return redisotel.InstrumentTracing(node, opts...)
		}); err != nil {
			return fmt.Errorf("store: instrument tracing: %w", err)
		}
	}
	return nil
}
