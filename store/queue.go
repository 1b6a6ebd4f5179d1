package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The assembly queue is one Redis Stream read by one consumer group: every gateway replica's workers share the
// work, each job is delivered to one consumer at a time, and a job whose consumer died (not acknowledged within the
// visibility timeout) is claimed by another (XAUTOCLAIM). Retries wait in a sorted set until due.
//
//	<prefix>{jobs}:assembly          the stream (field "review")
//	<prefix>{jobs}:assembly:delayed  retries, scored by due time (ms)
const (
	queueGroup = "assemblers"
)

// Job is one delivery of an assembly job.
type Job struct {
	// ID is the stream entry id, used to acknowledge.
	ID       string
	ReviewID string
}

func (s *Store) queueKeys() (stream, delayed string) {
	return s.prefix + "{jobs}:assembly", s.prefix + "{jobs}:assembly:delayed"
}

// EnsureQueue creates the stream and its consumer group if they do not exist yet.
func (s *Store) EnsureQueue(ctx context.Context) error {
	stream, _ := s.queueKeys()
	err := s.rdb.XGroupCreateMkStream(ctx, stream, queueGroup, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create queue: %w", err)
	}
	return nil
}

// Enqueue adds an assembly job for a review.
func (s *Store) Enqueue(ctx context.Context, reviewID string) error {
	stream, _ := s.queueKeys()
	if err := s.rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"review", reviewID}}).Err(); err != nil {
		return fmt.Errorf("enqueue job: %w", err)
	}
	return nil
}

// promoteScript moves due retries from the delayed set onto the stream, atomically so that no retry is lost or
// doubled when several replicas promote at once.
var promoteScript = redis.NewScript(`
local due = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", ARGV[1], "LIMIT", 0, 100)
for _, id in ipairs(due) do
  redis.call("ZREM", KEYS[2], id)
  redis.call("XADD", KEYS[1], "*", "review", id)
end
return #due`)

// Next returns the next job for consumer: first a job another consumer left unacknowledged for longer than
// visibility (it crashed or stalled), else a new one, waiting up to block. It returns (nil, nil) when there is none.
func (s *Store) Next(ctx context.Context, consumer string, visibility, block time.Duration) (*Job, error) {
	stream, delayed := s.queueKeys()
	if err := promoteScript.Run(ctx, s.rdb, []string{stream, delayed}, time.Now().UnixMilli()).Err(); err != nil {
		return nil, fmt.Errorf("promote retries: %w", err)
	}
	msgs, _, err := s.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream: stream, Group: queueGroup, Consumer: consumer, MinIdle: visibility, Start: "0-0", Count: 1,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("claim stale job: %w", err)
	}
	if len(msgs) == 0 {
		streams, err := s.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: queueGroup, Consumer: consumer, Streams: []string{stream, ">"}, Count: 1, Block: block,
		}).Result()
		if errors.Is(err, redis.Nil) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read job: %w", err)
		}
		if len(streams) == 0 || len(streams[0].Messages) == 0 {
			return nil, nil
		}
		msgs = streams[0].Messages
	}
	m := msgs[0]
	id, _ := m.Values["review"].(string)
	return &Job{ID: m.ID, ReviewID: id}, nil
}

// Touch resets the job's idle time, so a long assembly is not taken for a crashed one.
func (s *Store) Touch(ctx context.Context, consumer string, job *Job) error {
	stream, _ := s.queueKeys()
	if err := s.rdb.XClaimJustID(ctx, &redis.XClaimArgs{Stream: stream, Group: queueGroup, Consumer: consumer, MinIdle: 0, Messages: []string{job.ID}}).Err(); err != nil {
		return fmt.Errorf("touch job: %w", err)
	}
	return nil
}

// Ack removes a finished job from the queue.
func (s *Store) Ack(ctx context.Context, job *Job) error {
	stream, _ := s.queueKeys()
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAck(ctx, stream, queueGroup, job.ID)
		p.XDel(ctx, stream, job.ID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("ack job: %w", err)
	}
	return nil
}

// Retry acknowledges a failed delivery and schedules the job again after delay.
func (s *Store) Retry(ctx context.Context, job *Job, delay time.Duration) error {
	stream, delayed := s.queueKeys()
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, delayed, redis.Z{Score: float64(time.Now().Add(delay).UnixMilli()), Member: job.ReviewID})
		p.XAck(ctx, stream, queueGroup, job.ID)
		p.XDel(ctx, stream, job.ID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("retry job: %w", err)
	}
	return nil
}

// QueueDepth reports jobs waiting (in the stream, not yet delivered or unacknowledged) and retries scheduled.
func (s *Store) QueueDepth(ctx context.Context) (pending, delayed int64, err error) {
	stream, dkey := s.queueKeys()
	groups, err := s.rdb.XInfoGroups(ctx, stream).Result()
	if err != nil {
		return 0, 0, fmt.Errorf("queue depth: %w", err)
	}
	for _, g := range groups {
		if g.Name == queueGroup {
			pending = g.Pending + g.Lag
		}
	}
	delayed, err = s.rdb.ZCard(ctx, dkey).Result()
	if err != nil {
		return 0, 0, fmt.Errorf("queue depth: %w", err)
	}
	return pending, delayed, nil
}

// Attempt counts one more assembly attempt of a review and returns the count.
func (s *Store) Attempt(ctx context.Context, reviewID string) (int, error) {
	k, err := s.key("attempts", reviewID)
	if err != nil {
		return 0, fmt.Errorf("count attempt: %w", err)
	}
	n, err := s.rdb.Incr(ctx, k).Result()
	if err != nil {
		return 0, fmt.Errorf("count attempt: %w", err)
	}
	s.rdb.Expire(ctx, k, ReviewRetention)
	return int(n), nil
}
