package assembly_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"secondlook/assembly"
	"secondlook/fhir"
	"secondlook/fhir/deid"
	"secondlook/internal/heapwatch"
	"secondlook/internal/syncbuf"
	"secondlook/packet"
	"secondlook/review"
	"secondlook/sandbox"
	"secondlook/store/storetest"
)

// maxAssemblyHeap bounds the heap while assemblies run side by side: each holds one patient's records a few
// times over (raw, de-identified, packet), so the bound follows from the workers, not from the queue's length.
const maxAssemblyHeap = 1 << 30

// TestLoadConcurrentAssemblies queues LOAD_REVIEWS reviews (default 48) of every shared Synthea patient in turn
// and lets LOAD_WORKERS workers (default 4, as two gateway replicas would run) assemble them from a sandbox
// hospital answering every request after 50 ms, on the real Redis. Every review must end ready, and the heap must
// stay under maxAssemblyHeap. It prints throughput, per-assembly p50/p99 and the peak heap. It runs only when
// LOAD=1; the figures in docs/benchmarks.md come from:
//
//	LOAD=1 go test -run TestLoadConcurrentAssemblies -v ./assembly
func TestLoadConcurrentAssemblies(t *testing.T) {
	if os.Getenv("LOAD") == "" {
		t.Skip("set LOAD=1 to run the load test")
	}
	reviews, workers := envInt("LOAD_REVIEWS", 48), envInt("LOAD_WORKERS", 4)
	bundles, err := sandbox.LoadDir("../testdata/synthea")
	if err != nil {
		t.Fatal(err)
	}
	sb, err := sandbox.New(sandbox.Options{Sites: []sandbox.SiteOptions{{Name: "hospital", Bundles: bundles}}})
	if err != nil {
		t.Fatal(err)
	}
	patients := sb.Site("hospital").Patients()
	if len(patients) < 10 {
		t.Fatalf("%d patients in the sandbox", len(patients))
	}
	sb.Site("hospital").Faults().Add(sandbox.Fault{Latency: 50 * time.Millisecond})
	srv := httptest.NewServer(sb.Handler())
	defer srv.Close()
	client, err := fhir.NewClient(fhir.Options{BaseURL: srv.URL + "/hospital/fhir"})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := storetest.RealRedis(t)
	ctx := context.Background()
	if err := st.EnsureQueue(ctx); err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var logs syncbuf.Buffer
	defer func() {
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	}()
	var mu sync.Mutex
	var durations []time.Duration
	var outcomes = map[string]int{}
	cfg := assembly.Config{
		Reviews: st, Consents: st, Queue: st, Packets: st,
		Sources:  map[string]assembly.Source{"hospital": {Client: client, Kind: "hospital"}},
		Tokens:   func(string) fhir.TokenSource { return nil },
		GrantKey: func(r, s string) string { return r + "/" + s },
		Key:      deid.Key{ID: "k", Secret: bytes.Repeat([]byte("k"), 32)},
		Signer:   packet.Signer{Key: key, KeyID: "s"},
		Logger:   slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Observer: observerFunc(func(outcome string, d time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			outcomes[outcome]++
			if outcome == "ready" {
				durations = append(durations, d)
			}
		}),
	}
	var ids []string
	for i := range reviews {
		ids = append(ids, consentedAt(t, st, patients[i%len(patients)]))
	}
	runtime.GC()
	stop := heapwatch.Start()
	start := time.Now()
	for _, id := range ids {
		if err := st.Enqueue(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	for i := range workers {
		c := cfg
		c.Consumer = "load-" + strconv.Itoa(i)
		w, err := assembly.New(c)
		if err != nil {
			t.Fatal(err)
		}
		runWorker(t, w)
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		ready := 0
		for _, id := range ids {
			r, err := st.GetReview(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			switch r.State {
			case review.Ready:
				ready++
			case review.Failed:
				t.Fatalf("review failed: %s", r.Reason)
			}
		}
		if ready == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d ready after 10 minutes", ready, len(ids))
		}
		time.Sleep(100 * time.Millisecond)
	}
	elapsed := time.Since(start)
	heap := stop()
	mu.Lock()
	defer mu.Unlock()
	if outcomes["retry"] > 0 || outcomes["failed"] > 0 {
		t.Errorf("outcomes %v: every assembly should succeed at the first attempt", outcomes)
	}
	if heap > maxAssemblyHeap {
		t.Errorf("heap reached %d MiB", heap>>20)
	}
	slices.Sort(durations)
	fmt.Printf("%d assemblies of %d patients, %d workers: %.1f s, %.2f assemblies/s, per assembly p50 %s p99 %s, peak heap %d MiB\n",
		len(ids), len(patients), workers, elapsed.Seconds(), float64(len(ids))/elapsed.Seconds(),
		durations[len(durations)/2].Round(time.Millisecond), durations[len(durations)*99/100].Round(time.Millisecond), heap>>20)
}

type observerFunc func(outcome string, d time.Duration)

func (f observerFunc) Assembled(outcome string, d time.Duration) { f(outcome, d) }
func (f observerFunc) Stage(string, time.Duration)               {}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}
