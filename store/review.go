package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"secondlook/audit"
	"secondlook/consent"
	"secondlook/review"
)

// ReviewRetention is how long a review's record (state, consents) is kept after the review expires, so that
// its trail can still be read.
const ReviewRetention = 90 * 24 * time.Hour

// ErrExists reports that a record with that id already exists.
var ErrExists = errors.New("store: already exists")

// createReviewScript stores a new review only if there is none under its id, and sets its expiry.
var createReviewScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
redis.call("HSET", KEYS[1], "data", ARGV[1], "state", ARGV[2], "reason", "", "updated", ARGV[3], "provider", ARGV[5], "expires", ARGV[6])
redis.call("PEXPIREAT", KEYS[1], ARGV[4])
return 1`)

// moveReviewScript moves a review (KEYS[1]) to ARGV[1] if its state is one of ARGV[8..], and appends the
// transition's AuditEvent (ARGV[5], hash ARGV[6], chained from ARGV[4]) to its trail (KEYS[2], head KEYS[3]) in the
// same step, so no transition is ever left unaudited. The event is written first: Redis does not undo a script's
// writes when a later command fails, and a failed append must leave the state as it was. It answers {moved, state before}: 1 moved, 0 refused (another
// state), -1 no review, 2 the trail's head is no longer ARGV[4] (the caller chains again from the head answered).
var moveReviewScript = redis.NewScript(`
local st = redis.call("HGET", KEYS[1], "state")
if not st then return {-1, ""} end
local allowed = false
for i = 8, #ARGV do
  if ARGV[i] == st then allowed = true break end
