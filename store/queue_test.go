package store_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"secondlook/store"
	"secondlook/store/storetest"
)

func runQueueTests(t *testing.T, newStore storetest.NewStore) {
	t.Run("DeliverAckReclaim", func(t *testing.T) {
		s, _ := newStore(t)
		ctx := context.Background()
		if err := s.EnsureQueue(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.EnsureQueue(ctx); err != nil {
			t.Fatalf("second EnsureQueue: %v", err)
		}
		if err := s.Enqueue(ctx, "review-a"); err != nil {
			t.Fatal(err)
		}
		a, err := s.Next(ctx, "worker-a", 200*time.Millisecond, 10*time.Millisecond)
		if err != nil || a == nil || a.ReviewID != "review-a" {
			t.Fatalf("Next: %+v %v", a, err)
		}
		// worker-a dies without acknowledging: worker-b gets nothing until the visibility timeout passes.
		if j, err := s.Next(ctx, "worker-b", 200*time.Millisecond, 10*time.Millisecond); err != nil || j != nil {
			t.Fatalf("job delivered twice within the visibility timeout: %+v %v", j, err)
		}
		time.Sleep(250 * time.Millisecond) // idle time is the server clock: really wait
		b, err := s.Next(ctx, "worker-b", 200*time.Millisecond, 10*time.Millisecond)
		if err != nil || b == nil || b.ReviewID != "review-a" {
			t.Fatalf("stale job not reclaimed: %+v %v", b, err)
		}
		if err := s.Ack(ctx, b); err != nil {
			t.Fatal(err)
		}
		time.Sleep(250 * time.Millisecond) // idle time is the server clock: really wait
		if j, err := s.Next(ctx, "worker-c", 200*time.Millisecond, 10*time.Millisecond); err != nil || j != nil {
			t.Fatalf("acknowledged job delivered again: %+v %v", j, err)
		}
	})
	t.Run("TouchKeepsAJob", func(t *testing.T) {
		s, _ := newStore(t)
		ctx := context.Background()
		_ = s.EnsureQueue(ctx)
		_ = s.Enqueue(ctx, "review-b")
		a, _ := s.Next(ctx, "worker-a", 200*time.Millisecond, 10*time.Millisecond)
		if a == nil {
			t.Fatal("no job")
		}
		time.Sleep(130 * time.Millisecond)
		if err := s.Touch(ctx, "worker-a", a); err != nil {
			t.Fatal(err)
		}
		time.Sleep(130 * time.Millisecond)
		if j, _ := s.Next(ctx, "worker-b", 200*time.Millisecond, 10*time.Millisecond); j != nil {
			t.Error("a touched job was reclaimed")
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
