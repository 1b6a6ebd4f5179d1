package assembly_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"secondlook/assembly"
	"secondlook/review"
	"secondlook/sandbox"
	"secondlook/store"
	"secondlook/store/storetest"
)

// flakyReviews fails one GetReview call, the failAt-th, as Redis does when it goes away for a moment.
type flakyReviews struct {
	assembly.Reviews
	calls, failAt atomic.Int32
}

func (f *flakyReviews) GetReview(ctx context.Context, id string) (*review.Review, error) {
	if f.calls.Add(1) == f.failAt.Load() {
		return nil, errors.New("get review: dial tcp: connection refused")
	}
	return f.Reviews.GetReview(ctx, id)
}

// TestUnreadableReviewBeforeStoringIsRetried: the worker checks the review once more before it stores the packet.
// When that read fails (Redis restarting), the job is retried; it used to be taken for a withdrawn review,
// acknowledged, and lost, the review left assembling forever.
func TestUnreadableReviewBeforeStoringIsRetried(t *testing.T) {
	flaky := &flakyReviews{}
	flaky.failAt.Store(2) // the first read starts the assembly, the second is the check before storing
	e := newEnv(t, storetest.EmbeddedRedis, func(c *assembly.Config) {
		flaky.Reviews = c.Reviews
		c.Reviews = flaky
	})
	r := e.consented(t)
	runWorker(t, e.worker)
	if err := e.store.Enqueue(context.Background(), r.ID); err != nil {
		t.Fatal(err)
	}
	waitState(t, e.store, r.ID, review.Ready)
	if _, err := e.store.GetPacket(context.Background(), r.ID); err != nil {
		t.Fatalf("no packet: %v", err)
	}
	if n := flaky.calls.Load(); n < 3 {
		t.Errorf("the review was read %d times: the failing read was not the one before storing", n)
	}
}

// overtakingPackets stores the packet, then ends the review as another party would before this worker moves it
// to ready: another worker on the same job (a job re-delivered after a stall) moving it to ready, or the patient
// withdrawing.
type overtakingPackets struct {
	assembly.Packets
	store *store.Store
	to    review.State
}

func (o *overtakingPackets) SavePacket(ctx context.Context, p store.StoredPacket, bundle []byte, expires time.Time) (bool, error) {
	saved, err := o.Packets.SavePacket(ctx, p, bundle, expires)
	if err != nil {
		return saved, err
	}
	if _, err := o.store.MoveReview(ctx, p.ReviewID, []review.State{review.Assembling}, o.to, ""); err != nil {
		return saved, err
	}
	return saved, nil
}

// TestOvertakenWhileStoring: a worker that stored the packet and then finds the review no longer assembling keeps
// the packet if the review is ready (another worker finished the same job first: the first packet stored is the
// review's, and used to be deleted, leaving a ready review without a packet) and removes it otherwise.
func TestOvertakenWhileStoring(t *testing.T) {
	for _, tt := range []struct {
		to         review.State
		wantPacket bool
	}{
		{to: review.Ready, wantPacket: true},
		{to: review.Withdrawn, wantPacket: false},
	} {
		t.Run(string(tt.to), func(t *testing.T) {
			e := newEnv(t, storetest.EmbeddedRedis, func(c *assembly.Config) {
				c.Packets = &overtakingPackets{Packets: c.Packets, store: c.Reviews.(*store.Store), to: tt.to}
			})
			r := e.consented(t)
			if err := e.worker.Assemble(context.Background(), r.ID); err != nil {
				t.Fatalf("Assemble: %v", err)
			}
			got, err := e.store.GetReview(context.Background(), r.ID)
			if err != nil || got.State != tt.to {
				t.Fatalf("review %v (%v), want %s", got, err, tt.to)
			}
			_, err = e.store.GetPacket(context.Background(), r.ID)
			if tt.wantPacket && err != nil {
				t.Errorf("the ready review lost its packet: %v", err)
			}
			if !tt.wantPacket && !errors.Is(err, store.ErrNotFound) {
				t.Errorf("the %s review kept a packet: %v", tt.to, err)
			}
		})
	}
}

