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
		go s.flushAudit(reviewID, q) //nolint:gosec // G118: on purpose not ctx: the batch outlives the request that started it, and an access that happened is recorded
	}
	b.mu.Unlock()
	select {
	case err := <-item.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// auditBatcher queues appends per review within this process, and remembers the last head it wrote per review so
// the next batch usually needs one round trip.
type auditBatcher struct {
	mu     sync.Mutex
	queues map[string]*auditQueue
	heads  map[string]string
}

// maxRememberedHeads bounds the heads remembered; when full they are forgotten (the next append learns the head).
const maxRememberedHeads = 10000

func (b *auditBatcher) head(reviewID string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.heads[reviewID]
}

func (b *auditBatcher) setHead(reviewID, h string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.heads == nil || len(b.heads) >= maxRememberedHeads {
		b.heads = map[string]string{}
	}
	b.heads[reviewID] = h
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

// appendScript appends a batch of chained entries if the head is still the one the batch was chained from, in one
// round trip; otherwise it answers the current head so the caller can chain again.
var appendScript = redis.NewScript(`
local cur = redis.call("GET", KEYS[2]) or ""
if cur ~= ARGV[1] then return {0, cur} end
local last = ARGV[1]
for i = 3, #ARGV, 3 do
  redis.call("XADD", KEYS[1], "*", "event", ARGV[i], "prev", ARGV[i+1], "hash", ARGV[i+2])
  last = ARGV[i+2]
end
redis.call("SET", KEYS[2], last, "PX", ARGV[2])
redis.call("PEXPIRE", KEYS[1], ARGV[2])
return {1, last}`)

// appendBatch chains the batch from the head this process last wrote (or learns the head from Redis when another
// replica moved it) and appends it atomically.
func (s *Store) appendBatch(ctx context.Context, reviewID string, batch []*auditItem) error {
	stream, _ := s.key("audit", reviewID)
	head := stream + ":head"
	prev := s.audit.head(reviewID)
	ttl := AuditRetention.Milliseconds()
	for try := 0; try < 50; try++ {
		args := make([]any, 0, 2+3*len(batch))
		args = append(args, prev, ttl)
		h := prev
		for _, it := range batch {
			next := chainHash(h, it.event)
			args = append(args, it.event, h, next)
			h = next
		}
		res, err := appendScript.Run(ctx, s.rdb, []string{stream, head}, args...).Slice()
		if err != nil {
			return fmt.Errorf("append audit: %w", err)
		}
		ok, _ := res[0].(int64)
		cur, _ := res[1].(string)
		if ok == 1 {
			s.audit.setHead(reviewID, cur)
			return nil
		}
		prev = cur // another replica appended: chain from its head
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
