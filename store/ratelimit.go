package store

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/go-redis/redis_rate/v10"
)

// Allow takes one event from the rate bucket named key, shared by every replica (GCRA in Redis, redis_rate):
// perSecond events a second on average, burst at once. It reports whether the event may happen and, if not, when
// the next one may.
func (s *Store) Allow(ctx context.Context, key string, perSecond float64, burst int) (bool, time.Duration, error) {
	if perSecond <= 0 || burst <= 0 {
		return true, 0, nil
	}
	limit := redis_rate.Limit{Rate: int(math.Round(perSecond)), Period: time.Second, Burst: burst}
	if perSecond < 1 {
		limit = redis_rate.Limit{Rate: 1, Period: time.Duration(float64(time.Second) / perSecond), Burst: burst}
	}
	res, err := redis_rate.NewLimiter(s.rdb).Allow(ctx, s.prefix+"{ratelimit:"+key+"}", limit)
	if err != nil {
		return false, 0, fmt.Errorf("rate limit: %w", err)
	}
	if res.Allowed > 0 {
		return true, 0, nil
	}
	return false, res.RetryAfter, nil
}

// Waiter returns a function that waits until the shared bucket key lets one more event through, or ctx ends: the
// FHIR client's limiter for a source, shared by every replica.
func (s *Store) Waiter(key string, perSecond float64, burst int) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		for {
			ok, wait, err := s.Allow(ctx, key, perSecond, burst)
			if err != nil || ok {
				return err
			}
			t := time.NewTimer(max(wait, time.Millisecond))
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
	}
}
