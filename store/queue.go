package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"secondlook/review"
)

// The assembly queue is one Redis Stream read by one consumer group: every gateway replica's workers share the
// work, each job is delivered to one consumer at a time, and a job whose consumer died (not acknowledged within the
// visibility timeout) is claimed by another (XAUTOCLAIM). Retries wait in a sorted set until due. A review is
// marked as owed a job before it moves to consented, and the mark is cleared as the job is queued, in one script:
// a job lost between the move and the queuing (the process or Redis failed in between) is queued by PayOwedJobs.
//
//	<prefix>{jobs}:assembly          the stream (field "review")
//	<prefix>{jobs}:assembly:delayed  retries, scored by due time (ms)
//	<prefix>{jobs}:assembly:owed     reviews owed a job, scored by when the debt was recorded (ms)
const (
	queueGroup = "assemblers"
	// maxOwedPages bounds the pages of debts one PayOwedJobs call looks at; only failures leave debts behind.
	maxOwedPages = 10
)

// owedPage is how many debts PayOwedJobs reads at a time (a variable only so a test can make pages small).
var owedPage = 1000

// Job is one delivery of an assembly job.
type Job struct {
	// ID is the stream entry id, used to acknowledge.
	ID       string
	ReviewID string
	// Consumer is the consumer the job was delivered to.
	Consumer string
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

func (s *Store) owedKey() string { return s.prefix + "{jobs}:assembly:owed" }

// OweJob records that a review is owed an assembly job. Call it just before the review moves to consented, and
// PayJob just after: if the process or Redis fails in between, PayOwedJobs queues the job.
func (s *Store) OweJob(ctx context.Context, reviewID string) error {
	if err := s.rdb.ZAddNX(ctx, s.owedKey(), redis.Z{Score: float64(time.Now().UnixMilli()), Member: reviewID}).Err(); err != nil {
		return fmt.Errorf("owe job: %w", err)
	}
	return nil
}

// payScript queues the job a review is owed and clears the debt, atomically, only if the debt is still there: of
// the consent that moved the review and the sweepers that found it consented, the first to pay queues the one job.
var payScript = redis.NewScript(`
if redis.call("ZREM", KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call("XADD", KEYS[1], "*", "review", ARGV[1])
return 1`)

// PayJob queues the assembly job a review is owed. It reports false, and queues nothing, when no job is owed: it
// was paid already.
func (s *Store) PayJob(ctx context.Context, reviewID string) (bool, error) {
	stream, _ := s.queueKeys()
	n, err := payScript.Run(ctx, s.rdb, []string{stream, s.owedKey()}, reviewID).Int()
	if err != nil {
		return false, fmt.Errorf("queue owed job: %w", err)
	}
	return n == 1, nil
}

// PayOwedJobs settles the debts recorded before before, oldest first: a review now consented gets the job it is
// owed queued; one that has moved on (assembling, ready, withdrawn, expired, failed) or is gone has its debt
// cleared; one still awaiting consent (its move failed) keeps it until it ends, and the sweep reads on past it, so
// debts that are kept never hide younger ones. It returns the reviews whose job it queued.
func (s *Store) PayOwedJobs(ctx context.Context, before time.Time) ([]string, error) {
	var paid []string
	kept := 0 // debts kept so far: they still lead the set, so the next page starts after them
	for range maxOwedPages {
		ids, err := s.rdb.ZRangeByScore(ctx, s.owedKey(), &redis.ZRangeBy{
			Min: "-inf", Max: strconv.FormatInt(before.UnixMilli(), 10), Offset: int64(kept), Count: int64(owedPage),
		}).Result()
		if err != nil {
			return paid, fmt.Errorf("read owed jobs: %w", err)
		}
		states := make([]*redis.StringCmd, len(ids))
		if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range ids {
				if k, err := s.key("review", id); err == nil {
					states[i] = p.HGet(ctx, k, "state")
				}
			}
			return nil
		}); err != nil && !errors.Is(err, redis.Nil) {
			return paid, fmt.Errorf("read owed jobs: %w", err)
		}
		for i, id := range ids {
			state := ""
			if states[i] != nil {
				v, err := states[i].Result()
				if err != nil && !errors.Is(err, redis.Nil) {
					return paid, fmt.Errorf("read owed jobs: %w", err) // never taken for a review that is gone
				}
				state = v
			}
			switch review.State(state) {
			case review.AwaitingConsent:
				kept++
			case review.Consented:
				ok, err := s.PayJob(ctx, id)
				if err != nil {
					return paid, err
				}
				if ok {
					paid = append(paid, id)
				}
			default:
				if err := s.rdb.ZRem(ctx, s.owedKey(), id).Err(); err != nil {
					return paid, fmt.Errorf("clear owed job: %w", err)
				}
			}
		}
		if len(ids) < owedPage {
			break
		}
	}
	return paid, nil
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
	return &Job{ID: m.ID, ReviewID: id, Consumer: consumer}, nil
}

// ErrJobLost reports that a job is no longer the consumer's: it went unacknowledged and untouched for longer than
// the visibility timeout (the worker stalled, or could not reach Redis), and another consumer claimed it, or it was
// finished.
var ErrJobLost = errors.New("store: the job was claimed by another consumer")

// touchScript resets a pending job's idle time if consumer still holds it, and answers 0 otherwise: claiming it
// back from the consumer that took it over would have two workers on one job.
var touchScript = redis.NewScript(`
local p = redis.call("XPENDING", KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
redis.call("XCLAIM", KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], "JUSTID")
return 1`)

// Touch resets the job's idle time, so a long assembly is not taken for a crashed one. It returns ErrJobLost when
// the job is no longer consumer's.
func (s *Store) Touch(ctx context.Context, consumer string, job *Job) error {
	stream, _ := s.queueKeys()
	n, err := touchScript.Run(ctx, s.rdb, []string{stream}, queueGroup, job.ID, consumer).Int()
	if err != nil {
		return fmt.Errorf("touch job: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("touch job: %w", ErrJobLost)
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

// retryScript schedules a job again and removes the failed delivery, if consumer still holds it: a delivery another
// consumer took over is that consumer's to finish or retry.
var retryScript = redis.NewScript(`
local p = redis.call("XPENDING", KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
redis.call("ZADD", KEYS[2], ARGV[4], ARGV[5])
redis.call("XACK", KEYS[1], ARGV[1], ARGV[2])
redis.call("XDEL", KEYS[1], ARGV[2])
return 1`)

// Retry acknowledges a failed delivery and schedules the job again after delay. It returns ErrJobLost, and
// schedules nothing, when the delivery is no longer the consumer's.
func (s *Store) Retry(ctx context.Context, job *Job, delay time.Duration) error {
	stream, delayed := s.queueKeys()
	n, err := retryScript.Run(ctx, s.rdb, []string{stream, delayed}, queueGroup, job.ID, job.Consumer,
		time.Now().Add(delay).UnixMilli(), job.ReviewID).Int()
	if err != nil {
		return fmt.Errorf("retry job: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("retry job: %w", ErrJobLost)
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
