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
// The head, the stream and the review's record share the review's hash tag, so an append is one Lua script that
// writes only on the head it was chained from (AppendAuditIf also checks the review's access there, and MoveReview
// appends the transition in the same script as the move).

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

// AppendAudit appends an event to a review's trail. Appends from this process are batched: while one round is in
// flight, later events queue and go together in the next (one script call for up to maxRunsPerCall reviews on a single
// node, one per review on a Cluster), so a burst of reads costs one round trip rather than one contended
// transaction each. Across replicas the script appends only on
// the head it was chained from, and is sent again when another replica appended at the same time. The event is
// written even if ctx ends first: an access that happened is recorded.
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
	if len(b.pending[reviewID]) == 0 {
		b.order = append(b.order, reviewID)
	}
	b.pending[reviewID] = append(b.pending[reviewID], item)
	if !b.running {
		b.running = true
		go s.flushAudit() //nolint:gosec // G118: the flush outlives the request on purpose (an access that happened is recorded)
	}
	b.mu.Unlock()
	select {
	case err := <-item.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// auditBatcher queues this process's appends, and remembers the last head it wrote per review so the next batch
// usually needs no extra round trip. One flusher sends every review's queued events together: a round is one
// pipeline of script calls, each carrying the runs (events of one review decided on the same access) of up to
// maxRunsPerCall reviews on a single node, or of one on a Cluster (appendRound), so a burst of reads of many packets
// costs one round trip, not one each.
type auditBatcher struct {
	mu      sync.Mutex
	pending map[string][]*auditItem // queued events per review, in order
	order   []string                // the reviews with queued events, in arrival order
	running bool                    // a flusher is running
	heads   map[string]string
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

// flushAudit sends rounds of queued events until none is left.
func (s *Store) flushAudit() {
	b := s.audit
	for {
		b.mu.Lock()
		if len(b.order) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		order, pending := b.order, b.pending
		b.order, b.pending = nil, map[string][]*auditItem{}
		b.mu.Unlock()
		s.appendRound(order, pending)
	}
}

// auditRun is consecutive events of one review decided on the same access (or unconditional).
type auditRun struct {
	review string
	items  []*auditItem
	status int64  // appendScript's answer for the run (see appendReply)
	head   string // and the head it answered
	err    error  // the call's own error
}

// maxRunsPerCall bounds the runs one script call carries (and so how long it holds Redis).
const maxRunsPerCall = 64

// appendRound appends one round: each run chained from the head this process last wrote for its review (or from
// the run before it), all in one pipeline. On a single Redis node the runs of many reviews go in one script call
// (up to maxRunsPerCall), which is most of what an append costs Redis; on a Cluster a script may touch one hash
// slot only, so each run is its own call. A run whose head moved (another replica appended) or whose script Redis
// had forgotten is sent again on its own, in order. Redis does not undo a script's earlier writes when a later
// command in it fails (in practice only when out of memory): the runs before the failure stay written, are sent
// again on their own, and may then be recorded twice. A duplicate keeps the chain whole; nothing is lost.
func (s *Store) appendRound(order []string, pending map[string][]*auditItem) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var runs []*auditRun
	for _, id := range order {
		items := pending[id]
		for len(items) > 0 {
			n := 1
			for n < len(items) && sameGuard(items[n].guard, items[0].guard) {
				n++
			}
			runs = append(runs, &auditRun{review: id, items: items[:n]})
			items = items[n:]
		}
	}
	perCall := maxRunsPerCall
	if _, cluster := s.rdb.(*redis.ClusterClient); cluster {
		perCall = 1
	}
	last := map[string]string{}
	type call struct {
		runs []*auditRun
		cmd  *redis.Cmd
	}
	var calls []call
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for rest := runs; len(rest) > 0; {
			group := rest[:min(perCall, len(rest))]
			rest = rest[len(group):]
			a := newAppendArgs()
			for _, r := range group {
				prev, ok := last[r.review]
				if !ok {
					prev = s.audit.head(r.review)
				}
				last[r.review] = s.addRun(a, r.review, prev, r.items)
			}
			calls = append(calls, call{runs: group, cmd: appendScript.EvalSha(ctx, p, a.keys, a.args...)})
		}
		return nil
	}) // each command's own error is read below
	for _, c := range calls {
		res, err := c.cmd.Slice()
		for i, r := range c.runs {
			r.err = err
			if err == nil {
				r.status, r.head = appendReply(res, i)
			}
		}
	}
	resent := map[string]bool{} // reviews with a run sent again on its own: their head is this process's now
	for _, r := range runs {
		err := r.err
		if err == nil {
			switch r.status {
			case 1:
				s.audit.setHead(r.review, r.head)
			case 2:
				err = ErrAccessChanged
			default:
				// The head moved under us: chain from Redis's head, on its own (or, when an earlier run of this
				// review was just sent again, from the head that run left).
				head := r.head
				if resent[r.review] {
					head = s.audit.head(r.review)
				}
				resent[r.review] = true
				err = s.appendBatch(ctx, r.review, r.items, head)
			}
		} else {
			// The script not loaded (a restarted Redis), or the round failed: this run on its own, which loads it.
			err = s.appendBatch(ctx, r.review, r.items, s.audit.head(r.review))
		}
		for _, it := range r.items {
			it.done <- err
		}
	}
}

