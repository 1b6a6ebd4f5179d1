package store_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"secondlook/consent"
	"secondlook/review"
	"secondlook/seal"
	"secondlook/store"
	"secondlook/store/storetest"
)

// With SealRecords, nothing a review or consent says about the patient is readable in Redis.
func TestRecordsSealedAtRest(t *testing.T) {
	s, _ := storetest.RealRedis(t)
	ring, err := seal.NewKeyring(map[string][]byte{"k1": bytes.Repeat([]byte{7}, 32)}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	s.SealRecords(ring)
	ctx := context.Background()
	r, _ := review.New("ehr", review.Request{Sources: []review.SourceRequest{{Source: "h", PatientID: "mrn-4711"}}, Provider: "p",
		Question: "Geneviève Tremblay, HCN 1234 567 890: surgery?"}, time.Now(), time.Hour)
	if err := s.CreateReview(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveConsent(ctx, consent.Record{ID: "c", ReviewID: r.ID, SourceID: "h", PatientRef: "Patient/mrn-4711", ProviderID: "p",
		Granted: []string{"Condition"}, Start: time.Now(), End: r.ExpiresAt}); err != nil {
		t.Fatal(err)
	}
	var raw strings.Builder
	rdb := s.Client()
	keys, err := rdb.Keys(ctx, s.Prefix()+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if typ, _ := rdb.Type(ctx, k).Result(); typ == "hash" {
			for f, v := range rdb.HGetAll(ctx, k).Val() {
				raw.WriteString(f + "=" + v + "\n")
			}
		}
	}
	for _, secret := range []string{"Tremblay", "1234 567 890", "mrn-4711"} {
		if strings.Contains(raw.String(), secret) {
			t.Errorf("%q readable in Redis", secret)
		}
	}
	got, err := s.GetReview(ctx, r.ID)
	if err != nil || got.Question != r.Question || got.Sources[0].PatientID != "mrn-4711" {
		t.Fatalf("read back: %+v %v", got, err)
	}
	recs, err := s.Consents(ctx, r.ID)
	if err != nil || len(recs) != 1 || recs[0].PatientRef != "Patient/mrn-4711" {
		t.Fatalf("consents: %+v %v", recs, err)
	}
	if err := s.PutPrivateState(ctx, "draft-1", []byte(`{"patient":"mrn-4711"}`), time.Minute); err != nil {
		t.Fatal(err)
	}
	raw2, _ := rdb.Get(ctx, s.Prefix()+"{draft-1}:state").Result()
	if raw2 == "" || strings.Contains(raw2, "mrn-4711") {
		t.Errorf("private state in Redis: %q", raw2)
	}
	if v, err := s.TakePrivateState(ctx, "draft-1"); err != nil || string(v) != `{"patient":"mrn-4711"}` {
		t.Errorf("private state back: %q %v", v, err)
	}
	// Another key (or none) cannot read them.
	other, _ := seal.NewKeyring(map[string][]byte{"k2": bytes.Repeat([]byte{8}, 32)}, "k2")
	s2 := store.New(rdb, s.Prefix())
	s2.SealRecords(other)
	if _, err := s2.GetReview(ctx, r.ID); err == nil {
		t.Error("read with another key")
	}
	if _, err := store.New(rdb, s.Prefix()).GetReview(ctx, r.ID); err == nil {
		t.Error("read with no key")
	}
}
