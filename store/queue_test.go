package store_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"secondlook/review"
	"secondlook/store"
	"secondlook/store/storetest"
)

func runQueueTests(t *testing.T, newStore storetest.NewStore) {
	t.Run("DeliverAckReclaim", func(t *testing.T) {
		s, _ := newStore(t)
		ctx := context.Background()
		// Far enough apart that a busy machine (CI runs packages side by side) does not blur them.
		const visibility = time.Second
		if err := s.EnsureQueue(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.EnsureQueue(ctx); err != nil {
			t.Fatalf("second EnsureQueue: %v", err)
		}
		if err := s.Enqueue(ctx, "review-a"); err != nil {
			t.Fatal(err)
		}
		a, err := s.Next(ctx, "worker-a", visibility, 10*time.Millisecond)
		if err != nil || a == nil || a.ReviewID != "review-a" {
			t.Fatalf("Next: %+v %v", a, err)
		}
		// worker-a dies without acknowledging: worker-b gets nothing until the visibility timeout passes.
		if j, err := s.Next(ctx, "worker-b", visibility, 10*time.Millisecond); err != nil || j != nil {
			t.Fatalf("job delivered twice within the visibility timeout: %+v %v", j, err)
		}
		time.Sleep(visibility + 300*time.Millisecond) // idle time is the server clock: really wait
		b, err := s.Next(ctx, "worker-b", visibility, 10*time.Millisecond)
		if err != nil || b == nil || b.ReviewID != "review-a" {
			t.Fatalf("stale job not reclaimed: %+v %v", b, err)
		}
		if err := s.Ack(ctx, b); err != nil {
			t.Fatal(err)
		}
		time.Sleep(visibility + 300*time.Millisecond) // idle time is the server clock: really wait
		if j, err := s.Next(ctx, "worker-c", visibility, 10*time.Millisecond); err != nil || j != nil {
			t.Fatalf("acknowledged job delivered again: %+v %v", j, err)
		}
	})
	t.Run("TouchKeepsAJob", func(t *testing.T) {
		s, _ := newStore(t)
		ctx := context.Background()
		_ = s.EnsureQueue(ctx)
		_ = s.Enqueue(ctx, "review-b")
		// Sleeps well apart from the visibility timeout, so that a busy machine does not blur them.
		const visibility = 800 * time.Millisecond
		a, _ := s.Next(ctx, "worker-a", visibility, 10*time.Millisecond)
		if a == nil {
			t.Fatal("no job")
		}
		time.Sleep(500 * time.Millisecond)
		if err := s.Touch(ctx, "worker-a", a); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond) // past the timeout counted from the delivery, not from the touch
		if j, _ := s.Next(ctx, "worker-b", visibility, 10*time.Millisecond); j != nil {
			t.Error("a touched job was reclaimed")
		}
	})
	t.Run("TakenOverJobIsLost", func(t *testing.T) {
		s, _ := newStore(t)
		ctx := context.Background()
		const visibility = time.Second
		_ = s.EnsureQueue(ctx)
		_ = s.Enqueue(ctx, "review-e")
		a, _ := s.Next(ctx, "worker-a", visibility, 10*time.Millisecond)
		if a == nil {
			t.Fatal("no job")
		}
		time.Sleep(visibility + 100*time.Millisecond) // worker-a stalls past the visibility timeout (the server's clock)
		b, _ := s.Next(ctx, "worker-b", visibility, 10*time.Millisecond)
		if b == nil || b.ID != a.ID {
			t.Fatalf("stale job not reclaimed: %+v", b)
		}
		// worker-a wakes up: it can neither take the job back nor retry it (which would remove worker-b's delivery).
		if err := s.Touch(ctx, "worker-a", a); !errors.Is(err, store.ErrJobLost) {
			t.Errorf("Touch by the stalled worker = %v, want ErrJobLost", err)
		}
		if err := s.Retry(ctx, a, time.Millisecond); !errors.Is(err, store.ErrJobLost) {
			t.Errorf("Retry by the stalled worker = %v, want ErrJobLost", err)
		}
		if _, delayed, err := s.QueueDepth(ctx); err != nil || delayed != 0 {
			t.Errorf("the stalled worker scheduled %d retries (%v)", delayed, err)
		}
		// The job is still worker-b's: its touch works, and keeps it from worker-a.
		if err := s.Touch(ctx, "worker-b", b); err != nil {
			t.Fatalf("Touch by the new holder: %v", err)
		}
		if j, _ := s.Next(ctx, "worker-a", visibility, 10*time.Millisecond); j != nil {
			t.Error("the job went back to the stalled worker although its new holder touched it")
		}
		if err := s.Retry(ctx, b, time.Minute); err != nil {
			t.Fatalf("Retry by the new holder: %v", err)
		}
		if _, delayed, _ := s.QueueDepth(ctx); delayed != 1 {
			t.Errorf("after the new holder's retry: %d delayed, want 1", delayed)
		}
		if err := s.Touch(ctx, "worker-b", b); !errors.Is(err, store.ErrJobLost) {
			t.Errorf("Touch of a retried delivery = %v, want ErrJobLost", err)
		}
	})
	t.Run("RetryAfterDelay", func(t *testing.T) {
		s, _ := newStore(t)
		ctx := context.Background()
		_ = s.EnsureQueue(ctx)
		_ = s.Enqueue(ctx, "review-c")
		a, _ := s.Next(ctx, "worker-a", time.Minute, 10*time.Millisecond)
		if err := s.Retry(ctx, a, 150*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if j, _ := s.Next(ctx, "worker-a", time.Minute, 10*time.Millisecond); j != nil {
			t.Fatal("retry delivered before its delay")
		}
		if _, delayed, err := s.QueueDepth(ctx); err != nil || delayed != 1 {
			t.Errorf("delayed = %d, %v", delayed, err)
		}
		time.Sleep(200 * time.Millisecond)
		j, err := s.Next(ctx, "worker-a", time.Minute, 10*time.Millisecond)
		if err != nil || j == nil || j.ReviewID != "review-c" {
			t.Fatalf("retry not delivered: %+v %v", j, err)
		}
		if n, _ := s.Attempt(ctx, "review-c"); n != 1 {
			t.Errorf("attempt %d", n)
		}
		if n, _ := s.Attempt(ctx, "review-c"); n != 2 {
			t.Errorf("attempt %d", n)
		}
	})
	t.Run("OwedJobPaidOnce", func(t *testing.T) {
		s, _ := newStore(t)
		ctx := context.Background()
		_ = s.EnsureQueue(ctx)
		if paid, err := s.PayJob(ctx, "review-d"); err != nil || paid {
			t.Fatalf("paid a job nobody owed: %v %v", paid, err)
		}
		if err := s.OweJob(ctx, "review-d"); err != nil {
			t.Fatal(err)
		}
		for _, want := range []bool{true, false} {
			if paid, err := s.PayJob(ctx, "review-d"); err != nil || paid != want {
				t.Errorf("PayJob = %v, %v; want %v", paid, err, want)
			}
		}
		if pending, _, err := s.QueueDepth(ctx); err != nil || pending != 1 {
			t.Errorf("queued %d jobs (%v), want 1", pending, err)
		}
	})
	t.Run("PayOwedJobs", func(t *testing.T) {
		s, _ := newStore(t)
		ctx := context.Background()
		_ = s.EnsureQueue(ctx)
		// owed creates a review, records its debt as the consent does before moving it, and moves it along path.
		owed := func(path ...review.State) string {
			r, _ := review.New("ehr-1", review.Request{Sources: []review.SourceRequest{{Source: "h"}}, Provider: "p", Question: "q"}, time.Now(), time.Hour)
			if err := s.CreateReview(ctx, r); err != nil {
				t.Fatal(err)
			}
			if err := s.OweJob(ctx, r.ID); err != nil {
				t.Fatal(err)
			}
			from := review.AwaitingConsent
			for _, to := range path {
				if _, err := s.MoveReview(ctx, r.ID, []review.State{from}, to, ""); err != nil {
					t.Fatal(err)
				}
				from = to
			}
			return r.ID
		}
		lost := owed(review.Consented)                          // moved, then the consenting process died: never paid
		waiting := owed()                                       // the move failed: still awaiting consent
		moved := owed(review.Consented, review.Assembling)      // its job came from elsewhere (a duplicate debt)
		withdrawn := owed(review.Withdrawn)                     // ended before consenting
		owed(review.Consented, review.Assembling, review.Ready) // done
		if paid, err := s.PayOwedJobs(ctx, time.Now().Add(-time.Hour)); err != nil || len(paid) != 0 {
			t.Fatalf("paid debts recorded after the cut-off: %v %v", paid, err)
		}
		paid, err := s.PayOwedJobs(ctx, time.Now().Add(time.Second))
		if err != nil || len(paid) != 1 || paid[0] != lost {
			t.Fatalf("PayOwedJobs = %v, %v; want the lost job only", paid, err)
		}
		if paid, err := s.PayOwedJobs(ctx, time.Now().Add(time.Second)); err != nil || len(paid) != 0 {
			t.Fatalf("second PayOwedJobs = %v, %v; want nothing: every debt is settled", paid, err)
		}
		for _, id := range []string{moved, withdrawn} {
			if ok, err := s.PayJob(ctx, id); err != nil || ok {
				t.Errorf("the debt of a review that moved on was kept: %v %v", ok, err)
			}
		}
		// The review whose move failed keeps its debt: once it is consented, the next sweep queues its job.
		if _, err := s.MoveReview(ctx, waiting, []review.State{review.AwaitingConsent}, review.Consented, ""); err != nil {
			t.Fatal(err)
		}
		if paid, err := s.PayOwedJobs(ctx, time.Now().Add(time.Second)); err != nil || len(paid) != 1 || paid[0] != waiting {
			t.Fatalf("PayOwedJobs = %v, %v; want the review consented since", paid, err)
		}
		if pending, _, err := s.QueueDepth(ctx); err != nil || pending != 2 {
			t.Errorf("queued %d jobs (%v), want 2", pending, err)
		}
		// Debts that are kept never hide younger ones: with pages of two, three reviews still awaiting consent
		// lead the set, and the lost job recorded after them is still queued.
		store.SetOwedPage(t, 2)
		for range 3 {
			owed()
		}
		lateLost := owed(review.Consented)
		if paid, err := s.PayOwedJobs(ctx, time.Now().Add(time.Second)); err != nil || len(paid) != 1 || paid[0] != lateLost {
			t.Fatalf("PayOwedJobs = %v, %v; want the lost job behind the kept debts", paid, err)
		}
	})
	t.Run("Packet", func(t *testing.T) {
		s, _ := newStore(t)
		ctx := context.Background()
		bundle := bytes.Repeat([]byte(`{"resourceType":"Bundle"}`), 100)
		p := store.StoredPacket{ID: "p1", ReviewID: "rev-1", Provider: "onco", ETag: "abc", Created: time.Now().UTC().Truncate(time.Millisecond), Report: []byte(`{}`)}
		created, err := s.SavePacket(ctx, p, bundle, time.Now().Add(time.Hour))
		if err != nil || !created {
			t.Fatalf("save: %v %v", created, err)
		}
		p2 := p
		p2.ETag = "other"
		if created, err := s.SavePacket(ctx, p2, []byte("x"), time.Now().Add(time.Hour)); err != nil || created {
			t.Fatalf("second save replaced the packet: %v %v", created, err)
		}
		got, err := s.GetPacket(ctx, "rev-1")
		if err != nil {
			t.Fatal(err)
		}
		b, err := got.Bundle()
		if err != nil || !bytes.Equal(b, bundle) || got.ETag != "abc" || got.Provider != "onco" || !got.Created.Equal(p.Created) {
			t.Errorf("got %+v (%d bytes, %v)", got, len(b), err)
		}
		if len(got.Gzip) >= len(bundle) {
			t.Errorf("stored %d bytes for %d: not compressed", len(got.Gzip), len(bundle))
		}
		if err := s.DeletePacket(ctx, "rev-1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetPacket(ctx, "rev-1"); err != store.ErrNotFound {
			t.Errorf("after delete: %v", err)
		}
	})
}

func TestQueueRealRedis(t *testing.T)     { runQueueTests(t, storetest.RealRedis) }
func TestQueueEmbeddedRedis(t *testing.T) { runQueueTests(t, storetest.EmbeddedRedis) }