end
if not allowed then return {0, st} end
local cur = redis.call("GET", KEYS[3]) or ""
if cur ~= ARGV[4] then return {2, cur} end
redis.call("XADD", KEYS[2], "*", "event", ARGV[5], "prev", ARGV[4], "hash", ARGV[6])
redis.call("SET", KEYS[3], ARGV[6], "PX", ARGV[7])
redis.call("PEXPIRE", KEYS[2], ARGV[7])
redis.call("HSET", KEYS[1], "state", ARGV[1], "reason", ARGV[2], "updated", ARGV[3])
return {1, st}`)

// CreateReview stores a new review. Its record expires ReviewRetention after the review does.
func (s *Store) CreateReview(ctx context.Context, r *review.Review) error {
	k, err := s.key("review", r.ID)
	if err != nil {
		return fmt.Errorf("create review: %w", err)
	}
	data, err := json.Marshal(r.Request)
	if err != nil {
		return fmt.Errorf("create review: %w", err)
	}
	meta, err := json.Marshal(reviewMeta{Requester: r.Requester, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt})
	if err != nil {
		return fmt.Errorf("create review: %w", err)
	}
	doc := append(append(append([]byte(`{"meta":`), meta...), `,"request":`...), data...)
	doc = append(doc, '}')
	if doc, err = s.sealValue(doc, k); err != nil {
		return fmt.Errorf("create review: %w", err)
	}
	until := r.ExpiresAt.Add(ReviewRetention).UnixMilli()
	n, err := createReviewScript.Run(ctx, s.rdb, []string{k}, doc, string(r.State), r.UpdatedAt.UnixMilli(), until, r.Provider, r.ExpiresAt.UnixMilli()).Int()
	if err != nil {
		return fmt.Errorf("create review: %w", err)
	}
	if n == 0 {
		return ErrExists
	}
	// The provider's index and the expiry schedule live in other hash slots, so they are a second step; readers check
	// every review they name.
	pk := s.prefix + "{provider:" + r.Provider + "}:reviews"
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.SAdd(ctx, pk, r.ID)
		p.PExpireAt(ctx, pk, r.ExpiresAt.Add(ReviewRetention))
		p.ZAdd(ctx, s.expiryKey(), redis.Z{Score: float64(r.ExpiresAt.UnixMilli()), Member: r.ID})
		p.HIncrBy(ctx, s.statsKey(), string(r.State), 1)
		return nil
	}); err != nil {
		return fmt.Errorf("index review: %w", err)
	}
	return nil
}

func (s *Store) statsKey() string { return s.prefix + "{stats}:reviews" }

// ReviewCounts returns how many reviews entered each state and have not left it: the number now in each live state,
// and for a final state (expired, withdrawn, failed) how many ever ended there. The counts live in their own hash
// slot, so they are updated as a second step after each transition; a process that dies between the two leaves a
// count off by one, which the next restart of the counts (deleting the hash) corrects only approximately. They are
// for dashboards, never for decisions.
func (s *Store) ReviewCounts(ctx context.Context) (map[review.State]int64, error) {
	m, err := s.rdb.HGetAll(ctx, s.statsKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("review counts: %w", err)
	}
	out := make(map[review.State]int64, len(m))
	for k, v := range m {
		n, err := strconv.ParseInt(v, 10, 64)
		if st := review.State(k); err == nil && st.Valid() {
			out[st] = n
		}
	}
	return out, nil
}

// ProviderReviews lists the ids of the reviews naming a provider, sorted.
func (s *Store) ProviderReviews(ctx context.Context, provider string) ([]string, error) {
	if provider == "" || strings.ContainsAny(provider, "{}") {
		return nil, errors.New("list provider reviews: invalid provider")
	}
	ids, err := s.rdb.SMembers(ctx, s.prefix+"{provider:"+provider+"}:reviews").Result()
	if err != nil {
		return nil, fmt.Errorf("list provider reviews: %w", err)
	}
	slices.Sort(ids)
	return ids, nil
}

// Access is what deciding a packet read needs of a review: who may read it, its state, and its expiry.
type Access struct {
	Provider  string
	State     review.State
	ExpiresAt time.Time
}

// ReviewAccess reads a review's provider, state and expiry in one small round trip, without decoding the request.
func (s *Store) ReviewAccess(ctx context.Context, id string) (*Access, error) {
	k, err := s.key("review", id)
	if err != nil {
		return nil, fmt.Errorf("review access: %w", err)
	}
	v, err := s.rdb.HMGet(ctx, k, "provider", "state", "expires").Result()
	if err != nil {
		return nil, fmt.Errorf("review access: %w", err)
	}
	if v[1] == nil {
		return nil, ErrNotFound
	}
	ms, err := strconv.ParseInt(str(v[2]), 10, 64)
	if err != nil || str(v[0]) == "" {
		r, err := s.GetReview(ctx, id) // a record written before these fields existed
		if err != nil {
			return nil, err
		}
		return &Access{Provider: r.Provider, State: r.State, ExpiresAt: r.ExpiresAt}, nil
	}
	return &Access{Provider: str(v[0]), State: review.State(str(v[1])), ExpiresAt: time.UnixMilli(ms).UTC()}, nil
}

type reviewMeta struct {
	Requester string    `json:"requester"`
	CreatedAt time.Time `json:"createdAt"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// GetReview returns the review, or ErrNotFound.
func (s *Store) GetReview(ctx context.Context, id string) (*review.Review, error) {
	k, err := s.key("review", id)
	if err != nil {
		return nil, fmt.Errorf("get review: %w", err)
	}
	vals, err := s.rdb.HMGet(ctx, k, "data", "state", "reason", "updated", "progress").Result()
	if err != nil {
		return nil, fmt.Errorf("get review: %w", err)
	}
	if vals[0] == nil {
		return nil, ErrNotFound
	}
	var doc struct {
		Meta    reviewMeta     `json:"meta"`
		Request review.Request `json:"request"`
	}
	plain, err := s.openValue([]byte(vals[0].(string)), k)
	if err != nil {
		return nil, fmt.Errorf("get review: %w", err)
	}
	if err := json.Unmarshal(plain, &doc); err != nil {
		return nil, fmt.Errorf("get review: stored record is corrupt: %w", err)
	}
	r := &review.Review{ID: id, Requester: doc.Meta.Requester, Request: doc.Request, CreatedAt: doc.Meta.CreatedAt, ExpiresAt: doc.Meta.ExpiresAt}
	r.State = review.State(str(vals[1]))
	r.Reason = str(vals[2])
	if r.State == review.Assembling {
		r.Progress = str(vals[4])
	}
	if ms, err := strconv.ParseInt(str(vals[3]), 10, 64); err == nil {
		r.UpdatedAt = time.UnixMilli(ms).UTC()
	}
	return r, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// MoveReview moves the review to state to if it is now in one of from, atomically (one Lua script), and returns
// the review as it then is. It returns ErrNotFound for no review and an error wrapping review.ErrTransition when
// the review is in another state.
func (s *Store) MoveReview(ctx context.Context, id string, from []review.State, to review.State, reason string) (*review.Review, error) {
	for _, f := range from {
		if !review.CanMove(f, to) {
			return nil, fmt.Errorf("move review: %w: %s → %s", review.ErrTransition, f, to)
		}
	}
	k, err := s.key("review", id)
	if err != nil {
		return nil, fmt.Errorf("move review: %w", err)
	}
	stream, _ := s.key("audit", id)
	now := time.Now()
	// The transition and its AuditEvent are one atomic step (the event is chained from the trail's head, and the
	// step is tried again if another append moved the head meanwhile).
	ev := audit.Event{Action: audit.Transition, Outcome: audit.Success, At: now, ReviewID: id, State: string(to),
		Patient: to == review.Withdrawn && reason == WithdrawnByPatient}.JSON()
	prev := s.audit.head(id)
	var res []any
	for try := 0; ; try++ {
		if try == 50 {
			return nil, errors.New("move review: too much contention on the audit trail")
		}
		hash := chainHash(prev, ev)
		args := []any{string(to), reason, now.UnixMilli(), prev, ev, hash, AuditRetention.Milliseconds()}
		for _, f := range from {
			args = append(args, string(f))
		}
		res, err = moveReviewScript.Run(ctx, s.rdb, []string{k, stream, stream + ":head"}, args...).Slice()
		if err != nil {
			return nil, fmt.Errorf("move review: %w", err)
		}
		if moved, _ := res[0].(int64); moved != 2 {
			if moved == 1 {
				s.audit.setHead(id, hash)
			}
			break
		}
		prev = str(res[1])
	}
	moved, _ := res[0].(int64)
	switch moved {
	case -1:
		return nil, ErrNotFound
	case 0:
		return nil, fmt.Errorf("move review: %w: it is %s", review.ErrTransition, str(res[1]))
	}
	// Best effort, like every count: the transition stands whether or not its count is recorded.
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HIncrBy(ctx, s.statsKey(), str(res[1]), -1)
		p.HIncrBy(ctx, s.statsKey(), string(to), 1)
		return nil
	})
	return s.GetReview(ctx, id)
}

