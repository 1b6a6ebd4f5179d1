package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"secondlook/review"
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

// TestAuditRoundOfManyReviews: one round carrying several reviews, with runs the guard refuses and a run chained
// after a refused one. On a single Redis node the round is one script call; on a Cluster one per run. Each event
// gets its own answer, refused events are not written, and every trail's chain holds.
func TestAuditRoundOfManyReviews(t *testing.T) {
	for name, newStore := range map[string]storetest.NewStore{"real": storetest.RealRedis, "embedded": storetest.EmbeddedRedis} {
		t.Run(name, func(t *testing.T) {
			s, _ := newStore(t)
			ctx := context.Background()
			var ids []string
			var accs []*store.Access
			for range 3 {
				id, acc := newReviewAccess(t, s)
				ids, accs = append(ids, id), append(accs, acc)
			}
			// The third review is withdrawn: an access decided before that is refused.
			if _, err := s.MoveReview(ctx, ids[2], []review.State{review.AwaitingConsent}, review.Withdrawn, ""); err != nil {
				t.Fatal(err)
			}
			stale := *accs[0]
			stale.Provider = "cardio"
			// Load the script (a fresh Redis has none cached), then count the round's calls.
			if err := s.AppendAudit(ctx, ids[1], []byte(`{"warm":1}`)); err != nil {
				t.Fatal(err)
			}
			var calls atomic.Int64
			s.Client().AddHook(countEvalSha{&calls})
			errs := s.AppendRound([]store.RoundEvent{
				{Review: ids[0], Event: []byte(`{"a":1}`), Guard: accs[0]},
				{Review: ids[1], Event: []byte(`{"b":1}`)},
				{Review: ids[0], Event: []byte(`{"a":2}`), Guard: accs[0]},
				{Review: ids[2], Event: []byte(`{"c":1}`), Guard: accs[2]},
				{Review: ids[0], Event: []byte(`{"a":3}`), Guard: &stale},
				{Review: ids[0], Event: []byte(`{"a":4}`), Guard: accs[0]}, // chained after the refused run: sent again
				{Review: ids[1], Event: []byte(`{"b":2}`)},
			})
			want := []error{nil, nil, nil, store.ErrAccessChanged, store.ErrAccessChanged, nil, nil}
			for i := range want {
				if !errors.Is(errs[i], want[i]) || (want[i] == nil && errs[i] != nil) {
					t.Errorf("event %d: %v, want %v", i, errs[i], want[i])
				}
			}
			// Runs: a1+a2, a3, a4 for the first review, b1+b2, c1: five. One call on a single node, five on a
			// Cluster; the run after the refused one is then sent again on its own.
			wantCalls := int64(1 + 1)
			if _, cluster := s.Client().(*redis.ClusterClient); cluster {
				wantCalls = 5 + 1
			}
			if got := calls.Load(); got != wantCalls {
				t.Errorf("%d script calls, want %d", got, wantCalls)
			}
			for i, want := range [][]string{{`{"a":1}`, `{"a":2}`, `{"a":4}`}, {`{"b":1}`, `{"b":2}`}} {
				trail, err := s.Audit(ctx, ids[i])
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, e := range trail {
					if strings.HasPrefix(string(e.Event), `{"a"`) || strings.HasPrefix(string(e.Event), `{"b"`) {
						got = append(got, string(e.Event))
					}
				}
				if !slices.Equal(got, want) {
					t.Errorf("review %d trail %q, want %q", i, got, want)
				}
			}
			trail, err := s.Audit(ctx, ids[2])
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range trail {
				if strings.Contains(string(e.Event), `"c"`) {
					t.Errorf("refused event written: %s", e.Event)
				}
			}
		})
	}
}

// countEvalSha counts the script calls (EVALSHA and EVAL) sent, alone or in pipelines.
type countEvalSha struct{ n *atomic.Int64 }

func (h countEvalSha) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countEvalSha) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.count(cmd)
		return next(ctx, cmd)
	}
}
func (h countEvalSha) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			h.count(c)
		}
		return next(ctx, cmds)
	}
}
func (h countEvalSha) count(c redis.Cmder) {
	if n := c.Name(); n == "evalsha" {
		h.n.Add(1)
	}
}

// TestAuditRoundResendsEachRunOnce: another replica appended to a review after this one last did, and this one's
// next round holds two runs of that review (an unconditional event, then a guarded one). Both come back "head
// moved"; each is sent again on its own once, the second chained from the head the first left: two script calls
// after the round's. Before, the second was chained from the head the round had answered, which the first had just moved:
// one call more, always.
func TestAuditRoundResendsEachRunOnce(t *testing.T) {
	s, _ := storetest.RealRedis(t)
	other := store.New(s.Client(), s.Prefix())
	ctx := context.Background()
	id, acc := newReviewAccess(t, s)
	if errs := s.AppendRound([]store.RoundEvent{{Review: id, Event: []byte(`{"n":0}`)}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if err := other.AppendAudit(ctx, id, []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	s.Client().AddHook(countEvalSha{&calls})
	for i, err := range s.AppendRound([]store.RoundEvent{{Review: id, Event: []byte(`{"n":2}`)}, {Review: id, Event: []byte(`{"n":3}`), Guard: acc}}) {
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	round := int64(1) // one call for both runs on a single node; one each on a Cluster
	if _, cluster := s.Client().(*redis.ClusterClient); cluster {
		round = 2
	}
	if n := calls.Load(); n != round+2 {
		t.Errorf("%d script calls, want the round's %d and one for each run sent again", n, round)
	}
	if trail, err := s.Audit(ctx, id); err != nil || len(trail) != 4 {
		t.Errorf("trail of %d entries: %v", len(trail), err)
	}
}
