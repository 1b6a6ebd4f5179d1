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
// replica's next ask, so a caller well under its rate keeps its burst). When half a lease is spent, the next is
// asked for in the background, so requests do not wait for the round trip. When a lease runs out before its
// successor arrives, the requests that find it empty queue, one ask is made for them all (a lease more than their
// number), and each is answered once, in order, when it arrives: no request is woken only to find the events
// gone. A refusal holds, without asking again, until the time Redis said the next event may happen. Every event
// allowed is one the shared bucket granted. A replica holds at most one and a half leases unspent at once, and a
// lease only moves an event by at most leaseTTL, so the replicas together exceed the bucket's burst by at most
// three twentieths of it each, and its rate not at all. Near the limit a replica may be refused while another still
// holds a few unspent events. With a burst under 20 the lease is one event: exact, one round trip each.
func (s *Store) Allow(ctx context.Context, key string, perSecond float64, burst int) (bool, time.Duration, error) {
	if perSecond <= 0 || burst <= 0 {
		return true, 0, nil
	}
	b := bucket{key: key, interval: max(time.Duration(float64(time.Second)/perSecond), time.Microsecond), burst: burst,
		want: max(burst/10, 1)}
	ok, wait, answer, ask := s.leases.take(b)
	if ask != nil {
		// The ask outlives this request when others queue behind it: it keeps the request's values (its trace),
		// not its cancellation.
		go s.ask(context.WithoutCancel(ctx), b, *ask)
	}
	if answer == nil {
		return ok, wait, nil
	}
	select {
	case a := <-answer:
		return a.ok, a.wait, a.err
	case <-ctx.Done():
		return false, 0, ctx.Err() // an event handed to this request later is lost: stricter, never looser
	}
}

// bucket is one shared rate bucket as a replica asks Redis for it.
type bucket struct {
	key      string
	interval time.Duration // between events at the bucket's rate
	burst    int
	want     int // a lease
}

// leaseAsk is one ask to Redis: take n events, giving back the unspent events of expired leases.
type leaseAsk struct{ n, back int }

// leaseAnswer is what a queued request is answered.
type leaseAnswer struct {
	ok   bool
	wait time.Duration
	err  error
}

// askTimeout bounds one ask to Redis (it is made in the background: no request's cancellation applies).
const askTimeout = 2 * time.Second

// ask asks Redis for a bucket's next lease, and again as long as requests queued for it are left unanswered.
func (s *Store) ask(parent context.Context, b bucket, a leaseAsk) {
	for {
		ctx, cancel := context.WithTimeout(parent, askTimeout)
		granted, wait, err := s.askLease(ctx, b, a)
		cancel()
		next := s.leases.fill(b, granted, wait, err)
		if next == nil {
			return
		}
		a = *next
	}
}

// askLease gives back the events of expired leases left unspent and takes up to a.n events from the shared bucket,
// in one script call: how many it granted, or, if none, how long until one may happen. Events given back by a call
// that fails are not given again (the bucket stays the stricter for it).
func (s *Store) askLease(ctx context.Context, b bucket, a leaseAsk) (int, time.Duration, error) {
	res, err := allowScript.Run(ctx, s.rdb, []string{s.prefix + "{ratelimit:" + b.key + "}"},
		b.interval.Microseconds(), b.burst, a.n, a.back).Int64Slice()
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

// leases are this replica's unspent events, refusals and queued requests, per bucket.
type leases struct {
	mu     sync.Mutex
	m      map[string]*lease
	queued int64 // asks made for queued requests (a lease ran out before the next arrived)
}

type lease struct {
	left    int                // events granted and not yet spent
	back    int                // events of expired leases left unspent, to give back with the next ask
	until   time.Time          // they may be spent until then
	refused time.Time          // no event may happen before then
	asking  bool               // an ask to Redis is in flight
	queue   []chan leaseAnswer // requests waiting for it, oldest first (each channel holds one answer)
}

// leaseTTL is how long a replica may hold events it took from a shared bucket, after its last refill, before
// spending them.
const leaseTTL = 100 * time.Millisecond

// maxLeases bounds the buckets a replica holds leases on; past it, the idle ones are dropped (unspent: stricter).
const maxLeases = 10000

// take spends one leased event if there is one (ok), or answers how long a refusal still holds (wait), or queues
// the request (answer: the channel its answer will come on). It also says when an ask to Redis is to be made, in
// the background: when a lease is half spent, or when the first request queues.
func (l *leases) take(b bucket) (ok bool, wait time.Duration, answer <-chan leaseAnswer, ask *leaseAsk) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now() // under the lock: a time read before it could precede what fill recorded meanwhile
	if l.m == nil {
		l.m = map[string]*lease{}
	}
	ls := l.m[b.key]
	if ls == nil {
		if len(l.m) >= maxLeases {
			for k, v := range l.m {
				if !v.asking {
					delete(l.m, k)
				}
			}
		}
		ls = &lease{}
		l.m[b.key] = ls
	}
	if ls.left > 0 && !now.Before(ls.until) {
		ls.left, ls.back = 0, ls.back+ls.left // expired: to be given back
	}
	switch {
	case ls.left > 0:
		ls.left--
		if b.want > 1 && ls.left <= b.want/2 && !ls.asking && !now.Before(ls.refused) {
			return true, 0, nil, ls.startAsk(b.want)
		}
		return true, 0, nil, nil
	case now.Before(ls.refused):
		return false, ls.refused.Sub(now), nil, nil
	}
	ch := make(chan leaseAnswer, 1)
	ls.queue = append(ls.queue, ch)
	if ls.asking {
		return false, 0, ch, nil
	}
	l.queued++
	return false, 0, ch, ls.startAsk(b.want + len(ls.queue))
}

// startAsk marks an ask for n events in flight, carrying the events to give back.
func (ls *lease) startAsk(n int) *leaseAsk {
	ls.asking = true
	a := &leaseAsk{n: n, back: ls.back}
	ls.back = 0
	return a
}

// fill records what Redis answered an ask: n events granted, or a refusal for wait, or an error. The queued
// requests are answered first, in order: one granted event each while they last, then the refusal or the error;
// what is left of the events is added to the lease. If requests are still queued (Redis granted fewer than they
// were), it returns the next ask to make for them.
func (l *leases) fill(b bucket, n int, wait time.Duration, err error) *leaseAsk {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.m[b.key]
	if ls == nil {
		return nil
	}
	now := time.Now()
	ls.asking = false
	if ls.left > 0 && !now.Before(ls.until) {
		ls.left, ls.back = 0, ls.back+ls.left // expired while the next lease was asked for: to be given back
	}
	ls.refused = time.Time{}
	if wait > 0 {
		ls.refused = now.Add(wait)
	}
	served := 0
	for ; served < len(ls.queue) && n > 0; served++ {
		ls.queue[served] <- leaseAnswer{ok: true}
		n--
	}
	rest := ls.queue[served:]
	if len(rest) > 0 && (err != nil || wait > 0) {
		for _, ch := range rest {
			ch <- leaseAnswer{wait: wait, err: err}
		}
		rest = nil
	}
	ls.queue = append([]chan leaseAnswer(nil), rest...)
	if n > 0 {
		ls.left, ls.until = ls.left+n, now.Add(leaseTTL)
	}
	if len(ls.queue) > 0 {
		l.queued++
		return ls.startAsk(b.want + len(ls.queue))
	}
	return nil
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
