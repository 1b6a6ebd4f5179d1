package store_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"secondlook/store"
	"secondlook/store/storetest"
)

// TestAllowIsShared: two replicas (two Stores on one Redis) draw from one bucket per key: together they get the
// burst and no more, another key's bucket is untouched, a waiter lets the next event through once the bucket
// refills, and the bucket lives under the store's prefix (no key of its own naming outside it).
func TestAllowIsShared(t *testing.T) {
	for name, newStore := range map[string]storetest.NewStore{"real": storetest.RealRedis, "embedded": storetest.EmbeddedRedis} {
		t.Run(name, func(t *testing.T) {
			a, _ := newStore(t)
			b := store.New(a.Client(), a.Prefix())
			ctx := context.Background()
			allowed := 0
			var wait time.Duration
			for i := range 6 {
				ok, w, err := []*store.Store{a, b}[i%2].Allow(ctx, "caller:onco", 1, 3)
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					allowed++
				} else {
					wait = w
				}
			}
			if allowed != 3 || wait <= 0 || wait > 3*time.Second {
				t.Errorf("%d allowed (want the burst of 3), retry after %s", allowed, wait)
			}
			if ok, _, _ := b.Allow(ctx, "caller:cardio", 1, 3); !ok {
				t.Error("another caller was limited")
			}
			keys, err := storetest.Keys(ctx, a.Client(), "*ratelimit*")
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				if k != a.Prefix()+"{ratelimit:caller:onco}" && k != a.Prefix()+"{ratelimit:caller:cardio}" && !hasOtherTestPrefix(k, a.Prefix()) {
					t.Errorf("rate-limit key %q outside the store's prefix", k)
				}
			}
			if name == "embedded" {
				return // miniredis's clock does not move by itself: the wait is checked on the real server
			}
			start := time.Now()
			if err := b.Waiter("caller:onco", 1, 3)(ctx); err != nil {
				t.Fatal(err)
			}
			if w := time.Since(start); w < 100*time.Millisecond || w > 2*time.Second {
				t.Errorf("waited %s for a bucket refilling at 1/s", w)
			}
		})
	}
}

// hasOtherTestPrefix reports a key of another test run sharing the Redis (storetest prefixes), not of this one.
func hasOtherTestPrefix(k, own string) bool {
	return len(k) > len("sltest:") && k[:len("sltest:")] == "sltest:" && (len(k) < len(own) || k[:len(own)] != own)
}

// TestAllowLeases: with a burst of 200, each replica takes leases of 20 events and spends them locally. Two
// replicas taking events in turn get the burst between them and not one more (leases are granted by the shared
// bucket), in a handful of script calls rather than one per event, and a refusal holds without asking again;
// 64 requests at once share leases, one asking Redis at a time; and a lease held past leaseTTL (100 ms) is
// dropped, not spent.
func TestAllowLeases(t *testing.T) {
	for name, newStore := range map[string]storetest.NewStore{"real": storetest.RealRedis, "embedded": storetest.EmbeddedRedis} {
		t.Run(name, func(t *testing.T) {
			a, _ := newStore(t)
			b := store.New(a.Client(), a.Prefix())
			ctx := context.Background()
			var calls atomic.Int64
			a.Client().AddHook(countEvalSha{&calls})
			allowed := 0
			for i := range 300 {
				ok, _, err := []*store.Store{a, b}[i%2].Allow(ctx, "caller:busy", 0.5, 200)
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					allowed++
				}
			}
			if allowed != 200 {
				t.Errorf("%d allowed, want the burst of 200 (0.5/s refills none during the test)", allowed)
			}
			// 10 leases of 20, then one refusal that holds for the rest (the next event is 2 s away).
			if n := calls.Load(); n < 10 || n > 12 {
				t.Errorf("%d script calls for 300 events", n)
			}
			// Many requests at once: one asks Redis per lease while the others wait for it.
			calls.Store(0)
			if got := allowAtOnce(t, a, 64, 50, "caller:crowd", 1e6, 10000); got != 64*50 {
				t.Errorf("%d of %d allowed within the burst", got, 64*50)
			}
			// Leases of 1,000: 4 would do; one call per request each time a lease ran out would be 64 or more.
			if n := calls.Load(); n > 20 {
				t.Errorf("%d script calls for %d events in leases of 1,000", n, 64*50)
			}
			if name == "embedded" {
				return // miniredis's clock does not move by itself
			}
			// 100/s with a burst of 100: leases of 10.
			if ok, _, err := a.Allow(ctx, "caller:steady", 100, 100); err != nil || !ok {
				t.Fatalf("first event: %v %v", ok, err)
			}
			before := calls.Load()
			if ok, _, _ := a.Allow(ctx, "caller:steady", 100, 100); !ok || calls.Load() != before {
				t.Errorf("the second event did not come from the lease (%d calls)", calls.Load()-before)
			}
			time.Sleep(150 * time.Millisecond)
			before = calls.Load()
			if ok, _, _ := a.Allow(ctx, "caller:steady", 100, 100); !ok || calls.Load() != before+1 {
				t.Errorf("an expired lease was spent (%d calls)", calls.Load()-before)
			}
		})
	}
}

