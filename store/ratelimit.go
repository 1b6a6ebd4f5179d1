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
// it locally for at most leaseTTL after its last refill (what is left then is given back to the bucket with the
// replica's next ask, so a caller well under its rate keeps its burst). When half a lease
// is spent, the request that spent it asks Redis for the next lease in the background, so the others keep spending
// and do not wait for the round trip; only when a lease runs out before its successor arrives do requests wait for
// it, one of them asking Redis at a time. A refusal holds, without asking again, until the time Redis said the
// next event may happen. Every event allowed is one the shared bucket granted. A replica holds at most one and a
// half leases at once, and a lease only moves an event by at most leaseTTL, so the replicas together exceed the
// bucket's burst by at most three twentieths of it each, and its rate not at all. Near the limit a replica may be
// refused while another still holds a few unspent events. With a burst under 20 the lease is one event: exact,
// one round trip each.
func (s *Store) Allow(ctx context.Context, key string, perSecond float64, burst int) (bool, time.Duration, error) {
	if perSecond <= 0 || burst <= 0 {
		return true, 0, nil
	}
	interval := max(time.Duration(float64(time.Second)/perSecond), time.Microsecond)
	want := max(burst/10, 1)
	for {
		ok, wait, inFlight, refill, back := s.leases.take(key, want)
		if refill {
			go s.refillLease(key, interval, burst, want, back)
		}
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
		// The lease ran out and no one is asking: this request asks for the next one, while the others wait.
		granted, wait, err := s.askLease(ctx, key, interval, burst, want, back)
		if err != nil {
			s.leases.fill(key, 0, 0)
			return false, 0, err
		}
		s.leases.fill(key, max(granted-1, 0), wait) // one granted event is this request's
		if granted == 0 {
			return false, wait, nil
		}
		return true, 0, nil
	}
}

// refillTimeout bounds a lease asked for in the background (no request waits for it, and none's context applies).
const refillTimeout = 2 * time.Second

// refillLease asks Redis for the next lease of a bucket whose current one is half spent, and adds it to what is
// left. On an error it adds nothing: the next request to find the lease empty asks again itself, and answers the
// error if it persists.
func (s *Store) refillLease(key string, interval time.Duration, burst, want, back int) {
	ctx, cancel := context.WithTimeout(context.Background(), refillTimeout)
	defer cancel()
	granted, wait, err := s.askLease(ctx, key, interval, burst, want, back)
	if err != nil {
		granted, wait = 0, 0
	}
	s.leases.fill(key, granted, wait)
}

// askLease gives back the events of this replica's expired leases left unspent, and takes up to want events from
// the shared bucket, in one script call: how many it granted, or, if none, how long until one may happen. Events
// given back by a call that fails are not given again (the bucket stays the stricter for it).
func (s *Store) askLease(ctx context.Context, key string, interval time.Duration, burst, want, back int) (int, time.Duration, error) {
	res, err := allowScript.Run(ctx, s.rdb, []string{s.prefix + "{ratelimit:" + key + "}"}, interval.Microseconds(), burst, want, back).Int64Slice()
	if err == nil && len(res) != 2 {
		err = errors.New("unexpected reply")
	}
	if err != nil {
		return 0, 0, fmt.Errorf("rate limit: %w", err)
	}
	return int(res[0]), time.Duration(res[1]) * time.Microsecond, nil
}

// allowScript keeps, in KEYS[1], the bucket's theoretical arrival time (TAT, in microseconds of Redis's clock): an
// event may happen if the TAT it leaves is at most burst intervals (ARGV[2] × ARGV[1] µs) ahead of now. It first
// takes back ARGV[4] events granted before and never spent (the TAT moves back, never before now), then grants as
// many of the ARGV[3] events asked for as may happen now and answers {granted, 0}, or, if none may, {0, the
// microseconds until one may}; the key expires once the bucket is full again.
var allowScript = redis.NewScript(`
local interval, burst, want, back = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stored = tonumber(redis.call("GET", KEYS[1]) or now)
local tat = math.max(math.max(stored, now) - back * interval, now)
local n = math.max(math.min(math.floor((now + interval * burst - tat) / interval), want), 0)
local newtat = tat + n * interval
if newtat > now then
  if n > 0 or newtat ~= stored then
    redis.call("SET", KEYS[1], string.format("%d", newtat), "PX", math.ceil((newtat - now) / 1000))
  end
elseif stored > now then
  redis.call("DEL", KEYS[1])
end
if n == 0 then
  return {0, tat + interval - interval * burst - now}
end
return {n, 0}`)

// leases are this replica's unspent events, and refusals, per bucket.
type leases struct {
	mu sync.Mutex
	m  map[string]*lease
}

type lease struct {
	left     int           // events granted and not yet spent
	back     int           // events of expired leases left unspent, to give back with the next ask
	until    time.Time     // they may be spent until then
	refused  time.Time     // no event may happen before then
	fetching chan struct{} // closed when the request asking Redis for the next lease is answered
}

// leaseTTL is how long a replica may hold events it took from a shared bucket, after its last refill, before
// spending them.
const leaseTTL = 100 * time.Millisecond

// maxLeases bounds the buckets a replica holds leases on; past it, the idle ones are dropped (unspent: stricter).
const maxLeases = 10000

// take spends one leased event if there is one, and reports whether the spender is to ask Redis for the next
// lease in the background (the lease, of want events, is half spent and no one is asking yet). Otherwise it answers
// how long a refusal still holds, or the channel to wait on while another request asks Redis, or neither: the
// caller is to ask Redis itself. Whoever is to ask gets the unspent events to give back (back).
func (l *leases) take(key string, want int) (ok bool, wait time.Duration, inFlight <-chan struct{}, refill bool, back int) {
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
	if ls.left > 0 && !now.Before(ls.until) {
		ls.left, ls.back = 0, ls.back+ls.left // expired: to be given back
	}
	switch {
	case ls.left > 0:
		ls.left--
		if want > 1 && ls.left <= want/2 && ls.fetching == nil && !now.Before(ls.refused) {
			ls.fetching = make(chan struct{})
			back, ls.back = ls.back, 0
			return true, 0, nil, true, back
		}
		return true, 0, nil, false, 0
	case now.Before(ls.refused):
		return false, ls.refused.Sub(now), nil, false, 0
	case ls.fetching != nil:
		return false, 0, ls.fetching, false, 0
	}
	ls.fetching = make(chan struct{})
	back, ls.back = ls.back, 0
	return false, 0, nil, false, back
}

// fill records what Redis answered the request that asked: n more events to spend (added to those left, unless
// they are past leaseTTL), or a refusal for wait.
func (l *leases) fill(key string, n int, wait time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.m[key]
	if ls == nil {
		return
	}
	now := time.Now()
	if ls.left > 0 && !now.Before(ls.until) {
		ls.left, ls.back = 0, ls.back+ls.left // expired while the next lease was asked for: to be given back
	}
	if n > 0 {
		ls.left, ls.until = ls.left+n, now.Add(leaseTTL)
	}
	ls.refused = time.Time{}
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
