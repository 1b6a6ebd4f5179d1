package consent_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	models "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"secondlook/consent"
)

func record() consent.Record {
	start := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	return consent.Record{
		ID: "c1", ReviewID: "r1", SourceID: "st-mary", SourceName: "St. Mary's",
		PatientRef: "Patient/123", ProviderID: "second-look-oncology", ProviderName: "Oncology Second Opinions",
		Granted: []string{"DiagnosticReport", "Condition"}, Denied: []string{"ImagingStudy"},
		Start: start, End: start.Add(consent.DefaultValidity),
	}
}

func TestResourceIsAValidConsent(t *testing.T) {
	r := record()
	raw, err := r.Resource(r.Start.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c, err := models.UnmarshalConsent(raw)
	if err != nil {
		t.Fatalf("not a Consent the R4 models accept: %v", err)
	}
	if c.Status != models.ConsentStateActive || *c.Scope.Coding[0].Code != "patient-privacy" {
		t.Errorf("status %v scope %v", c.Status, *c.Scope.Coding[0].Code)
	}
	var classes []string
	for _, cl := range c.Provision.Class {
		classes = append(classes, *cl.Code)
	}
	if diff := cmp.Diff([]string{"Condition", "DiagnosticReport"}, classes); diff != "" {
		t.Errorf("granted classes (-want +got):\n%s", diff)
	}
	if *c.Provision.Actor[0].Reference.Identifier.Value != "second-look-oncology" || *c.Provision.Period.End != "2026-12-01T09:00:00Z" {
		t.Errorf("actor or period wrong: %s", raw)
	}
	var generic map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil || generic["resourceType"] != "Consent" {
		t.Errorf("resourceType: %v", generic["resourceType"])
	}
}

func TestStatusFollowsTimeAndWithdrawal(t *testing.T) {
	r := record()
	for _, tc := range []struct {
		name string
		now  time.Time
		wd   time.Time
		want string
	}{
		{"before start", r.Start.Add(-time.Second), time.Time{}, "inactive"},
		{"during", r.Start.Add(time.Hour), time.Time{}, "active"},
		{"expired", r.End, time.Time{}, "inactive"},
		{"withdrawn", r.Start.Add(2 * time.Hour), r.Start.Add(time.Hour), "inactive"},
	} {
		rr := r
		rr.Withdrawn = tc.wd
		if got := rr.Status(tc.now); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
		raw, err := rr.Resource(tc.now)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := models.UnmarshalConsent(raw)
		if c.Status.Code() != tc.want {
			t.Errorf("%s: Consent.status %s, want %s", tc.name, c.Status.Code(), tc.want)
		}
	}
}

func TestInvalidRecord(t *testing.T) {
	r := record()
	r.Granted = nil
	r.End = r.Start
	if _, err := r.Resource(r.Start); !errors.Is(err, consent.ErrInvalid) {
		t.Errorf("err = %v", err)
	}
}
