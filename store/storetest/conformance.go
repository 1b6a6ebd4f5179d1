package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"secondlook/store"
)

// Elapse makes d pass for the Redis behind a store: a real server sleeps, the embedded one fast-forwards its clock.
type Elapse func(d time.Duration)

// NewStore returns a fresh Store for one test, with a key prefix no other test uses, and the way to let its TTLs run.
// It registers its own cleanup with t.
type NewStore func(t *testing.T) (*store.Store, Elapse)

// RunConformance runs the shared behaviour tests against the stores newStore builds.
func RunConformance(t *testing.T, newStore NewStore) {
	t.Run("State", func(t *testing.T) { t.Parallel(); testState(t, newStore) })
	t.Run("StateTTL", func(t *testing.T) { t.Parallel(); testStateTTL(t, newStore) })
	t.Run("StateTakenOnceUnderRace", func(t *testing.T) { t.Parallel(); testStateRace(t, newStore) })
	t.Run("Grant", func(t *testing.T) { t.Parallel(); testGrant(t, newStore) })
	t.Run("GrantTTL", func(t *testing.T) { t.Parallel(); testGrantTTL(t, newStore) })
	t.Run("KeysAreIsolated", func(t *testing.T) { t.Parallel(); testIsolation(t, newStore) })
	t.Run("KeyLayout", func(t *testing.T) { t.Parallel(); testKeyLayout(t, newStore) })
	t.Run("InvalidKeys", func(t *testing.T) { t.Parallel(); testInvalidKeys(t, newStore) })
	t.Run("LockMutualExclusion", func(t *testing.T) { t.Parallel(); testLockExclusion(t, newStore) })
	t.Run("LockWaitsUntilContextDone", func(t *testing.T) { t.Parallel(); testLockContext(t, newStore) })
	t.Run("LockExpires", func(t *testing.T) { t.Parallel(); testLockExpiry(t, newStore) })
	t.Run("UnlockDoesNotReleaseAnotherHolder", func(t *testing.T) { t.Parallel(); testUnlockCompare(t, newStore) })
}

func testState(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	ctx := t.Context()
	if _, err := s.TakeState(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("take missing: %v, want ErrNotFound", err)
	}
	want := []byte("state-value\x00\xff")
	if err := s.PutState(ctx, "st1", want, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, err := s.TakeState(ctx, "st1")
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("take: %q, %v", got, err)
	}
	if _, err := s.TakeState(ctx, "st1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second take: %v, want ErrNotFound (single use)", err)
	}
	if err := s.PutState(ctx, "st2", want, 0); err == nil {
		t.Fatal("zero ttl accepted: state would never expire")
	}
}

