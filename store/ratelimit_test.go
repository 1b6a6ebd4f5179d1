package store_test

import (
	"context"
	"testing"
	"time"

	"secondlook/store/storetest"
)

func TestAllowIsShared(t *testing.T) {
	a, _ := storetest.RealRedis(t)
	ctx := context.Background()
	allowed := 0
	var wait time.Duration
	for range 5 {
		ok, w, err := a.Allow(ctx, "caller:onco", 1, 3)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			allowed++
		} else {
			wait = w
		}
	}
	if allowed != 3 || wait <= 0 {
		t.Errorf("%d allowed (want the burst of 3), retry after %s", allowed, wait)
	}
	// Another bucket is untouched.
	if ok, _, _ := a.Allow(ctx, "caller:cardio", 1, 3); !ok {
		t.Error("another caller was limited")
	}
	// A waiter lets the next event through once the bucket refills.
	start := time.Now()
	if err := a.Waiter("caller:onco", 1, 3)(ctx); err != nil {
		t.Fatal(err)
	}
	if w := time.Since(start); w < 100*time.Millisecond || w > 2*time.Second {
		t.Errorf("waited %s for a bucket refilling at 1/s", w)
	}
}
