package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"secondlook/auth"
	"secondlook/consent"
	"secondlook/fhir"
	"secondlook/review"
	"secondlook/sandbox"
	"secondlook/seal"
	"secondlook/store"
	"secondlook/store/storetest"
)

// TestSweepQueuesTheJobAConsentOwes: the replica that moved a review to consented died (or lost Redis) before it
// queued the assembly job. The sweeper of any replica, even an API-only one, queues it once the debt is old enough.
func TestSweepQueuesTheJobAConsentOwes(t *testing.T) {
	st, _ := storetest.EmbeddedRedis(t)
	later := time.Now().Add(2 * owedGrace) // the sweeper's clock, past the grace a consent has to queue its job
	gw := testGateway(t, st, "http://127.0.0.1:9/fhir", func() time.Time { return later })
	ctx := context.Background()
	r, _ := review.New("ehr", review.Request{Sources: []review.SourceRequest{{Source: "hospital"}}, Provider: "onco", Question: "q"}, time.Now(), time.Hour)
	if err := st.CreateReview(ctx, r); err != nil {
		t.Fatal(err)
	}
	// What the consent does before the process dies: the debt, then the move; the job is never queued.
	if err := st.OweJob(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.MoveReview(ctx, r.ID, []review.State{review.AwaitingConsent}, review.Consented, ""); err != nil {
		t.Fatal(err)
	}

	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- gw.RunWorkers(wctx) }() // no workers: only the sweeper runs
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("workers: %v", err)
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		pending, _, err := st.QueueDepth(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if pending == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the owed job was not queued: %d pending", pending)
		}
	}
	if paid, err := st.PayJob(ctx, r.ID); err != nil || paid {
		t.Errorf("the debt outlived the job the sweeper queued: %v %v", paid, err)
	}
}

// TestConsentPageCompletesAnInterruptedConsent: the request that saved the last consent died before the review
// moved to consented. The patient's next visit to the consent page finishes the move and queues the job.
func TestConsentPageCompletesAnInterruptedConsent(t *testing.T) {
	st, _ := storetest.EmbeddedRedis(t)
	gw := testGateway(t, st, "http://127.0.0.1:9/fhir", nil)
	ctx := context.Background()
	r, _ := review.New("ehr", review.Request{Sources: []review.SourceRequest{{Source: "hospital"}}, Provider: "onco", Question: "q"}, time.Now(), time.Hour)
	if err := st.CreateReview(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveConsent(ctx, consent.Record{ID: "c1", ReviewID: r.ID, SourceID: "hospital", PatientRef: "Patient/p1", ProviderID: "onco",
		Granted: []string{"Condition"}, Start: time.Now().Add(-time.Minute), End: r.ExpiresAt}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw.Handler)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/consent/" + r.ID)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("consent page: %d", resp.StatusCode)
	}
	got, err := st.GetReview(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != review.Consented {
		t.Errorf("state %s after the visit, want consented", got.State)
	}
	if pending, _, err := st.QueueDepth(ctx); err != nil || pending != 1 {
		t.Errorf("%d jobs queued (%v), want 1", pending, err)
	}
}

// TestReadyNeedsEverySourcesMetadata: /readyz is 503 while a source's CapabilityStatement has never been read and
// cannot be (naming the source, never its URL), 200 once it has been, and stays 200 when the source goes away later
// (the metadata is cached; assemblies from it fail and retry on their own).
func TestReadyNeedsEverySourcesMetadata(t *testing.T) {
	st, _ := storetest.EmbeddedRedis(t)
	sb, err := sandbox.New(sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fhirSrv := httptest.NewServer(sb.Handler())
	defer fhirSrv.Close()
	newGateway := func(base string) http.Handler { return testGateway(t, st, base, nil).Handler }
	get := func(h http.Handler) (int, string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
		return w.Code, w.Body.String()
	}
	down := newGateway("http://127.0.0.1:9/fhir")
	if code, body := get(down); code != http.StatusServiceUnavailable || !strings.Contains(body, "source hospital") || strings.Contains(body, "127.0.0.1") {
		t.Errorf("unreachable source: %d %s", code, body)
	}
	up := newGateway(fhirSrv.URL + "/hospital/fhir")
	if code, body := get(up); code != http.StatusOK {
		t.Errorf("reachable source: %d %s", code, body)
	}
	fhirSrv.Close()
	if code, body := get(up); code != http.StatusOK {
		t.Errorf("source gone after its metadata was read: %d %s", code, body)
	}
}

// testGateway is a gateway on st with one source, "hospital", at FHIR base base; now, when set, is its clock.
func testGateway(t *testing.T, st *store.Store, base string, now func() time.Time) *Gateway {
	t.Helper()
	ring, err := seal.NewKeyring(map[string][]byte{"k1": make([]byte, 32)}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	gw, err := New(context.Background(), Options{
		PublicURL: "http://127.0.0.1:9", Store: st, TokenKeys: ring, Signer: sig, SignerKID: "s1", CSRFKey: make([]byte, 32),
		Sources: []Source{{ID: "hospital", Name: "Hospital", Kind: "hospital", FHIR: fhir.Options{BaseURL: base},
			Auth: auth.Source{ClientID: "gw", Method: auth.MethodClientSecretBasic, Secret: []byte("s")}}},
		Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return gw
}
