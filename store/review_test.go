package store_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"secondlook/consent"
	"secondlook/review"
	"secondlook/store"
	"secondlook/store/storetest"
)

func runReviewStoreTests(t *testing.T, newStore func(t *testing.T) *store.Store) {
	t.Run("CreateGetMove", func(t *testing.T) {
		s := newStore(t)
		ctx := context.Background()
		now := time.Now().UTC().Truncate(time.Millisecond)
		r, err := review.New("ehr-1", review.Request{
			Sources: []review.SourceRequest{{Source: "hospital", PatientID: "p1"}}, Provider: "onco", Question: "Surgery?",
		}, now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CreateReview(ctx, r); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateReview(ctx, r); !errors.Is(err, store.ErrExists) {
			t.Fatalf("second create: %v", err)
		}
		got, err := s.GetReview(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != review.AwaitingConsent || got.Question != "Surgery?" || got.Sources[0].PatientID != "p1" || !got.ExpiresAt.Equal(r.ExpiresAt) {
			t.Errorf("got %+v", got)
		}
		if _, err := s.MoveReview(ctx, r.ID, []review.State{review.Consented}, review.Assembling, ""); !errors.Is(err, review.ErrTransition) {
			t.Errorf("move from the wrong state: %v", err)
		}
		if _, err := s.MoveReview(ctx, r.ID, []review.State{review.AwaitingConsent}, review.Ready, ""); !errors.Is(err, review.ErrTransition) {
			t.Errorf("move outside the graph: %v", err)
		}
		got, err = s.MoveReview(ctx, r.ID, []review.State{review.AwaitingConsent}, review.Consented, "")
		if err != nil || got.State != review.Consented {
			t.Fatalf("move: %v %+v", err, got)
		}
		if a, err := s.ReviewAccess(ctx, r.ID); err != nil || a.Provider != "onco" || a.State != review.Consented || !a.ExpiresAt.Equal(r.ExpiresAt) {
			t.Errorf("access: %+v %v", a, err)
		}
		if ids, err := s.ProviderReviews(ctx, "onco"); err != nil || len(ids) != 1 || ids[0] != r.ID {
			t.Errorf("provider index: %v %v", ids, err)
		}
		if ids, err := s.ProviderReviews(ctx, "other"); err != nil || len(ids) != 0 {
			t.Errorf("another provider's index: %v %v", ids, err)
		}
		if _, err := s.GetReview(ctx, "aaaaaaaaaaaaaaaaaaaaaaaaaa"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("missing review: %v", err)
		}
		if _, err := s.MoveReview(ctx, "aaaaaaaaaaaaaaaaaaaaaaaaaa", []review.State{review.AwaitingConsent}, review.Consented, ""); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("move missing review: %v", err)
		}
	})
	t.Run("MoveIsAtomic", func(t *testing.T) {
		s := newStore(t)
		ctx := context.Background()
		r, _ := review.New("ehr-1", review.Request{Sources: []review.SourceRequest{{Source: "h"}}, Provider: "p", Question: "q"}, time.Now(), time.Hour)
		if err := s.CreateReview(ctx, r); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.MoveReview(ctx, r.ID, []review.State{review.AwaitingConsent}, review.Consented, ""); err == nil {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Errorf("%d of 20 concurrent moves won, want exactly 1", wins)
		}
	})
	t.Run("Consents", func(t *testing.T) {
		s := newStore(t)
		ctx := context.Background()
		r, _ := review.New("ehr-1", review.Request{Sources: []review.SourceRequest{{Source: "a"}, {Source: "b"}}, Provider: "p", Question: "q"}, time.Now(), time.Hour)
		rec := consent.Record{ID: "c1", ReviewID: r.ID, SourceID: "b", ProviderID: "p", Granted: []string{"Condition"}, Start: time.Now(), End: time.Now().Add(time.Hour)}
		if err := s.SaveConsent(ctx, rec); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("consent for a missing review: %v", err)
		}
		if err := s.CreateReview(ctx, r); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveConsent(ctx, rec); err != nil {
			t.Fatal(err)
		}
		rec2 := rec
		rec2.SourceID, rec2.ID = "a", "c2"
		if err := s.SaveConsent(ctx, rec2); err != nil {
			t.Fatal(err)
		}
		rec.Withdrawn = time.Now().UTC()
		if err := s.SaveConsent(ctx, rec); err != nil {
			t.Fatal(err)
		}
		got, err := s.Consents(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].SourceID != "a" || got[1].SourceID != "b" || got[1].Withdrawn.IsZero() || got[0].Granted[0] != "Condition" {
			t.Errorf("consents %+v", got)
		}
	})
}

