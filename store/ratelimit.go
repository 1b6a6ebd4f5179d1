package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Allow takes one event from the rate bucket named key, shared by every replica: perSecond events a second on
// average, burst at once (GCRA, the generic cell rate algorithm, in one Lua script under the store's prefix). It
// reports whether the event may happen and, if not, how long until the next one may.
//
// A replica does not ask Redis for every event: it takes a lease of up to a tenth of the burst at once and spends
// it locally for at most leaseTTL after its last refill. What is left then is given back with the replica's next
// ask, as far as its reservation still lies ahead (what time has given back already is not given twice), so a
// caller well under its rate keeps its burst. When half a lease is spent, the next is asked for in the background,
// so requests do not wait for the round trip. When a lease runs out before its successor arrives, the requests
// that find it empty queue, one ask is made for them all (a lease more than their number), and each is answered
// once, in order: no request is woken only to find the events gone, and one that gives up leaves the queue (an
// event it was handed meanwhile goes back to the lease). A refusal holds, without asking again, until the time
// Redis said the next event may happen. Every event allowed is one the shared bucket granted. A replica holds at
// most one and a half leases unspent at once, so the replicas together exceed the bucket's burst by at most three
// twentieths of it each, and its rate not at all. Near the limit a replica may be refused while another still
// holds a few unspent events. With a burst under 20 the lease is one event and nothing is held: exact.
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
		s.leases.abandon(b, answer)
		return false, 0, ctx.Err()
	}
}

// bucket is one shared rate bucket as a replica asks Redis for it.
type bucket struct {
	key      string
	interval time.Duration // between events at the bucket's rate
	burst    int
	want     int // a lease
}

// leaseAsk is one ask to Redis: take n events, giving back the unspent events of an expired lease (back, of the
// grant whose reservation ended at backTAT).
type leaseAsk struct {
	n, back int
	backTAT int64
}

// leaseAnswer is what a queued request is answered.
type leaseAnswer struct {
	ok   bool
	wait time.Duration
	err  error
}

// askTimeout bounds one ask to Redis (it is made in the background: no request's cancellation applies). The Redis
// client's own read timeout (3 s by default) bounds it too: go-redis does not apply a context's deadline to the
// socket unless told to.
const askTimeout = 2 * time.Second

// ask asks Redis for a bucket's next lease, and again as long as requests queued for it are left unanswered.
func (s *Store) ask(parent context.Context, b bucket, a leaseAsk) {
	for {
		ctx, cancel := context.WithTimeout(parent, askTimeout)
		granted, wait, tat, err := s.askLease(ctx, b, a)
		cancel()
		next := s.leases.fill(b, granted, wait, tat, err)
		if next == nil {
			return
		}
		a = *next
	}
}

// askLease gives back the events of an expired lease left unspent and takes up to a.n events from the shared
// bucket, in one script call: how many it granted and the end of their reservation (the bucket's TAT after the
// grant, in Redis's clock), or, if none, how long until one may happen. Events given back by a call that fails are
// not given again (the bucket stays the stricter for it).
func (s *Store) askLease(ctx context.Context, b bucket, a leaseAsk) (int, time.Duration, int64, error) {
	res, err := allowScript.Run(ctx, s.rdb, []string{s.rateKey(b.key)},
		b.interval.Microseconds(), b.burst, a.n, a.back, a.backTAT).Int64Slice()
	if err == nil && len(res) != 3 {
		err = errors.New("unexpected reply")
	}
	if err != nil {
		return 0, 0, 0, fmt.Errorf("rate limit: %w", err)
	}
	return int(res[0]), time.Duration(res[1]) * time.Microsecond, res[2], nil
}

// rateKey is the Redis key of the rate bucket named key: under the store's prefix, its own hash slot.
func (s *Store) rateKey(key string) string { return s.prefix + "{ratelimit:" + key + "}" }

// IsRateKey reports whether k, a Redis key of this store, is a rate bucket's.
func (s *Store) IsRateKey(k string) bool { return strings.HasPrefix(k, s.prefix+"{ratelimit:") }

