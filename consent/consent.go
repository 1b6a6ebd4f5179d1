package consent

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	models "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// DefaultValidity is how long a consent lasts when the configuration says nothing else.
const DefaultValidity = 30 * 24 * time.Hour

// SourceSystem names the identifier system of a secondlook source in a Consent.
const SourceSystem = "urn:secondlook:source"

// ProviderSystem names the identifier system of a second-opinion provider in a Consent.
const ProviderSystem = "urn:secondlook:provider"

// Record is one patient decision for one source of one review.
type Record struct {
	// ID is the Consent resource's id.
	ID       string
	ReviewID string
	// Source identifies the source the patient authorized, by configured id and display name.
	SourceID, SourceName string
	// PatientRef is the Patient at the source ("Patient/<id>" as the source's token response gave it).
	PatientRef string
	// Provider identifies who will read the packet, by client id and display name.
	ProviderID, ProviderName string
	// Granted are the resource types the patient granted; Denied those asked for and not granted.
	Granted, Denied []string
	// Start and End bound the consent; Withdrawn is set when the patient withdrew it.
	Start, End time.Time
	Withdrawn  time.Time
}

// Active reports whether the consent permits access at now.
func (r *Record) Active(now time.Time) bool {
	return r.Withdrawn.IsZero() && !now.Before(r.Start) && now.Before(r.End)
}

// Status is the FHIR Consent.status for now: active, or inactive once withdrawn or expired.
func (r *Record) Status(now time.Time) string {
	if r.Active(now) {
		return "active"
	}
	return "inactive"
}

// ErrInvalid means a Record lacks something a Consent must state.
var ErrInvalid = errors.New("consent: invalid record")

// Validate checks that the record can become a Consent.
func (r *Record) Validate() error {
	var problems []string
	if r.ID == "" || r.ReviewID == "" || r.SourceID == "" || r.ProviderID == "" {
		problems = append(problems, "id, review, source and provider are required")
	}
	if len(r.Granted) == 0 {
		problems = append(problems, "at least one resource type must be granted")
	}
	if !r.End.After(r.Start) {
		problems = append(problems, "the period must end after it starts")
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %v", ErrInvalid, problems)
	}
	return nil
}

// Resource renders the record as a FHIR R4 Consent at now (its status depends on the time).
func (r *Record) Resource(now time.Time) (json.RawMessage, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	state := models.ConsentStateActive
	if !r.Active(now) {
		state = models.ConsentStateInactive
	}
	permit := models.ConsentProvisionTypePermit
	str := func(s string) *string { return &s }
	date := r.Start.UTC().Format(time.RFC3339)
	if !r.Withdrawn.IsZero() {
		date = r.Withdrawn.UTC().Format(time.RFC3339)
	}
	classes := make([]models.Coding, 0, len(r.Granted))
	granted := slices.Clone(r.Granted)
	slices.Sort(granted)
	for _, t := range granted {
		classes = append(classes, models.Coding{System: str("http://hl7.org/fhir/resource-types"), Code: str(t)})
	}
	c := models.Consent{
		Id:     str(r.ID),
		Status: state,
		Scope: models.CodeableConcept{Coding: []models.Coding{{
			System: str("http://terminology.hl7.org/CodeSystem/consentscope"), Code: str("patient-privacy"), Display: str("Privacy Consent"),
		}}},
		Category: []models.CodeableConcept{{Coding: []models.Coding{{
			System: str("http://loinc.org"), Code: str("59284-0"), Display: str("Patient Consent"),
		}}}},
		DateTime:  str(date),
		Patient:   &models.Reference{Reference: nonEmpty(r.PatientRef)},
		Performer: []models.Reference{{Reference: nonEmpty(r.PatientRef)}},
		Organization: []models.Reference{{
			Identifier: &models.Identifier{System: str(SourceSystem), Value: str(r.SourceID)},
			Display:    nonEmpty(r.SourceName),
		}},
		Policy: []models.ConsentPolicy{{Uri: str("urn:secondlook:policy:second-opinion-review:" + r.ReviewID)}},
		Provision: &models.ConsentProvision{
			Type:   &permit,
			Period: &models.Period{Start: str(r.Start.UTC().Format(time.RFC3339)), End: str(r.End.UTC().Format(time.RFC3339))},
			Actor: []models.ConsentProvisionActor{{
				Role: models.CodeableConcept{Coding: []models.Coding{{
					System: str("http://terminology.hl7.org/CodeSystem/v3-ParticipationType"), Code: str("IRCP"), Display: str("information recipient"),
				}}},
				Reference: models.Reference{
					Identifier: &models.Identifier{System: str(ProviderSystem), Value: str(r.ProviderID)},
					Display:    nonEmpty(r.ProviderName),
				},
			}},
			Action: []models.CodeableConcept{{Coding: []models.Coding{{
				System: str("http://terminology.hl7.org/CodeSystem/consentaction"), Code: str("access"),
			}}}},
			Purpose: []models.Coding{{
				System: str("http://terminology.hl7.org/CodeSystem/v3-ActReason"), Code: str("TREAT"), Display: str("treatment"),
			}},
			Class: classes,
		},
	}
	return json.Marshal(c)
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