// TestAllowRefillsAhead: a caller spending its lease steadily never waits for Redis after its first event. Script
// calls take 5 ms here (a hook delays them); half a lease of 20 lasts 20 ms at one event every 2 ms, so the next
// lease, asked for in the background when half of this one is spent, arrives before this one runs out (and the
// lease and a half a replica may hold is spent well within leaseTTL). Before, the request that found the lease
// empty asked Redis itself, and it and every request behind it waited.
func TestAllowRefillsAhead(t *testing.T) {
	for name, newStore := range map[string]storetest.NewStore{"real": storetest.RealRedis, "embedded": storetest.EmbeddedRedis} {
		t.Run(name, func(t *testing.T) {
			a, _ := newStore(t)
			h := &slowEvalSha{delay: 5 * time.Millisecond}
			a.Client().AddHook(h)
			ctx := context.Background()
			for i := range 100 {
				ok, _, err := a.Allow(ctx, "caller:steady", 1e4, 200)
				if err != nil || !ok {
					t.Fatalf("event %d: %v %v", i, ok, err)
				}
				time.Sleep(2 * time.Millisecond)
			}
			// The first event waits: there is no lease yet.
			if n := a.QueuedAsks(); n != 1 {
				t.Errorf("requests waited for %d asks to Redis, want only the first", n)
			}
			// 100 events: a lease of 20 asked for first, then one of 20 ahead each time 20 more are spent, so six
			// asks (and an EVALSHA answered NOSCRIPT by a Redis that has not seen the script yet). Asking for a half
			// lease each time would take ten or more.
			if n := h.calls.Load(); n < 6 || n > 8 {
				t.Errorf("%d script calls for 100 events in leases of 20", n)
			}
		})
	}
}

// TestAllowQueuesForOneAsk: 64 requests at once find no lease; they queue, one ask is made for them all (a lease
// more than their number), and each is answered once. Before, every waiter was woken whenever a lease of 10
// arrived, the 10 fastest took it, and the rest went back to wait: seven asks in turn, and a p99 of 55 ms under
// load.
func TestAllowQueuesForOneAsk(t *testing.T) {
	a, _ := storetest.RealRedis(t)
	h := &slowEvalSha{delay: 20 * time.Millisecond} // long enough for all 64 to queue behind the first ask
	a.Client().AddHook(h)
	if allowed := allowAtOnce(t, a, 64, 1, "caller:crowd", 1e6, 100); allowed != 64 {
		t.Errorf("%d of 64 allowed", allowed)
	}
	// The first ask (for 11, as only its own request had queued then) and one for everyone who queued behind it.
	if n := a.QueuedAsks(); n > 2 {
		t.Errorf("%d asks for 64 queued requests", n)
	}
}

// TestAllowAskOutlivesItsRequest: the request whose arrival started an ask gives up (its context ends) while the
// ask is in flight; the request queued behind it is still answered, and allowed.
func TestAllowAskOutlivesItsRequest(t *testing.T) {
	a, _ := storetest.RealRedis(t)
	a.Client().AddHook(&slowEvalSha{delay: 30 * time.Millisecond})
	first, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, _, err := a.Allow(first, "caller:impatient", 1e6, 100)
		done <- err
	}()
	for a.QueuedAsks() == 0 { // until the first request has queued and started the ask
		time.Sleep(100 * time.Microsecond)
	}
	ok, _, err := a.Allow(context.Background(), "caller:impatient", 1e6, 100)
	if err != nil || !ok {
		t.Errorf("the request queued behind a cancelled one: %v %v", ok, err)
	}
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the cancelled request: %v", err)
	}
}

// TestAllowSmallBurstIsExact: with a burst under 20 a lease is one event, and requests that queue together are
// asked for exactly: the replica holds nothing unspent. Before, the ask was for one more than the queue, and the
// replica kept it (with the FHIR sources' default burst of 10, one event over it).
func TestAllowSmallBurstIsExact(t *testing.T) {
	a, _ := storetest.RealRedis(t)
	a.Client().AddHook(&slowEvalSha{delay: 20 * time.Millisecond}) // so that the requests queue behind one ask
	if allowed := allowAtOnce(t, a, 3, 1, "source:small", 0.001, 10); allowed != 3 {
		t.Errorf("%d of 3 allowed", allowed)
	}
	if n := a.Held("source:small"); n != 0 {
		t.Errorf("the replica holds %d unspent events of a burst under 20", n)
	}
}

