package assembly_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"secondlook/assembly"
	"secondlook/consent"
	"secondlook/fhir"
	"secondlook/fhir/deid"
	"secondlook/packet"
	"secondlook/review"
	"secondlook/sandbox"
	"secondlook/store"
	"secondlook/store/storetest"
)

const (
	toddFile = "../testdata/synthea/Todd315_Stamm704_0ce18c7d-fd78-46d9-81b5-8bed231c337a.json"
	todd     = "0ce18c7d-fd78-46d9-81b5-8bed231c337a"
)

type env struct {
	store  *store.Store
	worker *assembly.Worker
	cfg    assembly.Config
	keys   *jose.JSONWebKeySet
	site   map[string]*sandbox.Site
}

// identifiers are strings of Todd's record that must never reach a packet (checked independently of deid).
var identifiers = []string{"Todd315", "Stamm704", todd, "999-35-5722", "S99927625", "555-788-5466", "Raynor Mall", "2002-07-15"}

func newEnv(t *testing.T, newStore storetest.NewStore, update func(*assembly.Config)) *env {
	t.Helper()
	raw, err := os.ReadFile(toddFile)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := sandbox.New(sandbox.Options{Sites: []sandbox.SiteOptions{
		{Name: "hospital", Bundles: [][]byte{raw}},
		{Name: "lab", Bundles: [][]byte{raw}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	sources := map[string]assembly.Source{}
	for _, name := range []string{"hospital", "lab"} {
		c, err := fhir.NewClient(fhir.Options{BaseURL: srv.URL + "/" + name + "/fhir", Retry: fhir.Retry{MaxAttempts: 1}})
		if err != nil {
			t.Fatal(err)
		}
		kind := "hospital"
		if name == "lab" {
			kind = "provincial"
		}
		sources[name] = assembly.Source{Client: c, Kind: kind}
	}
	s, _ := newStore(t)
	if err := s.EnsureQueue(context.Background()); err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cfg := assembly.Config{
		Reviews: s, Consents: s, Queue: s, Packets: s, Sources: sources,
		Tokens:   func(string) fhir.TokenSource { return nil },
		GrantKey: func(r, s string) string { return r + "/" + s },
		Key:      deid.Key{ID: "k1", Secret: bytes.Repeat([]byte("s"), 32)},
		Scan: func(inputs [][]byte, out []byte) error {
			if err := deid.Scan(inputs, out); err != nil {
				return err
			}
			for _, id := range identifiers {
				if bytes.Contains(out, []byte(id)) {
					return errors.New("identifier in packet")
				}
			}
			return nil
		},
		Signer:   packet.Signer{Key: key, KeyID: "sig"},
		Consumer: "test-worker", BaseDelay: 50 * time.Millisecond, Visibility: 2 * time.Second,
	}
	if update != nil {
		update(&cfg)
	}
	w, err := assembly.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{store: s, worker: w, cfg: cfg, site: map[string]*sandbox.Site{"hospital": sb.Site("hospital"), "lab": sb.Site("lab")},
		keys: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "sig"}}}}
}

// consented creates a review whose patient consented at both sites.
func (e *env) consented(t *testing.T) *review.Review {
	t.Helper()
	ctx := context.Background()
	r, _ := review.New("ehr", review.Request{
		Sources:  []review.SourceRequest{{Source: "hospital", PatientID: todd}, {Source: "lab"}},
		Provider: "onco", Question: "Is the forearm fracture healed?",
	}, time.Now(), time.Hour)
	if err := e.store.CreateReview(ctx, r); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{"hospital", "lab"} {
		granted := []string{"DiagnosticReport", "ImagingStudy", "Condition"}
		if src == "lab" {
			granted = []string{"DiagnosticReport"}
		}
		if err := e.store.SaveConsent(ctx, consent.Record{ID: "c-" + src, ReviewID: r.ID, SourceID: src, PatientRef: "Patient/" + todd,
			ProviderID: "onco", Granted: granted, Start: time.Now().Add(-time.Minute), End: r.ExpiresAt}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.store.MoveReview(ctx, r.ID, []review.State{review.AwaitingConsent}, review.Consented, ""); err != nil {
		t.Fatal(err)
	}
	return r
}

func runWorker(t *testing.T, w *assembly.Worker) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return cancel
}

func waitState(t *testing.T, s *store.Store, id string, want review.State) *review.Review {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		r, err := s.GetReview(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if r.State == want {
			return r
		}
		if r.State.Final() {
			t.Fatalf("review ended %s (%s), want %s", r.State, r.Reason, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("review did not reach %s", want)
	return nil
}

func TestAssembleFromTwoSources(t *testing.T) {
	e := newEnv(t, storetest.RealRedis, nil)
	r := e.consented(t)
	runWorker(t, e.worker)
	if err := e.store.Enqueue(context.Background(), r.ID); err != nil {
		t.Fatal(err)
	}
	waitState(t, e.store, r.ID, review.Ready)
	p, err := e.store.GetPacket(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Bundle()
	if err != nil {
		t.Fatal(err)
	}
	if err := packet.Verify(b, e.keys); err != nil {
		t.Fatalf("packet does not verify: %v", err)
	}
	for _, id := range identifiers {
		if bytes.Contains(b, []byte(id)) {
			t.Errorf("packet contains %q", id)
		}
	}
	counts, err := packet.EntryTypes(b)
	if err != nil {
		t.Fatal(err)
	}
	// Both sites hold the same 19 reports: merged, each appears once.
	if counts["DiagnosticReport"] != 19 || counts["Condition"] != 6 || counts["ImagingStudy"] != 1 || counts["Patient"] != 1 {
		t.Errorf("counts %v", counts)
	}
	if p.Provider != "onco" || p.ETag == "" {
		t.Errorf("stored packet %+v", p)
	}
	// Idempotent: a re-delivered job leaves the packet as it is.
	if err := e.worker.Assemble(context.Background(), r.ID); err != nil {
		t.Fatal(err)
	}
	p2, _ := e.store.GetPacket(context.Background(), r.ID)
	if p2.ETag != p.ETag {
		t.Error("a second assembly replaced the packet")
	}
}

func TestFailingSourceRetriedThenReported(t *testing.T) {
	e := newEnv(t, storetest.EmbeddedRedis, func(c *assembly.Config) { c.MaxAttempts = 2 })
	r := e.consented(t)
	e.site["lab"].Faults().Add(sandbox.Fault{Status: 503})
	runWorker(t, e.worker)
	if err := e.store.Enqueue(context.Background(), r.ID); err != nil {
		t.Fatal(err)
	}
	waitState(t, e.store, r.ID, review.Ready)
	p, _ := e.store.GetPacket(context.Background(), r.ID)
	b, _ := p.Bundle()
	if !bytes.Contains(b, []byte("HTTP 503")) {
		t.Error("the packet does not say why the lab is missing")
	}
	if n := e.site["lab"].Requests(); n < 2 {
		t.Errorf("the failing source was tried %d times, want a retry", n)
	}
}

func TestResidualRejectsPacket(t *testing.T) {
	e := newEnv(t, storetest.EmbeddedRedis, func(c *assembly.Config) {
		c.Scan = func([][]byte, []byte) error { return &deid.ResidualError{Path: "Composition.section", Kind: "name"} }
	})
	r := e.consented(t)
	runWorker(t, e.worker)
	_ = e.store.Enqueue(context.Background(), r.ID)
	got := waitFinal(t, e.store, r.ID)
	if got.State != review.Failed || got.Reason == "" {
		t.Fatalf("state %s reason %q", got.State, got.Reason)
	}
	if _, err := e.store.GetPacket(context.Background(), r.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a rejected packet was stored: %v", err)
	}
}

func waitFinal(t *testing.T, s *store.Store, id string) *review.Review {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		r, _ := s.GetReview(context.Background(), id)
		if r != nil && r.State.Final() {
			return r
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("review did not end")
	return nil
}

func TestWithdrawnDuringAssemblyStoresNothing(t *testing.T) {
	e := newEnv(t, storetest.RealRedis, nil)
	r := e.consented(t)
	e.site["hospital"].Faults().Add(sandbox.Fault{Latency: 300 * time.Millisecond})
	runWorker(t, e.worker)
	_ = e.store.Enqueue(context.Background(), r.ID)
	got := waitState(t, e.store, r.ID, review.Assembling)
	for i := 0; got.Progress == "" && i < 50; i++ {
		time.Sleep(5 * time.Millisecond)
		got, _ = e.store.GetReview(context.Background(), r.ID)
	}
	if got.Progress != review.StageRetrieving {
		t.Errorf("progress %q while retrieving", got.Progress)
	}
	if _, err := e.store.MoveReview(context.Background(), r.ID, []review.State{review.Assembling}, review.Withdrawn, "withdrawn"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if _, err := e.store.GetPacket(context.Background(), r.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("packet stored after withdrawal: %v", err)
	}
}

// TestKilledWorkerLosesNoJob stops a worker in the middle of an assembly (its process dies: nothing is
// acknowledged) and checks that another worker takes the job after the visibility timeout and finishes it, once.
func TestKilledWorkerLosesNoJob(t *testing.T) {
	e := newEnv(t, storetest.RealRedis, func(c *assembly.Config) { c.Visibility = time.Second; c.Consumer = "worker-a" })
	r := e.consented(t)
	// Slow enough that worker A is surely still retrieving when it is stopped, however busy the machine.
	e.site["hospital"].Faults().Add(sandbox.Fault{Latency: 2 * time.Second})
	cancelA := runWorker(t, e.worker)
	if err := e.store.Enqueue(context.Background(), r.ID); err != nil {
		t.Fatal(err)
	}
	waitState(t, e.store, r.ID, review.Assembling)
	cancelA() // worker A dies mid-assembly
	time.Sleep(100 * time.Millisecond)
	if got, _ := e.store.GetReview(context.Background(), r.ID); got.State != review.Assembling {
		t.Fatalf("state %s after the worker died", got.State)
	}
	cfg := e.cfg
	cfg.Consumer = "worker-b"
	wb, err := assembly.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runWorker(t, wb)
	waitState(t, e.store, r.ID, review.Ready)
	if _, err := e.store.GetPacket(context.Background(), r.ID); err != nil {
		t.Fatalf("no packet: %v", err)
	}
	// The job is acknowledged just after the review is marked ready: wait for it.
	var pending, delayed int64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if pending, delayed, err = e.store.QueueDepth(context.Background()); err == nil && pending == 0 && delayed == 0 {
			break
		}
	}
	if err != nil || pending != 0 || delayed != 0 {
		t.Errorf("queue not empty: pending %d delayed %d (%v)", pending, delayed, err)
	}
}

// TestForeignSubjectNeverPacked: a source slips a resource about another patient into the search. The client drops
// it, the packet never carries it (nor its marker text), and the packet says what was left out.
func TestForeignSubjectNeverPacked(t *testing.T) {
	e := newEnv(t, storetest.EmbeddedRedis, nil)
	r := e.consented(t)
	const marker = "Foreign patient marker condition"
	e.site["hospital"].Faults().Add(sandbox.Fault{Path: "Condition?", Rewrite: func(b []byte) []byte {
		var doc map[string]any
		if json.Unmarshal(b, &doc) != nil {
			return b
		}
		entries, _ := doc["entry"].([]any)
		if len(entries) == 0 {
			return b
		}
		res := entries[0].(map[string]any)["resource"].(map[string]any)
		res["subject"] = map[string]any{"reference": "Patient/someone-else"}
		res["code"] = map[string]any{"text": marker}
		out, err := json.Marshal(doc)
		if err != nil {
			return b
		}
		return out
	}})
	if err := e.worker.Assemble(context.Background(), r.ID); err != nil {
		t.Fatal(err)
	}
	p, err := e.store.GetPacket(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := p.Bundle()
	if bytes.Contains(b, []byte(marker)) || bytes.Contains(b, []byte("someone-else")) {
		t.Fatal("the packet carries the other patient's resource")
	}
	if !bytes.Contains(b, []byte("1 Condition subject-mismatch")) {
		t.Error("the packet does not report the dropped resource")
	}
	counts, err := packet.EntryTypes(b)
	if err != nil {
		t.Fatal(err)
	}
	if n := counts["Condition"]; n != 5 {
		t.Errorf("%d Conditions packed, want 5 of 6", n)
	}
}
