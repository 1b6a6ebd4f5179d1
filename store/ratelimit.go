package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Allow takes one event from the rate bucket named key, shared by every replica: perSecond events a second on
// average, burst at once (GCRA, the generic cell rate algorithm, in one Lua script under the store's prefix). It
// reports whether the event may happen and, if not, how long until the next one may.
//
// A replica does not ask Redis for every event: it takes a lease of up to a tenth of the burst at once and spends
// it locally for at most leaseTTL (what is left then is dropped, unspent); one request at a time per bucket asks
// for the next lease while the others wait for it; and a refusal holds, without asking again, until the time
// Redis said the next event may happen. Every event allowed is one the shared bucket granted; a lease only moves
// when it is spent, by at most leaseTTL, so the replicas together exceed the bucket's burst by at most a tenth of
// it each, and its rate not at all. Near the limit a replica may be refused while another still holds a few
// unspent events. With a burst under 20 the lease is one event: exact, one round trip each.
func (s *Store) Allow(ctx context.Context, key string, perSecond float64, burst int) (bool, time.Duration, error) {
	if perSecond <= 0 || burst <= 0 {
		return true, 0, nil
	}
	for {
		ok, wait, inFlight := s.leases.take(key)
		switch {
		case ok:
			return true, 0, nil
		case wait > 0:
			return false, wait, nil
		case inFlight != nil: // another request is asking Redis: wait for its lease
			select {
			case <-inFlight:
				continue
			case <-ctx.Done():
				return false, 0, ctx.Err()
			}
		}
		// This request asks for the next lease; the others wait for it.
		interval := max(time.Duration(float64(time.Second)/perSecond), time.Microsecond)
		res, err := allowScript.Run(ctx, s.rdb, []string{s.prefix + "{ratelimit:" + key + "}"}, interval.Microseconds(), burst, max(burst/10, 1)).Int64Slice()
		if err == nil && len(res) != 2 {
			err = errors.New("unexpected reply")
		}
		if err != nil {
			s.leases.fill(key, 0, 0)
			return false, 0, fmt.Errorf("rate limit: %w", err)
		}
		granted, wait := int(res[0]), time.Duration(res[1])*time.Microsecond
		s.leases.fill(key, max(granted-1, 0), wait) // one granted event is this request's
		if granted == 0 {
			return false, wait, nil
		}
		return true, 0, nil
	}
}

// allowScript keeps, in KEYS[1], the bucket's theoretical arrival time (TAT, in microseconds of Redis's clock): an
// event may happen if the TAT it leaves is at most burst intervals (ARGV[2] × ARGV[1] µs) ahead of now. It grants
// as many of the ARGV[3] events asked for as may happen now and answers {granted, 0}, or, if none may, {0, the
// microseconds until one may}; the key expires once the bucket is full again.
var allowScript = redis.NewScript(`
local interval, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = math.max(tonumber(redis.call("GET", KEYS[1]) or now), now)
local room = math.floor((now + interval * burst - tat) / interval)
if room < 1 then
  return {0, tat + interval - interval * burst - now}
end
local n = math.min(room, want)
redis.call("SET", KEYS[1], string.format("%d", tat + n * interval), "PX", math.ceil((tat + n * interval - now) / 1000))
return {n, 0}`)

// leases are this replica's unspent events, and refusals, per bucket.
type leases struct {
	mu sync.Mutex
	m  map[string]*lease
}

type lease struct {
	left     int           // events granted and not yet spent
	until    time.Time     // they may be spent until then
	refused  time.Time     // no event may happen before then
	fetching chan struct{} // closed when the request asking Redis for the next lease is answered
}

// leaseTTL is how long a replica may hold events it took from a shared bucket before spending them.
const leaseTTL = 100 * time.Millisecond

// maxLeases bounds the buckets a replica holds leases on; past it, the idle ones are dropped (unspent: stricter).
const maxLeases = 10000

// take spends one leased event if there is one. Otherwise it answers how long a refusal still holds, or the
// channel to wait on while another request asks Redis, or neither: the caller is to ask Redis itself.
func (l *leases) take(key string) (ok bool, wait time.Duration, inFlight <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now() // under the lock: a time read before it could precede what fill recorded meanwhile
	if l.m == nil {
		l.m = map[string]*lease{}
	}
	ls := l.m[key]
	if ls == nil {
		if len(l.m) >= maxLeases {
			for k, v := range l.m {
				if v.fetching == nil {
					delete(l.m, k)
				}
			}
		}
		ls = &lease{}
		l.m[key] = ls
	}
	switch {
	case ls.left > 0 && now.Before(ls.until):
		ls.left--
		return true, 0, nil
	case now.Before(ls.refused):
		return false, ls.refused.Sub(now), nil
	case ls.fetching != nil:
		return false, 0, ls.fetching
	}
	ls.left, ls.fetching = 0, make(chan struct{})
	return false, 0, nil
}

// fill records what Redis answered the request that asked: n more events to spend, or a refusal for wait.
func (l *leases) fill(key string, n int, wait time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.m[key]
	if ls == nil {
		return
	}
	now := time.Now()
	ls.left, ls.until, ls.refused = n, now.Add(leaseTTL), time.Time{}
	if wait > 0 {
		ls.refused = now.Add(wait)
	}
	close(ls.fetching)
	ls.fetching = nil
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