// TestAllowGivesBackOnlyWhatTimeHasNot: a lease that expired long ago gives back nothing time has already given
// back. At 100/s with a burst of 100, replica a takes a lease of 10 and spends one; 300 ms later (its lease's
// reservation ran out 200 ms ago) b drains the bucket, then a asks again, giving back its nine: together they
// get the burst and at most the few events the bucket regained meanwhile. Before, the nine were given back in
// full, taking them from b's reservations: 110 events at once.
func TestAllowGivesBackOnlyWhatTimeHasNot(t *testing.T) {
	a, _ := storetest.RealRedis(t)
	b := store.New(a.Client(), a.Prefix())
	ctx := context.Background()
	if ok, _, err := a.Allow(ctx, "caller:late", 100, 100); err != nil || !ok {
		t.Fatalf("first event: %v %v", ok, err)
	}
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	got := allowN(t, b, 200, "caller:late", 100, 100) + allowN(t, a, 20, "caller:late", 100, 100)
	regained := int(time.Since(start) / (10 * time.Millisecond))
	if got > 100+regained+1 {
		t.Errorf("%d events within %s after the bucket was full (burst 100, %d regained at 100/s)", got, time.Since(start), regained)
	}
}

// TestAllowAbandonedRequestsTakeNothing: 150 requests that give up after 20 ms behind a Redis answering in 50 ms
// take nothing from the caller's bucket but the one ask already made: another replica still gets most of the
// burst. Before, the queued requests stayed queued after giving up, were asked for and answered, and the caller
// was left with one event of a burst of 100.
func TestAllowAbandonedRequestsTakeNothing(t *testing.T) {
	a, _ := storetest.RealRedis(t)
	b := store.New(a.Client(), a.Prefix())
	a.Client().AddHook(&slowEvalSha{delay: 50 * time.Millisecond})
	var wg sync.WaitGroup
	for range 150 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			if ok, _, _ := a.Allow(ctx, "caller:hasty", 0.5, 100); ok {
				t.Error("allowed after giving up")
			}
		}()
	}
	wg.Wait()
	time.Sleep(100 * time.Millisecond) // the one ask in flight returns
	got := allowN(t, b, 100, "caller:hasty", 0.5, 100)
	// The first ask was for a lease of 10 and the one request then queued: 11 are held by a, unspent.
	if got < 85 {
		t.Errorf("another replica got %d of a burst of 100 after 150 requests gave up", got)
	}
}

// slowEvalSha counts script calls and delays each by delay, as a distant Redis would.
type slowEvalSha struct {
	calls atomic.Int64
	delay time.Duration
}

func (h *slowEvalSha) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *slowEvalSha) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "evalsha" || cmd.Name() == "eval" {
			h.calls.Add(1)
			time.Sleep(h.delay)
		}
		return next(ctx, cmd)
	}
}
func (h *slowEvalSha) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestAllowGivesBackUnspent: a caller far under its rate keeps its burst. At 20/s with a burst of 100 (leases of
// 10), it makes one request every 150 ms, so each lease expires with nine events unspent; ten of those, then a
// burst of 100 at once, of which at least 85 must pass (ten were spent, and the bucket refills meanwhile). Before,
// the unspent events were dropped and stayed taken: the ten leases emptied the bucket and the burst was refused.
func TestAllowGivesBackUnspent(t *testing.T) {
	for name, newStore := range map[string]storetest.NewStore{"real": storetest.RealRedis, "embedded": storetest.EmbeddedRedis} {
		t.Run(name, func(t *testing.T) {
			a, _ := newStore(t)
			ctx := context.Background()
			for i := range 10 {
				if ok, _, err := a.Allow(ctx, "caller:quiet", 20, 100); err != nil || !ok {
					t.Fatalf("request %d: %v %v", i, ok, err)
				}
				time.Sleep(150 * time.Millisecond) // past leaseTTL: the lease's nine other events expire unspent
			}
			if allowed := allowN(t, a, 100, "caller:quiet", 20, 100); allowed < 85 {
				t.Errorf("%d of a burst of 100 allowed after 10 requests at under 7/s, with a limit of 20/s", allowed)
			}
		})
	}
}

// allowN asks s for n events of the bucket key, one after another, and returns how many were allowed.
func allowN(t *testing.T, s *store.Store, n int, key string, perSecond float64, burst int) int {
	t.Helper()
	allowed := 0
	for range n {
		ok, _, err := s.Allow(context.Background(), key, perSecond, burst)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			allowed++
		}
	}
	return allowed
}

// allowAtOnce has n requests at once each ask s for each events of the bucket key in turn, and returns how many
// were allowed.
func allowAtOnce(t *testing.T, s *store.Store, n, each int, key string, perSecond float64, burst int) int {
	t.Helper()
	var wg sync.WaitGroup
	var allowed atomic.Int64
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if ok, _, err := s.Allow(context.Background(), key, perSecond, burst); err != nil {
					t.Error(err)
				} else if ok {
					allowed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return int(allowed.Load())
}
