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
