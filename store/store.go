package store

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotFound reports a key that does not exist, has expired, or (for one-time state) was already taken.
var ErrNotFound = errors.New("store: not found")

// ErrLockNotHeld is returned by an unlock function when the lock expired and was possibly taken by someone else
// before the holder released it.
var ErrLockNotHeld = errors.New("store: lock no longer held")

// Store is the Redis-backed storage. It is safe for concurrent use; besides its client it holds only the queue of
// audit appends in flight.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	// audit batches this process's audit appends per review (see AppendAudit).
	audit *auditBatcher
	// sealer, when set, encrypts review requests and consents at rest (SealRecords).
	sealer Sealer
	// leases are the rate-limit events this replica took from shared buckets and has not spent (Allow).
	leases leases
}

// New returns a Store whose keys all start with prefix (for example "secondlook:"). The prefix must not contain
// "{" or "}", which would break the hash-tag layout; New panics if it does, as that is a programming error.
func New(client redis.UniversalClient, prefix string) *Store {
	if strings.ContainsAny(prefix, "{}") {
		panic("store: prefix must not contain { or }")
	}
	return &Store{rdb: client, prefix: prefix, audit: &auditBatcher{pending: map[string][]*auditItem{}}}
}

// Client returns the underlying Redis client.
func (s *Store) Client() redis.UniversalClient { return s.rdb }

// key builds the Redis key for a key argument of the given kind (see the package documentation).
func (s *Store) key(kind, key string) (string, error) {
	if key == "" {
		return "", errors.New("empty key")
	}
	agg, rest, _ := strings.Cut(key, "/")
	if agg == "" || strings.ContainsAny(agg, "{}") {
		return "", errors.New("invalid aggregate id in key")
	}
	k := s.prefix + "{" + agg + "}:" + kind
	if rest != "" {
		k += ":" + rest
	}
	return k, nil
}

// PutState stores one-time state under key for ttl. It overwrites any earlier value.
func (s *Store) PutState(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	k, err := s.key("state", key)
	if err != nil {
		return fmt.Errorf("put state: %w", err)
	}
	if ttl <= 0 {
		return errors.New("put state: ttl must be positive")
	}
	if err := s.rdb.Set(ctx, k, value, ttl).Err(); err != nil {
		return fmt.Errorf("put state: %w", err)
	}
	return nil
}

// TakeState returns and deletes the state under key in one atomic step (GETDEL), so a state can be taken only once;
// a second take, or a take after the TTL, returns ErrNotFound.
func (s *Store) TakeState(ctx context.Context, key string) ([]byte, error) {
	k, err := s.key("state", key)
	if err != nil {
		return nil, fmt.Errorf("take state: %w", err)
	}
	v, err := s.rdb.GetDel(ctx, k).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("take state: %w", err)
	}
	return v, nil
}

// SaveGrant stores a sealed grant under key for ttl, replacing any earlier one.
func (s *Store) SaveGrant(ctx context.Context, key string, sealed []byte, ttl time.Duration) error {
	k, err := s.key("grant", key)
	if err != nil {
		return fmt.Errorf("save grant: %w", err)
	}
	if ttl <= 0 {
		return errors.New("save grant: ttl must be positive")
	}
	if err := s.rdb.Set(ctx, k, sealed, ttl).Err(); err != nil {
		return fmt.Errorf("save grant: %w", err)
	}
	return nil
}

// LoadGrant returns the sealed grant under key, or ErrNotFound.
func (s *Store) LoadGrant(ctx context.Context, key string) ([]byte, error) {
	k, err := s.key("grant", key)
	if err != nil {
		return nil, fmt.Errorf("load grant: %w", err)
	}
	v, err := s.rdb.Get(ctx, k).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load grant: %w", err)
	}
	return v, nil
}

// DeleteGrant removes the grant under key. Deleting a missing grant is not an error.
func (s *Store) DeleteGrant(ctx context.Context, key string) error {
	k, err := s.key("grant", key)
	if err != nil {
		return fmt.Errorf("delete grant: %w", err)
	}
	if err := s.rdb.Del(ctx, k).Err(); err != nil {
		return fmt.Errorf("delete grant: %w", err)
	}
	return nil
}

// unlockScript deletes the lock only if it still holds this holder's token, so a holder whose lock expired cannot
// release the lock of the next holder.
var unlockScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end`)

const (
	lockMinBackoff = 5 * time.Millisecond
	lockMaxBackoff = 200 * time.Millisecond
)

// Lock acquires the lock named key across every process using the same Redis (SET NX PX with a random token),
// waiting with jittered exponential backoff until it is free or ctx is done. The lock expires after ttl even if its
// holder dies; the holder must finish within ttl. The returned unlock function releases it by compare-and-delete and
// returns ErrLockNotHeld if the lock had expired.
func (s *Store) Lock(ctx context.Context, key string, ttl time.Duration) (unlock func(context.Context) error, err error) {
	k, err := s.key("lock", key)
	if err != nil {
		return nil, fmt.Errorf("acquire lock: %w", err)
	}
	if ttl <= 0 {
		return nil, errors.New("acquire lock: ttl must be positive")
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (Go 1.24+)
	token := base64.RawURLEncoding.EncodeToString(b[:])

	backoff := lockMinBackoff
	for {
		err := s.rdb.SetArgs(ctx, k, token, redis.SetArgs{Mode: "NX", TTL: ttl}).Err()
		if err == nil {
			break
		}
		if !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("acquire lock: %w", err)
		}
		wait := backoff/2 + mrand.N(backoff/2+1) //nolint:gosec // jitter, not a secret
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("acquire lock: %w", context.Cause(ctx))
		case <-t.C:
		}
		backoff = min(backoff*2, lockMaxBackoff)
	}
	return func(ctx context.Context) error {
		n, err := unlockScript.Run(ctx, s.rdb, []string{k}, token).Int()
		if err != nil {
			return fmt.Errorf("release lock: %w", err)
		}
		if n == 0 {
			return ErrLockNotHeld
		}
		return nil
	}, nil
}

// Prefix returns the prefix of every key this Store writes.
func (s *Store) Prefix() string { return s.prefix }