func (s *Store) expiryKey() string { return s.prefix + "{expiry}:reviews" }

// claimExpiredScript takes up to 100 reviews due to expire off the schedule, atomically, so one replica handles each.
var claimExpiredScript = redis.NewScript(`
local due = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, 100)
for _, id in ipairs(due) do redis.call("ZREM", KEYS[1], id) end
return due`)

// ExpireDue moves every review whose consent period has ended (and that has not ended otherwise) to expired, and
// deletes its packet at once. It returns the reviews it expired. Any replica may run it; each review is claimed once.
func (s *Store) ExpireDue(ctx context.Context, now time.Time) ([]string, error) {
	ids, err := claimExpiredScript.Run(ctx, s.rdb, []string{s.expiryKey()}, now.UnixMilli()).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("expire reviews: %w", err)
	}
	var expired []string
	for _, id := range ids {
		_, err := s.MoveReview(ctx, id, []review.State{review.AwaitingConsent, review.Consented, review.Assembling, review.Ready},
			review.Expired, "The consent period ended.")
		switch {
		case err == nil:
			expired = append(expired, id)
		case errors.Is(err, review.ErrTransition), errors.Is(err, ErrNotFound):
			continue // already ended, or gone
		default:
			return expired, fmt.Errorf("expire reviews: %w", err)
		}
		if err := s.DeletePacket(ctx, id); err != nil {
			return expired, err
		}
	}
	return expired, nil
}