func testStateTTL(t *testing.T, newStore NewStore) {
	s, elapse := newStore(t)
	ctx := t.Context()
	if err := s.PutState(ctx, "st", []byte("v"), 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	elapse(250 * time.Millisecond)
	if _, err := s.TakeState(ctx, "st"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("take after ttl: %v, want ErrNotFound", err)
	}
}

func testStateRace(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	ctx := t.Context()
	if err := s.PutState(ctx, "race", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := s.TakeState(ctx, "race"); err == nil {
				wins.Add(1)
			} else if !errors.Is(err, store.ErrNotFound) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d takers got the state, want exactly 1", n)
	}
}

func testGrant(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	ctx := t.Context()
	if _, err := s.LoadGrant(ctx, "rev/src"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("load missing: %v", err)
	}
	if err := s.SaveGrant(ctx, "rev/src", []byte("sealed-1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	for range 2 { // loading does not consume
		got, err := s.LoadGrant(ctx, "rev/src")
		if err != nil || string(got) != "sealed-1" {
			t.Fatalf("load: %q, %v", got, err)
		}
	}
	if err := s.SaveGrant(ctx, "rev/src", []byte("sealed-2"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.LoadGrant(ctx, "rev/src"); string(got) != "sealed-2" {
		t.Fatalf("after replace: %q", got)
	}
	if err := s.DeleteGrant(ctx, "rev/src"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadGrant(ctx, "rev/src"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("load deleted: %v", err)
	}
	if err := s.DeleteGrant(ctx, "rev/src"); err != nil {
		t.Fatalf("delete missing: %v", err)
	}
	if err := s.SaveGrant(ctx, "rev/src", []byte("x"), 0); err == nil {
		t.Fatal("zero ttl accepted")
	}
}

func testGrantTTL(t *testing.T, newStore NewStore) {
	s, elapse := newStore(t)
	ctx := t.Context()
	if err := s.SaveGrant(ctx, "rev/src", []byte("v"), 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	elapse(250 * time.Millisecond)
	if _, err := s.LoadGrant(ctx, "rev/src"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("load after ttl: %v", err)
	}
}

func testIsolation(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	ctx := t.Context()
	// A state and a grant with the same key argument are different records.
	if err := s.PutState(ctx, "same", []byte("state"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveGrant(ctx, "same", []byte("grant"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveGrant(ctx, "same/other", []byte("grant2"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.TakeState(ctx, "same"); string(got) != "state" {
		t.Fatalf("state: %q", got)
	}
	if got, _ := s.LoadGrant(ctx, "same"); string(got) != "grant" {
		t.Fatalf("grant: %q", got)
	}
	if got, _ := s.LoadGrant(ctx, "same/other"); string(got) != "grant2" {
		t.Fatalf("grant2: %q", got)
	}
}

func testKeyLayout(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	ctx := t.Context()
	if err := s.SaveGrant(ctx, "rev-42/hospital-a", []byte("g"), time.Minute); err != nil {
		t.Fatal(err)
	}
	unlock, err := s.Lock(ctx, "rev-42/hospital-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unlock(ctx) }()
	var keys []string
	found, err := Keys(ctx, s.Client(), s.Prefix()+"*")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range found {
		keys = append(keys, strings.TrimPrefix(k, s.Prefix()))
	}
	want := map[string]bool{"{rev-42}:grant:hospital-a": true, "{rev-42}:lock:hospital-a": true}
	if len(keys) != len(want) {
		t.Fatalf("keys = %q, want %v", keys, want)
	}
	for _, k := range keys {
		if !want[k] {
			t.Fatalf("unexpected key %q", k)
		}
	}
}

func testInvalidKeys(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	ctx := t.Context()
	for _, k := range []string{"", "/x", "a{b/c", "a}b"} {
		if err := s.PutState(ctx, k, []byte("v"), time.Minute); err == nil {
			t.Errorf("PutState(%q) accepted", k)
		}
		if err := s.SaveGrant(ctx, k, []byte("v"), time.Minute); err == nil {
			t.Errorf("SaveGrant(%q) accepted", k)
		}
		if _, err := s.Lock(ctx, k, time.Minute); err == nil {
			t.Errorf("Lock(%q) accepted", k)
		}
	}
}

func testLockExclusion(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	ctx := t.Context()
	var inside, maxInside, total atomic.Int32
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			unlock, err := s.Lock(ctx, "rev/src", 10*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			n := inside.Add(1)
			for {
				m := maxInside.Load()
				if n <= m || maxInside.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(5 * time.Millisecond)
			total.Add(1)
			inside.Add(-1)
			if err := unlock(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if maxInside.Load() != 1 || total.Load() != 10 {
		t.Fatalf("max holders at once = %d, completed = %d; want 1 and 10", maxInside.Load(), total.Load())
	}
}

func testLockContext(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	unlock, err := s.Lock(t.Context(), "rev/src", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := s.Lock(ctx, "rev/src", time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock: %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Fatalf("gave up after %v: it must wait until the context is done", d)
	}
	// Another lock name is independent.
	u2, err := s.Lock(t.Context(), "rev/other", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	_ = u2(t.Context())
	if err := unlock(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Released: available at once.
	ctx2, cancel2 := context.WithTimeout(t.Context(), time.Second)
	defer cancel2()
	u3, err := s.Lock(ctx2, "rev/src", time.Minute)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	_ = u3(t.Context())
}

func testLockExpiry(t *testing.T, newStore NewStore) {
	s, elapse := newStore(t)
	ctx := t.Context()
	if _, err := s.Lock(ctx, "rev/src", 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	elapse(250 * time.Millisecond) // the holder died without unlocking
	ctx2, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	unlock, err := s.Lock(ctx2, "rev/src", time.Minute)
	if err != nil {
		t.Fatalf("lock after the holder's ttl: %v", err)
	}
	_ = unlock(ctx)
}

func testUnlockCompare(t *testing.T, newStore NewStore) {
	s, elapse := newStore(t)
	ctx := t.Context()
	stale, err := s.Lock(ctx, "rev/src", 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	elapse(250 * time.Millisecond)
	fresh, err := s.Lock(ctx, "rev/src", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := stale(ctx); !errors.Is(err, store.ErrLockNotHeld) {
		t.Fatalf("stale unlock: %v, want ErrLockNotHeld", err)
	}
	// The fresh holder still holds it.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := s.Lock(short, "rev/src", time.Minute); err == nil {
		t.Fatal("stale unlock released the next holder's lock")
	}
	if err := fresh(ctx); err != nil {
		t.Fatal(err)
	}
}

// UniquePrefix returns a key prefix no other test run uses, so suites can share one Redis.
func UniquePrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "sltest:" + hex.EncodeToString(b[:]) + ":"
}

// RealRedis connects to the Redis named by REDIS_URL, or 127.0.0.1:6379, and skips the test with a clear message if
// none answers. It returns a new Store with a unique prefix whose keys are deleted when the test ends.
func RealRedis(t *testing.T) (*store.Store, Elapse) {
	t.Helper()
	return OpenRealRedis(t), func(d time.Duration) { time.Sleep(d) }
}

// OpenRealRedis is RealRedis for tests and benchmarks alike: a Store with a unique prefix on the real Redis, its
// keys deleted at the end.
func OpenRealRedis(tb testing.TB) *store.Store {
	tb.Helper()
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	client, err := store.Open(ctx, url)
	if err != nil {
		if os.Getenv("REDIS_URL") != "" {
			tb.Fatalf("REDIS_URL is set but Redis does not answer: %v", err)
		}
		tb.Skipf("no Redis server answers at 127.0.0.1:6379 (set REDIS_URL to use another): %v; the embedded-Redis run covers the same suite", err)
	}
	prefix := UniquePrefix()
	tb.Cleanup(func() {
		ctx := context.Background()
		keys, _ := Keys(ctx, client, prefix+"*")
		for _, k := range keys { // one DEL per key: keys of several slots must not share a command on Cluster
			client.Del(ctx, k)
		}
		_ = client.Close()
	})
	return store.New(client, prefix)
}

// EmbeddedRedis starts a miniredis for one test and returns a Store on it; the server stops when the test ends.
func EmbeddedRedis(t *testing.T) (*store.Store, Elapse) {
	t.Helper()
	client, mr, err := store.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close(); mr.Close() })
	return store.New(client, UniquePrefix()), mr.FastForward
}

// Keys lists the keys matching pattern on every node: a Cluster client's SCAN sees only one node.
func Keys(ctx context.Context, rdb redis.UniversalClient, pattern string) ([]string, error) {
	scan := func(ctx context.Context, c *redis.Client) ([]string, error) {
		var out []string
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			out = append(out, iter.Val())
		}
		return out, iter.Err()
	}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		var all []string
		err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			keys, err := scan(ctx, c)
			mu.Lock()
			all = append(all, keys...)
			mu.Unlock()
			return err
		})
		return all, err
	}
	var out []string
	iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		out = append(out, iter.Val())
	}
	return out, iter.Err()
}

// ServerCPU is the CPU time the Redis server behind rdb has used (user and system, from INFO cpu; summed over a
// Cluster's masters), or 0 if it cannot be read. Load tests report it per request beside their own.
func ServerCPU(ctx context.Context, rdb redis.UniversalClient) time.Duration {
	var total float64
	add := func(info string) {
		for _, line := range strings.Split(info, "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
				f, _ := strconv.ParseFloat(v, 64)
				total += f
			}
		}
	}
	if c, ok := rdb.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		_ = c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			info, err := n.Info(ctx, "cpu").Result()
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				add(info)
			}
			return nil
		})
	} else if info, err := rdb.Info(ctx, "cpu").Result(); err == nil {
		add(info)
	}
	return time.Duration(total * float64(time.Second))
}
