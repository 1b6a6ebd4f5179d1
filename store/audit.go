package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
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

// AppendAudit appends an event to a review's trail, retrying when another replica appended at the same time.
func (s *Store) AppendAudit(ctx context.Context, reviewID string, event []byte) error {
	stream, err := s.key("audit", reviewID)
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	head := stream + ":head"
	for try := 0; try < 20; try++ {
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			prev, err := tx.Get(ctx, head).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			hash := chainHash(prev, event)
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"event", event, "prev", prev, "hash", hash}})
				p.Set(ctx, head, hash, 0)
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
