package store

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Allow takes one event from the rate bucket named key, shared by every replica: perSecond events a second on
// average, burst at once (GCRA, the generic cell rate algorithm, in one Lua script). It reports whether the event
// may happen and, if not, how long until the next one may. The bucket is one key under the store's prefix.
func (s *Store) Allow(ctx context.Context, key string, perSecond float64, burst int) (bool, time.Duration, error) {
	if perSecond <= 0 || burst <= 0 {
		return true, 0, nil
	}
	interval := max(time.Duration(float64(time.Second)/perSecond), time.Microsecond)
	wait, err := allowScript.Run(ctx, s.rdb, []string{s.prefix + "{ratelimit:" + key + "}"}, interval.Microseconds(), burst).Int64()
	if err != nil {
		return false, 0, fmt.Errorf("rate limit: %w", err)
	}
	if wait <= 0 {
		return true, 0, nil
	}
	return false, time.Duration(wait) * time.Microsecond, nil
}

// allowScript keeps, in KEYS[1], the bucket's theoretical arrival time (TAT, in microseconds of Redis's clock): an
// event is allowed if the TAT it would leave is at most burst intervals (ARGV[2] × ARGV[1] µs) ahead of now. It
// answers 0 when allowed, else the microseconds to wait; the key expires once the bucket is full again.
var allowScript = redis.NewScript(`
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = math.max(tonumber(redis.call("GET", KEYS[1]) or now), now)
local ahead = tat + interval - now
if ahead > interval * burst then
  return ahead - interval * burst
end
redis.call("SET", KEYS[1], string.format("%d", tat + interval), "PX", math.ceil(ahead / 1000))
return 0`)

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
