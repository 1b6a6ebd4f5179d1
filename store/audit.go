package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
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
	return s.appendAudit(ctx, reviewID, event, nil)
}

// ErrAccessChanged is returned by AppendAuditIf when the review's provider, state or expiry is no longer the one
// the event was decided on.
var ErrAccessChanged = errors.New("store: review access changed")

// AppendAuditIf appends an event decided on the review access acc (who may read it, in what state, until when),
// only if the review still has exactly that access: the check and the append are one atomic step in Redis. A
// caller can thus decide from a remembered Access, and be told, in the same round trip that records the event,
// when a withdrawal or expiry has made the decision stale (ErrAccessChanged: nothing was appended).
func (s *Store) AppendAuditIf(ctx context.Context, reviewID string, event []byte, acc Access) error {
	return s.appendAudit(ctx, reviewID, event, &acc)
}

func (s *Store) appendAudit(ctx context.Context, reviewID string, event []byte, guard *Access) error {
	if _, err := s.key("audit", reviewID); err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	item := &auditItem{event: event, guard: guard, done: make(chan error, 1)}
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
		go s.flushAudit(reviewID, q) //nolint:gosec // G118: the flush outlives the request on purpose (an access that happened is recorded)
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
	guard *Access // nil: unconditional
	done  chan error
}

// sameGuard reports whether two items may share a batch: both unconditional, or both decided on the same access.
func sameGuard(a, b *Access) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Provider == b.Provider && a.State == b.State && a.ExpiresAt.Equal(b.ExpiresAt)
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
		// Consecutive events decided on the same access go together; each run is one round trip.
		for len(batch) > 0 {
			n := 1
			for n < len(batch) && sameGuard(batch[n].guard, batch[0].guard) {
				n++
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := s.appendBatch(ctx, reviewID, batch[:n], batch[0].guard)
			cancel()
			for _, it := range batch[:n] {
				it.done <- err
			}
			batch = batch[n:]
		}
	}
}

// appendScript appends a batch of chained entries if the head is still the one the batch was chained from, in one
// round trip; otherwise it answers the current head so the caller can chain again. With a guard (ARGV[3] = "1") it
// first checks that the review's provider, state and expiry are still ARGV[4..6], and appends nothing (answering 2)
// when they are not. A record written before provider and expiry were kept is checked on its state alone.
var appendScript = redis.NewScript(`
if ARGV[3] == "1" then
  local acc = redis.call("HMGET", KEYS[3], "provider", "state", "expires")
  if acc[2] ~= ARGV[5] or (acc[1] and acc[1] ~= ARGV[4]) or (acc[3] and acc[3] ~= ARGV[6]) then return {2, ""} end
end
local cur = redis.call("GET", KEYS[2]) or ""
if cur ~= ARGV[1] then return {0, cur} end
local last = ARGV[1]
for i = 7, #ARGV, 3 do
  redis.call("XADD", KEYS[1], "*", "event", ARGV[i], "prev", ARGV[i+1], "hash", ARGV[i+2])
  last = ARGV[i+2]
end
redis.call("SET", KEYS[2], last, "PX", ARGV[2])
redis.call("PEXPIRE", KEYS[1], ARGV[2])
return {1, last}`)

// appendBatch chains the batch from the head this process last wrote (or learns the head from Redis when another
// replica moved it) and appends it atomically, if the guard (when set) still holds.
func (s *Store) appendBatch(ctx context.Context, reviewID string, batch []*auditItem, guard *Access) error {
	stream, _ := s.key("audit", reviewID)
	reviewKey, _ := s.key("review", reviewID)
	head := stream + ":head"
	prev := s.audit.head(reviewID)
	ttl := AuditRetention.Milliseconds()
	g := []any{"0", "", "", ""}
	if guard != nil {
		g = []any{"1", guard.Provider, string(guard.State), strconv.FormatInt(guard.ExpiresAt.UnixMilli(), 10)}
	}
	for try := 0; try < 50; try++ {
		args := make([]any, 0, 6+3*len(batch))
		args = append(args, prev, ttl)
		args = append(args, g...)
		h := prev
		for _, it := range batch {
			next := chainHash(h, it.event)
			args = append(args, it.event, h, next)
			h = next
		}
		res, err := appendScript.Run(ctx, s.rdb, []string{stream, head, reviewKey}, args...).Slice()
		if err != nil {
			return fmt.Errorf("append audit: %w", err)
		}
		ok, _ := res[0].(int64)
		cur, _ := res[1].(string)
		switch ok {
		case 1:
			s.audit.setHead(reviewID, cur)
			return nil
		case 2:
			return ErrAccessChanged
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
