package demo

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"secondlook/review"
)

// TestEHRLaunch: a clinician launches the gateway from the hospital's EHR for the patient in context, approves at
// the hospital, fills the form, and gets a consent link for a review that names that patient at the hospital.
func TestEHRLaunch(t *testing.T) {
	d, logs := startDemo(t)
	ctx := context.Background()
	launch := d.sandbox.Site("hospital").NewEHRLaunch(Patient)
	if launch == "" {
		t.Fatal("no launch")
	}
	b := NewBrowser()
	q := url.Values{"iss": {d.SandboxURL + "/hospital/fhir"}, "launch": {launch}}
	if err := b.Get(ctx, d.GatewayURL+"/launch?"+q.Encode()); err != nil {
		t.Fatalf("launch: %v", err)
	}
	if err := b.Submit(ctx, "approve", nil); err != nil {
		t.Fatalf("approve at the EHR: %v", err)
	}
	formPage, formURL := b.Page, b.URL
	// More sources than a review may name are refused at once (the list is not even deduplicated), and the form
	// can be sent again.
	many := make([]string, review.MaxSources+1)
	for i := range many {
		many[i] = fmt.Sprintf("source-%d", i)
	}
	if err := b.Submit(ctx, "create", map[string][]string{"provider": {ProviderClient}, "question": {"q"}, "source": many}); err == nil || b.Status != http.StatusUnprocessableEntity {
		t.Fatalf("%d sources: status %d, %v", len(many), b.Status, err)
	}
	b.Page, b.URL = formPage, formURL
	if err := b.Submit(ctx, "create", map[string][]string{"provider": {ProviderClient}, "question": {"Is surgery indicated?"}}); err != nil {
		t.Fatalf("create the review: %v\n%s", err, b.Page)
	}
	link, err := b.Text("consent-link")
	if err != nil || !strings.HasPrefix(link, d.GatewayURL+"/consent/") {
		t.Fatalf("consent link %q: %v", link, err)
	}
	r, err := d.store.GetReview(ctx, strings.TrimPrefix(link, d.GatewayURL+"/consent/"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Provider != ProviderClient || r.Sources[0].Source != "hospital" || r.Sources[0].PatientID != Patient || len(r.Sources) != 2 {
		t.Errorf("review %+v", r)
	}
	// The clinician's token was not kept.
	if _, err := d.store.LoadGrant(ctx, r.ID+"/hospital"); err == nil {
		t.Error("the EHR launch token was kept")
	}
	// The same form cannot be submitted twice.
	b.Page, b.URL = formPage, formURL
	if err := b.Submit(ctx, "create", map[string][]string{"provider": {ProviderClient}, "question": {"again"}}); err == nil || b.Status != http.StatusGone {
		t.Errorf("a used launch form submitted again: status %d, %v", b.Status, err)
	}
	if strings.Contains(logs.String(), Patient) {
		t.Error("the patient id reached the log")
	}
	// A launch from an issuer the gateway does not know is refused before any request to it.
	q = url.Values{"iss": {"http://127.0.0.1:9/evil/fhir"}, "launch": {"x"}}
	other := NewBrowser()
	if err := other.Get(ctx, d.GatewayURL+"/launch?"+q.Encode()); err == nil || other.Status != http.StatusBadRequest {
		t.Errorf("untrusted iss: status %d", other.Status)
	}
}