// allowScript keeps, in KEYS[1], the bucket's theoretical arrival time (TAT, in microseconds of Redis's clock): an
// event may happen if the TAT it leaves is at most burst intervals (ARGV[2] × ARGV[1] µs) ahead of now. It first
// takes back ARGV[4] events granted before and never spent, but only the part of their reservation still ahead of
// now (it ended at ARGV[5]; what time has already given back is not given twice), and the TAT never moves back
// before now. Then it grants as many of the ARGV[3] events asked for as may happen now and answers {granted, 0,
// the TAT after the grant}, or, if none may, {0, the microseconds until one may, 0}; the key expires once the
// bucket is full again.
var allowScript = redis.NewScript(`
local interval, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local back, backtat = tonumber(ARGV[4]), tonumber(ARGV[5])
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stored = tonumber(redis.call("GET", KEYS[1]) or now)
local refund = math.min(back * interval, math.max(backtat - now, 0))
local tat = math.max(math.max(stored, now) - refund, now)
local n = math.max(math.min(math.floor((now + interval * burst - tat) / interval), want), 0)
if n == 0 then
  if tat ~= stored then
    redis.call("SET", KEYS[1], string.format("%d", tat), "PX", math.ceil((tat - now) / 1000))
  end
  return {0, tat + interval - interval * burst - now, 0}
end
local newtat = tat + n * interval
redis.call("SET", KEYS[1], string.format("%d", newtat), "PX", math.ceil((newtat - now) / 1000))
return {n, 0, newtat}`)

// leases are this replica's unspent events, refusals and queued requests, per bucket.
type leases struct {
	mu     sync.Mutex
	m      map[string]*lease
	queued int64 // asks made for queued requests (a lease ran out before the next arrived)
}

type lease struct {
	left    int                // events granted and not yet spent
	grantN  int                // events in the last grant
	grantAt int64              // and the end of its reservation (the bucket's TAT after it, Redis's clock, µs)
	back    int                // events of the last grant that expired unspent, to give back with the next ask
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
	ls.expire(now)
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
	return false, 0, ch, ls.startAsk(queuedAsk(b.want, len(ls.queue)))
}

// queuedAsk is how many events to ask for queued requests: one each, and a lease more, unless a lease is one event
// (a burst under 20), which stays exact: nothing is held.
func queuedAsk(want, queued int) int {
	if want > 1 {
		return want + queued
	}
	return queued
}

// expire moves the events of a lease past leaseTTL to those to give back. Only the last grant's are given back
// (an earlier grant's reservation may lie among other replicas' by now): the rest are dropped.
func (ls *lease) expire(now time.Time) {
	if ls.left == 0 || now.Before(ls.until) {
		return
	}
	ls.back = min(ls.back+ls.left, ls.grantN)
	ls.left = 0
}

// startAsk marks an ask for n events in flight, carrying the events to give back.
func (ls *lease) startAsk(n int) *leaseAsk {
	ls.asking = true
	a := &leaseAsk{n: n, back: ls.back, backTAT: ls.grantAt}
	ls.back = 0
	return a
}

// abandon takes a queued request out of the queue when it gives up waiting; if it was answered meanwhile with an
// event, the event goes back to the lease for others to spend.
func (l *leases) abandon(b bucket, answer <-chan leaseAnswer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.m[b.key]
	if ls == nil {
		return
	}
	for i, ch := range ls.queue {
		if ch == answer {
			ls.queue = slices.Delete(ls.queue, i, i+1)
			return
		}
	}
	select {
	case a := <-answer:
		if a.ok {
			ls.left++
		}
	default:
	}
}

// fill records what Redis answered an ask: n events granted, or a refusal for wait, or an error. The queued
// requests are answered first, in order: one granted event each while they last, then the refusal or the error;
// what is left of the events is added to the lease. If requests are still queued (Redis granted fewer than they
// were), it returns the next ask to make for them.
func (l *leases) fill(b bucket, n int, wait time.Duration, tat int64, err error) *leaseAsk {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.m[b.key]
	if ls == nil {
		return nil
	}
	now := time.Now()
	ls.asking = false
	ls.expire(now) // expired while the next lease was asked for: to be given back
	if n > 0 {
		if ls.back > 0 && ls.grantAt != tat {
			// A lease expired unspent while this one was asked for: only the last grant can be given back.
			ls.back = 0
		}
		ls.grantN, ls.grantAt = n, tat
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
		return ls.startAsk(queuedAsk(b.want, len(ls.queue)))
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
