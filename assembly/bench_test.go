package assembly_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// BenchmarkAssembleLargest assembles the largest shared patient (Johnetta529, 3.2 MB) from one sandbox site with
// 50 ms of latency on every request: retrieval, de-identification, packet, signature, fail-closed scan and storage,
// as a worker does it. It reports the requests made and the longest chain of dependent requests, whose product
// with 50 ms is the critical path the wall time is compared with in docs/benchmarks.md.
func BenchmarkAssembleLargest(b *testing.B) {
	const patient = "abb133fd-5683-45cd-a5c8-137ca2807fbe"
	raw, err := os.ReadFile("../testdata/synthea/Johnetta529_Marquardt819_abb133fd-5683-45cd-a5c8-137ca2807fbe.json")
	if err != nil {
		b.Fatal(err)
	}
	sb, err := sandbox.New(sandbox.Options{Sites: []sandbox.SiteOptions{{Name: "hospital", Bundles: [][]byte{raw}}}})
	if err != nil {
		b.Fatal(err)
	}
	sb.Site("hospital").Faults().Add(sandbox.Fault{Latency: 50 * time.Millisecond})
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		sb.Handler().ServeHTTP(w, r)
	}))
	defer srv.Close()
	client, err := fhir.NewClient(fhir.Options{BaseURL: srv.URL + "/hospital/fhir"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := client.Capabilities(context.Background()); err != nil { // a running gateway has it cached
		b.Fatal(err)
	}
	// The real Redis, as in production (REDIS_URL or 127.0.0.1:6379); the embedded one only where none answers.
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	rdb, err := store.Open(context.Background(), url)
	if err != nil {
		embedded, mr, err := store.Embedded()
		if err != nil {
			b.Fatal(err)
		}
		defer mr.Close()
		rdb = embedded
	}
	defer func() { _ = rdb.Close() }()
	prefix := storetest.UniquePrefix()
	defer func() {
		keys, _ := storetest.Keys(context.Background(), rdb, prefix+"*")
		for _, k := range keys {
			rdb.Del(context.Background(), k)
		}
	}()
	st := store.New(rdb, prefix)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	prof, err := deid.LoadProfile(deid.DefaultProfile)
	if err != nil {
		b.Fatal(err)
	}
	obs := &stageTimes{d: map[string]time.Duration{}}
	w, err := assembly.New(assembly.Config{
		Reviews: st, Consents: st, Queue: st, Packets: st,
		Sources:  map[string]assembly.Source{"hospital": {Client: client, Kind: "hospital"}},
		Tokens:   func(string) fhir.TokenSource { return nil },
		GrantKey: func(r, s string) string { return r + "/" + s },
		Key:      deid.Key{ID: "k", Secret: bytes.Repeat([]byte("k"), 32)}, Profile: prof,
		Signer: packet.Signer{Key: key, KeyID: "s"}, Consumer: "bench", Observer: obs,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var perOp int64
	for b.Loop() {
		b.StopTimer()
		id := consentedAt(b, st, patient)
		before := requests.Load()
		b.StartTimer()
		if err := w.Assemble(ctx, id); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		perOp = requests.Load() - before
		if got, _ := st.GetReview(ctx, id); got.State != review.Ready {
			b.Fatalf("state %s", got.State)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(perOp), "requests/op")
	for stage, d := range obs.d {
		b.ReportMetric(float64(d.Microseconds())/1000/float64(b.N), stage+"-ms")
	}
	// Patient, DiagnosticReport (one page of 100 with _include), Condition and ImagingStudy searches all start at
	// once and nothing waits on them: one round trip.
	b.ReportMetric(1, "chain")
}

// stageTimes adds up the time spent in each assembly stage.
type stageTimes struct {
	mu sync.Mutex
	d  map[string]time.Duration
}

func (o *stageTimes) Assembled(string, time.Duration) {}
func (o *stageTimes) Stage(stage string, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.d[stage] += d
}

// consentedAt stores a review of patient at the one sandbox source "hospital", for provider p, with the patient's
// consent to DiagnosticReport, ImagingStudy and Condition, moved to consented; it returns the review's id.
func consentedAt(tb testing.TB, st *store.Store, patient string) string {
	tb.Helper()
	ctx := context.Background()
	r, _ := review.New("ehr", review.Request{Sources: []review.SourceRequest{{Source: "hospital", PatientID: patient}}, Provider: "p", Question: "q"}, time.Now(), time.Hour)
	if err := st.CreateReview(ctx, r); err != nil {
		tb.Fatal(err)
	}
	if err := st.SaveConsent(ctx, consent.Record{ID: "c", ReviewID: r.ID, SourceID: "hospital", PatientRef: "Patient/" + patient, ProviderID: "p",
		Granted: []string{"DiagnosticReport", "ImagingStudy", "Condition"}, Start: time.Now().Add(-time.Minute), End: r.ExpiresAt}); err != nil {
		tb.Fatal(err)
	}
	if _, err := st.MoveReview(ctx, r.ID, []review.State{review.AwaitingConsent}, review.Consented, ""); err != nil {
		tb.Fatal(err)
	}
	return r.ID
}
