package store_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"secondlook/review"
	"secondlook/store"
	"secondlook/store/storetest"
)

// BenchmarkAuditRound appends one guarded AuditEvent (of a packet read's size, 900 bytes) to each of 64 reviews
// per round, as a gateway reading many packets at once does, and reports the Redis server's CPU per event beside
// the wall time per round. Needs a real Redis (REDIS_URL or 127.0.0.1:6379).
//
//	go test -run '^$' -bench BenchmarkAuditRound -benchtime 2000x ./store
func BenchmarkAuditRound(b *testing.B) {
	ctx := context.Background()
	s := storetest.OpenRealRedis(b)
	rdb := s.Client()
	const reviews = 64
	var round []store.RoundEvent
	event := bytes.Repeat([]byte("x"), 900)
	for range reviews {
		id, acc := newReviewAccess(b, s)
		round = append(round, store.RoundEvent{Review: id, Event: event, Guard: acc})
	}
	for _, err := range s.AppendRound(round) { // loads the script and learns the heads
		if err != nil {
			b.Fatal(err)
		}
	}
	cpu0 := storetest.ServerCPU(ctx, rdb)
	b.ResetTimer()
	for b.Loop() {
		for _, err := range s.AppendRound(round) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	cpu := storetest.ServerCPU(ctx, rdb) - cpu0
	b.ReportMetric(float64(cpu.Nanoseconds())/1000/float64(b.N*reviews), "redis-µs/event")
}

// newReviewAccess stores a new review (awaiting consent, for provider onco) and returns its id and its access as
// the store reads it.
func newReviewAccess(tb testing.TB, s *store.Store) (string, *store.Access) {
	tb.Helper()
	ctx := context.Background()
	r, _ := review.New("ehr", review.Request{Sources: []review.SourceRequest{{Source: "h"}}, Provider: "onco", Question: "q"}, time.Now(), time.Hour)
	if err := s.CreateReview(ctx, r); err != nil {
		tb.Fatal(err)
	}
	acc, err := s.ReviewAccess(ctx, r.ID)
	if err != nil {
		tb.Fatal(err)
	}
	return r.ID, acc
}
