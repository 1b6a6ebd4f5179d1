package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// A review's audit trail is a Redis Stream of AuditEvent resources, chained: each entry carries the SHA-256 of the
// previous entry's hash and its own event, so removing or changing an entry breaks every hash after it.
//
//	<prefix>{<review>}:audit        stream: event (JSON), prev (hex), hash (hex)
//	<prefix>{<review>}:audit:head   the last hash
//
// The head and the stream share the review's hash tag, so the append is one optimistic transaction (WATCH head).

// AuditRetention is how long an audit trail is kept after its last entry: longer than the review, so access can be
// accounted for after the packet is gone.
const AuditRetention = ReviewRetention + 365*24*time.Hour

// AuditEntry is one stored audit event.
type AuditEntry struct {
	ID    string
	Event []byte
	Prev  string
	Hash  string
}

// ErrChainBroken reports an audit trail whose hashes do not link.
var ErrChainBroken = errors.New("store: audit chain broken")

// chainHash is the hash of an entry: SHA-256 over the previous hash and the event.
func chainHash(prev string, event []byte) string {
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write([]byte{0})
	h.Write(event)
	return hex.EncodeToString(h.Sum(nil))
}

// AppendAudit appends an event to a review's trail. Appends to one review from this process are batched: while one
// transaction is in flight, later events queue and go together in the next, so a burst of reads of one packet costs
// one round of Redis transactions rather than one contended transaction each. Across replicas the transaction
// (WATCH on the head) is retried when another replica appended at the same time. The event is written even if ctx
// ends first: an access that happened is recorded.
func (s *Store) AppendAudit(ctx context.Context, reviewID string, event []byte) error {
	if _, err := s.key("audit", reviewID); err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	item := &auditItem{event: event, done: make(chan error, 1)}
	b := s.audit
	b.mu.Lock()
	q := b.queues[reviewID]
	if q == nil {
		q = &auditQueue{}
		b.queues[reviewID] = q
	}
	q.pending = append(q.pending, item)
	if !q.running {
		q.running = true
		go s.flushAudit(reviewID, q)
	}
	b.mu.Unlock()
	select {
	case err := <-item.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// auditBatcher queues appends per review within this process.
type auditBatcher struct {
	mu     sync.Mutex
	queues map[string]*auditQueue
}

type auditQueue struct {
	pending []*auditItem
	running bool
}

type auditItem struct {
	event []byte
	done  chan error
}

func (s *Store) flushAudit(reviewID string, q *auditQueue) {
	b := s.audit
	for {
		b.mu.Lock()
		batch := q.pending
		q.pending = nil
		if len(batch) == 0 {
			q.running = false
			delete(b.queues, reviewID)
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := s.appendBatch(ctx, reviewID, batch)
		cancel()
		for _, it := range batch {
			it.done <- err
		}
	}
}

func (s *Store) appendBatch(ctx context.Context, reviewID string, batch []*auditItem) error {
	stream, _ := s.key("audit", reviewID)
	head := stream + ":head"
	for try := 0; try < 50; try++ {
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			prev, err := tx.Get(ctx, head).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				for _, it := range batch {
					hash := chainHash(prev, it.event)
					p.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"event", it.event, "prev", prev, "hash", hash}})
					prev = hash
				}
				p.Set(ctx, head, prev, 0)
				p.Expire(ctx, stream, AuditRetention)
				p.Expire(ctx, head, AuditRetention)
				return nil
			})
			return err
		}, head)
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		if err != nil {
			return fmt.Errorf("append audit: %w", err)
		}
		return nil
	}
	return errors.New("append audit: too much contention")
}

// Audit returns a review's trail, oldest first, after checking that its hashes link; a broken chain is
// ErrChainBroken.
func (s *Store) Audit(ctx context.Context, reviewID string) ([]AuditEntry, error) {
	stream, err := s.key("audit", reviewID)
	if err != nil {
		return nil, fmt.Errorf("read audit: %w", err)
	}
	msgs, err := s.rdb.XRange(ctx, stream, "-", "+").Result()
	if err != nil {
		return nil, fmt.Errorf("read audit: %w", err)
	}
	out := make([]AuditEntry, 0, len(msgs))
	prev := ""
	for _, m := range msgs {
		e := AuditEntry{ID: m.ID, Event: []byte(str(m.Values["event"])), Prev: str(m.Values["prev"]), Hash: str(m.Values["hash"])}
		if e.Prev != prev || e.Hash != chainHash(prev, e.Event) {
			return nil, fmt.Errorf("read audit: %w at entry %s", ErrChainBroken, m.ID)
		}
		prev = e.Hash
		out = append(out, e)
	}
	return out, nil
}
