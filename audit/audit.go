// Package audit writes the gateway's audit trail as FHIR R4 AuditEvent resources shaped after the IHE Basic Audit
// Log Patterns (BALP): who (the calling client, by id), did what (a RESTful interaction or a lifecycle step), to
// which review, when, with what outcome. Events name clients and reviews by their ids only; they carry no patient
// data, so the trail can be shown to the requesting EHR.
package audit

import (
	"encoding/json"
	"time"
)

// Action is the kind of event.
type Action struct {
	// Type and Subtype code the event: a DICOM audit type (110110 Patient Record, 110106 Export...) and a FHIR
	// restful-interaction or a secondlook lifecycle code.
	Type, TypeDisplay       string
	Subtype, SubtypeDisplay string
	SubtypeSystem           string
	// Verb is the AuditEvent.action code: C, R, U, D or E.
	Verb string
}

// Actions the gateway records.
var (
	ReviewCreated = Action{Type: "110110", TypeDisplay: "Patient Record", Subtype: "create", SubtypeDisplay: "create", SubtypeSystem: restful, Verb: "C"}
	ReviewRead    = Action{Type: "110110", TypeDisplay: "Patient Record", Subtype: "read", SubtypeDisplay: "read", SubtypeSystem: restful, Verb: "R"}
	PacketRead    = Action{Type: "110106", TypeDisplay: "Export", Subtype: "read", SubtypeDisplay: "read", SubtypeSystem: restful, Verb: "R"}
	ReportRead    = Action{Type: "110106", TypeDisplay: "Export", Subtype: "read", SubtypeDisplay: "read de-identification report", SubtypeSystem: restful, Verb: "R"}
	AuditRead     = Action{Type: "110110", TypeDisplay: "Patient Record", Subtype: "read", SubtypeDisplay: "read audit trail", SubtypeSystem: restful, Verb: "R"}
	// Transition records a lifecycle step; Subtype is the new state.
	Transition = Action{Type: "110110", TypeDisplay: "Patient Record", SubtypeSystem: lifecycle, Verb: "U"}
)

const (
	restful   = "http://hl7.org/fhir/restful-interaction"
	lifecycle = "urn:secondlook:review-state"
)

// Outcome is AuditEvent.outcome: 0 success, 4 minor failure (denied, not found), 8 serious failure.
type Outcome string

// Outcomes.
const (
	Success Outcome = "0"
	Denied  Outcome = "4"
	Failure Outcome = "8"
)

// Event is one audit record before it is rendered.
type Event struct {
	Action   Action
	Outcome  Outcome
	At       time.Time
	ClientID string // the calling client, or "" for the gateway itself
	Patient  bool   // the patient acted (consent, withdrawal) through the browser
	ReviewID string
	// State is the new state, for Transition.
	State string
}

// JSON renders the event as a FHIR R4 AuditEvent. Every packet read writes one, so it is encoded from typed structs
// (fields in declared order) rather than maps, which encoding/json would sort on every call.
func (e Event) JSON() ([]byte, error) {
	a := e.Action
	if a.SubtypeSystem == lifecycle {
		a.Subtype, a.SubtypeDisplay = e.State, e.State
	}
	who := aeWho{Display: "secondlook gateway"}
	role := "CST" // custodian
	switch {
	case e.ClientID != "":
		who = aeWho{Identifier: &aeIdentifier{System: "urn:secondlook:client", Value: e.ClientID}}
		role = "IRCP"
	case e.Patient:
		who = aeWho{Display: "patient (browser session)"}
		role = "PAT"
	}
	return json.Marshal(auditEvent{
		ResourceType: "AuditEvent",
		Type:         aeCoding{System: "http://dicom.nema.org/resources/ontology/DCM", Code: a.Type, Display: a.TypeDisplay},
		Subtype:      []aeCoding{{System: a.SubtypeSystem, Code: a.Subtype, Display: a.SubtypeDisplay}},
		Action:       a.Verb,
		Recorded:     e.At.UTC().Format(time.RFC3339Nano),
		Outcome:      string(e.Outcome),
		Agent: []aeAgent{{
			Type:      aeConcept{Coding: []aeCoding{{System: "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", Code: role}}},
			Who:       who,
			Requestor: e.ClientID != "" || e.Patient,
		}},
		Source: aeSource{
			Observer: aeWho{Display: "secondlook gateway"},
			Type:     []aeCoding{{System: "http://terminology.hl7.org/CodeSystem/security-source-type", Code: "4", Display: "Application Server"}},
		},
		Entity: []aeEntity{{
			What: aeWho{Identifier: &aeIdentifier{System: "urn:secondlook:review", Value: e.ReviewID}},
			Type: aeCoding{System: "http://terminology.hl7.org/CodeSystem/audit-entity-type", Code: "2", Display: "System Object"},
		}},
	})
}

// The AuditEvent as written: only the elements the gateway fills.
type (
	auditEvent struct {
		ResourceType string     `json:"resourceType"`
		Type         aeCoding   `json:"type"`
		Subtype      []aeCoding `json:"subtype"`
		Action       string     `json:"action"`
		Recorded     string     `json:"recorded"`
		Outcome      string     `json:"outcome"`
		Agent        []aeAgent  `json:"agent"`
		Source       aeSource   `json:"source"`
		Entity       []aeEntity `json:"entity"`
	}
	aeCoding struct {
		System  string `json:"system"`
		Code    string `json:"code"`
		Display string `json:"display,omitempty"`
	}
	aeConcept struct {
		Coding []aeCoding `json:"coding"`
	}
	aeIdentifier struct {
		System string `json:"system"`
		Value  string `json:"value"`
	}
	aeWho struct {
		Identifier *aeIdentifier `json:"identifier,omitempty"`
		Display    string        `json:"display,omitempty"`
	}
	aeAgent struct {
		Type      aeConcept `json:"type"`
		Who       aeWho     `json:"who"`
		Requestor bool      `json:"requestor"`
	}
	aeSource struct {
		Observer aeWho      `json:"observer"`
		Type     []aeCoding `json:"type"`
	}
	aeEntity struct {
		What aeWho    `json:"what"`
		Type aeCoding `json:"type"`
	}
)
