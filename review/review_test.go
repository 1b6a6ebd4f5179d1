package review_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"secondlook/review"
)

var catalog = review.Catalog{
	Sources:   func(id string) bool { return id == "hospital" || id == "province" },
	Providers: func(id string) bool { return id == "onco" },
	Types:     []string{"DiagnosticReport", "ImagingStudy", "Condition"},
}

func TestValidateReportsEveryProblem(t *testing.T) {
	r := review.Request{
		Sources:       []review.SourceRequest{{Source: "hospital", PatientID: "../x"}, {Source: "nowhere"}, {Source: "hospital"}},
		Provider:      "someone",
		ResourceTypes: []string{"Claim"},
		LookBackDays:  -1,
		Question:      "",
	}
	err := r.Validate(catalog)
	var ie *review.InvalidError
	if !errors.As(err, &ie) {
		t.Fatalf("err = %v", err)
	}
	var fields []string
	for _, p := range ie.Problems {
		fields = append(fields, p.Field)
	}
	want := []string{"sources[0].patient", "sources[1].source", "sources[2].source", "provider", "resourceTypes[0]", "lookBackDays", "question"}
	if !slices.Equal(fields, want) {
		t.Errorf("fields %v, want %v", fields, want)
	}
	if strings.Contains(err.Error(), "../x") || strings.Contains(err.Error(), "nowhere") {
		t.Errorf("error repeats caller values: %v", err)
	}
	ok := review.Request{Sources: []review.SourceRequest{{Source: "hospital", PatientID: "123"}}, Provider: "onco", Question: "Is surgery indicated?"}
	if err := ok.Validate(catalog); err != nil {
		t.Errorf("valid request: %v", err)
	}
	long := ok
	long.Question = strings.Repeat("é", review.MaxQuestion+1)
	if long.Validate(catalog) == nil {
		t.Error("over-long question accepted")
	}
	many := ok
	for i := 0; i < review.MaxSources; i++ {
		many.Sources = append(many.Sources, review.SourceRequest{Source: "province"})
	}
	if many.Validate(catalog) == nil {
		t.Error("too many sources accepted")
	}
}

// Past a list's limit only the limit is reported, so a small request cannot draw an answer thousands of problems
// long; a type named twice is a problem.
func TestValidateBoundsItsAnswer(t *testing.T) {
	r := review.Request{Provider: "onco", Question: "q"}
	for range 5000 {
		r.Sources = append(r.Sources, review.SourceRequest{Source: "nowhere", PatientID: "../x"})
		r.ResourceTypes = append(r.ResourceTypes, "Claim")
	}
	var ie *review.InvalidError
	if err := r.Validate(catalog); !errors.As(err, &ie) || len(ie.Problems) != 2 {
		t.Fatalf("5000 bad sources and types: %v", err)
	}
	r = review.Request{Sources: []review.SourceRequest{{Source: "hospital"}}, Provider: "onco", Question: "q",
		ResourceTypes: []string{"Condition", "Condition"}}
	if err := r.Validate(catalog); !errors.As(err, &ie) || len(ie.Problems) != 1 || ie.Problems[0].Field != "resourceTypes[1]" {
		t.Errorf("a type twice: %v", err)
	}
}

func TestTransitions(t *testing.T) {
	allowed := [][2]review.State{
		{review.AwaitingConsent, review.Consented}, {review.Consented, review.Assembling}, {review.Assembling, review.Ready},
		{review.Ready, review.Withdrawn}, {review.Ready, review.Expired}, {review.Assembling, review.Failed},
	}
	for _, a := range allowed {
		if !review.CanMove(a[0], a[1]) {
			t.Errorf("%s → %s refused", a[0], a[1])
		}
	}
	refused := [][2]review.State{
		{review.AwaitingConsent, review.Ready}, {review.Withdrawn, review.Consented}, {review.Expired, review.Ready},
		{review.Failed, review.Assembling}, {review.Ready, review.Assembling},
	}
	for _, r := range refused {
		if review.CanMove(r[0], r[1]) {
			t.Errorf("%s → %s allowed", r[0], r[1])
		}
	}
	for _, s := range []review.State{review.Expired, review.Withdrawn, review.Failed} {
		if !s.Final() {
			t.Errorf("%s not final", s)
		}
	}
}

func TestNewIDs(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		r, err := review.New("ehr", review.Request{}, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if !review.ValidID(r.ID) || seen[r.ID] || r.State != review.AwaitingConsent {
			t.Fatalf("id %q state %s", r.ID, r.State)
		}
		seen[r.ID] = true
	}
	for _, bad := range []string{"", "../../etc/passwd", strings.Repeat("a", 27), "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "{x}aaaaaaaaaaaaaaaaaaaaaaa"} {
		if review.ValidID(bad) {
			t.Errorf("ValidID(%q)", bad)
		}
	}
}