func TestReviewStoreRealRedis(t *testing.T) {
	runReviewStoreTests(t, func(t *testing.T) *store.Store { s, _ := storetest.RealRedis(t); return s })
}

func TestReviewStoreEmbeddedRedis(t *testing.T) {
	runReviewStoreTests(t, func(t *testing.T) *store.Store { s, _ := storetest.EmbeddedRedis(t); return s })
}

func TestTransitionsAreAudited(t *testing.T) {
	s, _ := storetest.RealRedis(t)
	ctx := context.Background()
	r, _ := review.New("ehr", review.Request{Sources: []review.SourceRequest{{Source: "h"}}, Provider: "p", Question: "q"}, time.Now(), time.Hour)
	if err := s.CreateReview(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MoveReview(ctx, r.ID, []review.State{review.AwaitingConsent}, review.Consented, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MoveReview(ctx, r.ID, []review.State{review.Consented}, review.Withdrawn, store.WithdrawnByPatient); err != nil {
		t.Fatal(err)
	}
	_, _ = s.MoveReview(ctx, r.ID, []review.State{review.Consented}, review.Assembling, "") // refused: not audited
	trail, err := s.Audit(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(trail) != 2 || !strings.Contains(string(trail[0].Event), `"consented"`) || !strings.Contains(string(trail[1].Event), `"withdrawn"`) ||
		!strings.Contains(string(trail[1].Event), "patient") {
		t.Errorf("trail: %d entries", len(trail))
		for _, e := range trail {
			t.Log(string(e.Event))
		}
	}
}

func TestExpireDue(t *testing.T) {
	s, _ := storetest.RealRedis(t)
	ctx := context.Background()
	now := time.Now()
	short, _ := review.New("ehr", review.Request{Sources: []review.SourceRequest{{Source: "h"}}, Provider: "p", Question: "q"}, now.Add(-2*time.Hour), time.Hour)
	long, _ := review.New("ehr", review.Request{Sources: []review.SourceRequest{{Source: "h"}}, Provider: "p", Question: "q"}, now, time.Hour)
	done, _ := review.New("ehr", review.Request{Sources: []review.SourceRequest{{Source: "h"}}, Provider: "p", Question: "q"}, now.Add(-2*time.Hour), time.Hour)
	for _, r := range []*review.Review{short, long, done} {
		if err := s.CreateReview(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.MoveReview(ctx, done.ID, []review.State{review.AwaitingConsent}, review.Withdrawn, store.WithdrawnByPatient); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SavePacket(ctx, store.StoredPacket{ID: "x", ReviewID: short.ID, Provider: "p", ETag: "e"}, []byte("{}"), now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	ids, err := s.ExpireDue(ctx, now)
	if err != nil || len(ids) != 1 || ids[0] != short.ID {
		t.Fatalf("expired %v, %v; want the short review", ids, err)
	}
	for id, want := range map[string]review.State{short.ID: review.Expired, long.ID: review.AwaitingConsent, done.ID: review.Withdrawn} {
		if r, _ := s.GetReview(ctx, id); r.State != want {
			t.Errorf("review state %s, want %s", r.State, want)
		}
	}
	if _, err := s.GetPacket(ctx, short.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired review's packet kept: %v", err)
	}
	if ids, _ := s.ExpireDue(ctx, now); len(ids) != 0 {
		t.Errorf("a second sweep expired %v", ids)
	}
}

// TestReviewCounts: every creation and transition moves the per-state counts the metrics export.
func TestReviewCounts(t *testing.T) {
	s, _ := storetest.RealRedis(t)
	ctx := context.Background()
	var ids []string
	for range 3 {
		r, _ := review.New("ehr", review.Request{Sources: []review.SourceRequest{{Source: "h"}}, Provider: "p", Question: "q"}, time.Now(), time.Hour)
		if err := s.CreateReview(ctx, r); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	move := func(id string, from, to review.State) {
		t.Helper()
		if _, err := s.MoveReview(ctx, id, []review.State{from}, to, ""); err != nil {
			t.Fatal(err)
		}
	}
	move(ids[0], review.AwaitingConsent, review.Consented)
	move(ids[0], review.Consented, review.Assembling)
	move(ids[0], review.Assembling, review.Ready)
	move(ids[1], review.AwaitingConsent, review.Withdrawn)
	// A refused transition changes nothing.
	if _, err := s.MoveReview(ctx, ids[1], []review.State{review.AwaitingConsent}, review.Consented, ""); err == nil {
		t.Fatal("moved a withdrawn review")
	}
	got, err := s.ReviewCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[review.State]int64{review.AwaitingConsent: 1, review.Consented: 0, review.Assembling: 0, review.Ready: 1, review.Withdrawn: 1}
	for st, n := range want {
		if got[st] != n {
			t.Errorf("%s: %d, want %d (all: %v)", st, got[st], n, got)
		}
	}
}

// TestAppendAuditIf: an event decided on a review's access is appended only while the review still has that access;
// after a withdrawal the same append is refused and nothing is written, and a fresh read lets it through again.
func TestAppendAuditIf(t *testing.T) {
	for name, newStore := range map[string]storetest.NewStore{"real": storetest.RealRedis, "embedded": storetest.EmbeddedRedis} {
		t.Run(name, func(t *testing.T) {
			s, _ := newStore(t)
			ctx := context.Background()
			id, acc := newReviewAccess(t, s)
			if err := s.AppendAuditIf(ctx, id, []byte(`{"n":1}`), *acc); err != nil {
				t.Fatalf("append on the current access: %v", err)
			}
			other := *acc
			other.Provider = "cardio"
			if err := s.AppendAuditIf(ctx, id, []byte(`{"n":2}`), other); !errors.Is(err, store.ErrAccessChanged) {
				t.Errorf("append decided for another provider: %v", err)
			}
			if _, err := s.MoveReview(ctx, id, []review.State{review.AwaitingConsent}, review.Withdrawn, ""); err != nil {
				t.Fatal(err)
			}
			if err := s.AppendAuditIf(ctx, id, []byte(`{"n":3}`), *acc); !errors.Is(err, store.ErrAccessChanged) {
				t.Fatalf("append on a stale access: %v", err)
			}
			fresh, err := s.ReviewAccess(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.AppendAuditIf(ctx, id, []byte(`{"n":4}`), *fresh); err != nil {
				t.Fatalf("append on the fresh access: %v", err)
			}
			trail, err := s.Audit(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range trail {
				got = append(got, string(e.Event))
			}
			if len(got) != 3 || got[0] != `{"n":1}` || !strings.Contains(got[1], "withdrawn") || got[2] != `{"n":4}` {
				t.Errorf("trail %q", got)
			}
		})
	}
}

// TestTransitionWithoutAuditDoesNotHappen: the move and its AuditEvent are one step. When the trail cannot be
// written (here its key holds the wrong type), the move fails and the review keeps its state; with the append as a
// second step the review would be consented with nothing in its trail.
func TestTransitionWithoutAuditDoesNotHappen(t *testing.T) {
	for name, newStore := range map[string]storetest.NewStore{"real": storetest.RealRedis, "embedded": storetest.EmbeddedRedis} {
		t.Run(name, func(t *testing.T) {
			s, _ := newStore(t)
			ctx := context.Background()
			r, _ := review.New("ehr", review.Request{Sources: []review.SourceRequest{{Source: "h"}}, Provider: "p", Question: "q"}, time.Now(), time.Hour)
			if err := s.CreateReview(ctx, r); err != nil {
				t.Fatal(err)
			}
			if err := s.Client().Set(ctx, s.Prefix()+"{"+r.ID+"}:audit", "not a stream", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.MoveReview(ctx, r.ID, []review.State{review.AwaitingConsent}, review.Consented, ""); err == nil {
				t.Fatal("the move succeeded although its audit entry could not be written")
			}
			got, err := s.GetReview(ctx, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != review.AwaitingConsent {
				t.Errorf("state %s after a failed move, want awaiting-consent", got.State)
			}
		})
	}
}
