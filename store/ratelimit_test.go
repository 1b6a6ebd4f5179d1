package store_test

import (
	"context"
	"testing"
	"time"

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
