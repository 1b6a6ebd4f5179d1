package assembly_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"secondlook/assembly"
	"secondlook/review"
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