// stalledQueue is a worker's view of the queue while it cannot reach Redis to touch its job (a partition, a long
// pause): touches fail until released. It counts the worker's other queue calls.
type stalledQueue struct {
	assembly.Queue
	stalled              atomic.Bool
	nexts, acks, retries atomic.Int32
}

func (q *stalledQueue) Touch(ctx context.Context, consumer string, job *store.Job) error {
	if q.stalled.Load() {
		return errors.New("touch job: i/o timeout")
	}
	return q.Queue.Touch(ctx, consumer, job)
}

func (q *stalledQueue) Next(ctx context.Context, consumer string, visibility, block time.Duration) (*store.Job, error) {
	q.nexts.Add(1)
	return q.Queue.Next(ctx, consumer, visibility, block)
}

func (q *stalledQueue) Ack(ctx context.Context, job *store.Job) error {
	q.acks.Add(1)
	return q.Queue.Ack(ctx, job)
}

func (q *stalledQueue) Retry(ctx context.Context, job *store.Job, delay time.Duration) error {
	q.retries.Add(1)
	return q.Queue.Retry(ctx, job, delay)
}

// countingPackets counts the packets a worker stores.
type countingPackets struct {
	assembly.Packets
	saves atomic.Int32
}

func (c *countingPackets) SavePacket(ctx context.Context, p store.StoredPacket, bundle []byte, expires time.Time) (bool, error) {
	c.saves.Add(1)
	return c.Packets.SavePacket(ctx, p, bundle, expires)
}

// TestWorkerStopsWhenItsJobIsTakenOver: a worker that could not touch its job for longer than the visibility timeout
// finds, when it can again, that another worker has claimed the job. It stops there: it stores no packet, and neither
// acknowledges nor retries the job, which stays the other worker's.
func TestWorkerStopsWhenItsJobIsTakenOver(t *testing.T) {
	const visibility = time.Second
	q := &stalledQueue{}
	q.stalled.Store(true)
	packets := &countingPackets{}
	e := newEnv(t, storetest.RealRedis, func(c *assembly.Config) {
		c.Visibility, c.Consumer = visibility, "worker-a"
		q.Queue, c.Queue = c.Queue, q
		packets.Packets, c.Packets = c.Packets, packets
	})
	r := e.consented(t)
	// The retrieval outlasts the takeover by far.
	e.site["hospital"].Faults().Add(sandbox.Fault{Path: "DiagnosticReport", Latency: 8 * time.Second, Times: 1})
	runWorker(t, e.worker)
	ctx := context.Background()
	if err := e.store.Enqueue(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	waitState(t, e.store, r.ID, review.Assembling)
	var taken *store.Job
	for deadline := time.Now().Add(10 * time.Second); taken == nil; time.Sleep(50 * time.Millisecond) {
		j, err := e.store.Next(ctx, "worker-b", visibility, 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		taken = j
		if time.Now().After(deadline) {
			t.Fatal("the stalled worker's job was never claimed")
		}
	}
	q.stalled.Store(false)
	// worker-a's next touch finds the job gone; it goes back to the queue for other work.
	for deadline := time.Now().Add(15 * time.Second); q.nexts.Load() < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("worker-a is still on the job it lost")
		}
	}
	if n := packets.saves.Load(); n != 0 {
		t.Errorf("worker-a stored %d packets for a job it had lost", n)
	}
	if a, rt := q.acks.Load(), q.retries.Load(); a != 0 || rt != 0 {
		t.Errorf("worker-a acknowledged %d and retried %d times a job it had lost", a, rt)
	}
	if got, _ := e.store.GetReview(ctx, r.ID); got.State != review.Assembling {
		t.Errorf("review %s, want still assembling for worker-b", got.State)
	}
	if err := e.store.Touch(ctx, "worker-b", taken); err != nil {
		t.Errorf("the job is no longer worker-b's: %v", err)
	}
}
