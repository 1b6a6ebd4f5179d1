package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"secondlook/store"
	"secondlook/store/storetest"
)

func runAuditTests(t *testing.T, newStore storetest.NewStore) {
	s, _ := newStore(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.AppendAudit(ctx, "rev-audit", []byte(fmt.Sprintf(`{"resourceType":"AuditEvent","n":%d}`, i)))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	trail, err := s.Audit(ctx, "rev-audit")
	if err != nil {
		t.Fatal(err)
	}
	if len(trail) != 20 {
		t.Fatalf("%d entries, want 20", len(trail))
	}
	// An entry slipped in without the chain breaks it.
	rdb := s.Client()
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: s.Prefix() + "{rev-audit}:audit", Values: []any{"event", "{}", "prev", trail[19].Hash, "hash", "forged"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Audit(ctx, "rev-audit"); !errors.Is(err, store.ErrChainBroken) {
		t.Errorf("forged entry: %v", err)
	}
}

func TestAuditRealRedis(t *testing.T)     { runAuditTests(t, storetest.RealRedis) }
func TestAuditEmbeddedRedis(t *testing.T) { runAuditTests(t, storetest.EmbeddedRedis) }

// TestAuditReplicasAndReviews: three replicas append to five reviews at once. Each replica sends every review's
// events in one pipelined round, and a round whose head another replica moved is chained again: every event lands
// once and every trail's chain holds.
func TestAuditReplicasAndReviews(t *testing.T) {
	for name, newStore := range map[string]storetest.NewStore{"real": storetest.RealRedis, "embedded": storetest.EmbeddedRedis} {
		t.Run(name, func(t *testing.T) {
			s, _ := newStore(t)
			replicas := []*store.Store{s, store.New(s.Client(), s.Prefix()), store.New(s.Client(), s.Prefix())}
			ctx := context.Background()
			const reviews, perReview = 5, 30
			var wg sync.WaitGroup
			errs := make(chan error, reviews*perReview)
			for r := range reviews {
				for i := range perReview {
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs <- replicas[(r+i)%len(replicas)].AppendAudit(ctx, fmt.Sprintf("rev-%d", r), []byte(fmt.Sprintf(`{"n":%d}`, i)))
					}()
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			for r := range reviews {
				trail, err := s.Audit(ctx, fmt.Sprintf("rev-%d", r))
				if err != nil {
					t.Fatal(err)
				}
				seen := map[string]bool{}
				for _, e := range trail {
					seen[string(e.Event)] = true
				}
				if len(trail) != perReview || len(seen) != perReview {
					t.Errorf("rev-%d: %d entries, %d distinct; want %d", r, len(trail), len(seen), perReview)
				}
			}
		})
	}
}