// appendScript appends runs of chained entries, each to its own review's trail, in one round trip. For each run
// (three keys: stream, head, review record), if the head is still the one the run was chained from it appends the
// run and answers 1 and the new head; otherwise it appends nothing and answers 0 and the current head, so the
// caller can chain again. With a guard ("1") it first checks that the review's provider, state and expiry are
// still the run's, and appends nothing (answering 2) when they are not. A record written before provider and expiry
// were kept is checked on its state alone. Runs of one review follow each other in order, so a later run appends
// only if the one before it did.
//
//	ARGV: ttl, then per run: prev, guard, provider, state, expires, n, then n × (event, prev, hash)
var appendScript = redis.NewScript(`
local out = {}
local a = 2
for r = 0, #KEYS / 3 - 1 do
  local stream, headk, review = KEYS[3*r+1], KEYS[3*r+2], KEYS[3*r+3]
  local prev, n = ARGV[a], tonumber(ARGV[a+5])
  local status, last = 1, prev
  if ARGV[a+1] == "1" then
    local acc = redis.call("HMGET", review, "provider", "state", "expires")
    if acc[2] ~= ARGV[a+3] or (acc[1] and acc[1] ~= ARGV[a+2]) or (acc[3] and acc[3] ~= ARGV[a+4]) then
      status, last = 2, ""
    end
  end
  if status == 1 then
    local cur = redis.call("GET", headk) or ""
    if cur ~= prev then status, last = 0, cur end
  end
  if status == 1 then
    for i = a + 6, a + 5 + 3 * n, 3 do
      redis.call("XADD", stream, "*", "event", ARGV[i], "prev", ARGV[i+1], "hash", ARGV[i+2])
      last = ARGV[i+2]
    end
    redis.call("SET", headk, last, "PX", ARGV[1])
    redis.call("PEXPIRE", stream, ARGV[1])
  end
  out[#out + 1] = status
  out[#out + 1] = last
  a = a + 6 + 3 * n
end
return out`)

// appendBatch chains the batch (one run: one guard) from prev, the head it is believed to follow, and appends it
// atomically if the guard (when set) still holds; when another replica has moved the head it chains again from
// the head Redis answers.
func (s *Store) appendBatch(ctx context.Context, reviewID string, batch []*auditItem, prev string) error {
	for try := 0; try < 50; try++ {
		a := newAppendArgs()
		s.addRun(a, reviewID, prev, batch)
		res, err := appendScript.Run(ctx, s.rdb, a.keys, a.args...).Slice()
		if err != nil {
			return fmt.Errorf("append audit: %w", err)
		}
		status, cur := appendReply(res, 0)
		switch status {
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

// appendReply reads appendScript's answer for its i-th run: 1 appended (head is the new head), 2 refused by the
// guard, 0 the head moved (head is Redis's). A malformed answer reads as 0 with no head, which is retried.
func appendReply(res []any, i int) (status int64, head string) {
	if len(res) >= 2*i+2 {
		status, _ = res[2*i].(int64)
		head, _ = res[2*i+1].(string)
	}
	return status, head
}

// appendArgs are the keys and arguments of one appendScript call.
type appendArgs struct {
	keys []string
	args []any
}

// newAppendArgs starts a call's arguments with the trail's retention.
func newAppendArgs() *appendArgs {
	return &appendArgs{args: []any{AuditRetention.Milliseconds()}}
}

// addRun adds a run of events (sharing the first one's guard) chained from prev to a call, and returns the run's
// last hash.
func (s *Store) addRun(a *appendArgs, reviewID, prev string, batch []*auditItem) string {
	stream, _ := s.key("audit", reviewID)
	reviewKey, _ := s.key("review", reviewID)
	a.keys = append(a.keys, stream, stream+":head", reviewKey)
	guard := batch[0].guard
	a.args = append(a.args, prev)
	if guard != nil {
		a.args = append(a.args, "1", guard.Provider, string(guard.State), strconv.FormatInt(guard.ExpiresAt.UnixMilli(), 10))
	} else {
		a.args = append(a.args, "0", "", "", "")
	}
	a.args = append(a.args, len(batch))
	h := prev
	for _, it := range batch {
		next := chainHash(h, it.event)
		a.args = append(a.args, it.event, h, next)
		h = next
	}
	return h
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