// SetProgress records the assembly stage of a review (shown while it is assembling).
func (s *Store) SetProgress(ctx context.Context, id, stage string) error {
	k, err := s.key("review", id)
	if err != nil {
		return fmt.Errorf("set progress: %w", err)
	}
	if err := s.rdb.HSet(ctx, k, "progress", stage).Err(); err != nil {
		return fmt.Errorf("set progress: %w", err)
	}
	return nil
}

// WithdrawnByPatient is the reason recorded when the patient withdraws consent.
const WithdrawnByPatient = "withdrawn by the patient"

// SaveConsent stores or replaces the consent of one source of a review. It expires with the review's record.
func (s *Store) SaveConsent(ctx context.Context, rec consent.Record) error {
	k, err := s.key("consents", rec.ReviewID)
	if err != nil {
		return fmt.Errorf("save consent: %w", err)
	}
	b, err := json.Marshal(storedConsent(rec))
	if err != nil {
		return fmt.Errorf("save consent: %w", err)
	}
	if b, err = s.sealValue(b, k+":"+rec.SourceID); err != nil {
		return fmt.Errorf("save consent: %w", err)
	}
	r, err := s.GetReview(ctx, rec.ReviewID)
	if err != nil {
		return fmt.Errorf("save consent: %w", err)
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, k, rec.SourceID, b)
		p.PExpireAt(ctx, k, r.ExpiresAt.Add(ReviewRetention))
		return nil
	})
	if err != nil {
		return fmt.Errorf("save consent: %w", err)
	}
	return nil
}

// Consents returns a review's consents, by source id.
func (s *Store) Consents(ctx context.Context, reviewID string) ([]consent.Record, error) {
	k, err := s.key("consents", reviewID)
	if err != nil {
		return nil, fmt.Errorf("load consents: %w", err)
	}
	all, err := s.rdb.HGetAll(ctx, k).Result()
	if err != nil {
		return nil, fmt.Errorf("load consents: %w", err)
	}
	out := make([]consent.Record, 0, len(all))
	for src, v := range all {
		var sc storedConsent
		plain, err := s.openValue([]byte(v), k+":"+src)
		if err != nil {
			return nil, fmt.Errorf("load consents: %w", err)
		}
		if err := json.Unmarshal(plain, &sc); err != nil {
			return nil, fmt.Errorf("load consents: stored record is corrupt: %w", err)
		}
		out = append(out, consent.Record(sc))
	}
	slices.SortFunc(out, func(a, b consent.Record) int { return strings.Compare(a.SourceID, b.SourceID) })
	return out, nil
}

// AddPatientSession records that the browser session binding (the SHA-256 of its session cookie, never the cookie
// itself) signed in at one of the review's sources as the review's patient. Only such a session may withdraw the
// patient's consent. The record lasts as long as the review's consents: until expiresAt (the review's) plus
// ReviewRetention.
func (s *Store) AddPatientSession(ctx context.Context, reviewID, binding string, expiresAt time.Time) error {
	k, err := s.key("patient-sessions", reviewID)
	if err != nil {
		return fmt.Errorf("add patient session: %w", err)
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.SAdd(ctx, k, binding)
		p.PExpireAt(ctx, k, expiresAt.Add(ReviewRetention))
		return nil
	})
	if err != nil {
		return fmt.Errorf("add patient session: %w", err)
	}
	return nil
}

// IsPatientSession reports whether the browser session binding signed in as the review's patient
// (AddPatientSession).
func (s *Store) IsPatientSession(ctx context.Context, reviewID, binding string) (bool, error) {
	k, err := s.key("patient-sessions", reviewID)
	if err != nil {
		return false, fmt.Errorf("patient session: %w", err)
	}
	ok, err := s.rdb.SIsMember(ctx, k, binding).Result()
	if err != nil {
		return false, fmt.Errorf("patient session: %w", err)
	}
	return ok, nil
}

// storedConsent is consent.Record as stored; a named type so the field set is the record's, exactly.
type storedConsent consent.Record
