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

// JSON renders the event as a FHIR R4 AuditEvent.
func (e Event) JSON() ([]byte, error) {
	a := e.Action
	if a.SubtypeSystem == lifecycle {
		a.Subtype, a.SubtypeDisplay = e.State, e.State
	}
	who := map[string]any{"display": "secondlook gateway"}
	role := "CST" // custodian
	switch {
	case e.ClientID != "":
		who = map[string]any{"identifier": map[string]string{"system": "urn:secondlook:client", "value": e.ClientID}}
		role = "IRCP"
	case e.Patient:
		who = map[string]any{"display": "patient (browser session)"}
		role = "PAT"
	}
	ev := map[string]any{
		"resourceType": "AuditEvent",
		"type":         coding("http://dicom.nema.org/resources/ontology/DCM", a.Type, a.TypeDisplay),
		"subtype":      []map[string]string{coding(a.SubtypeSystem, a.Subtype, a.SubtypeDisplay)},
		"action":       a.Verb,
		"recorded":     e.At.UTC().Format(time.RFC3339Nano),
		"outcome":      string(e.Outcome),
		"agent": []map[string]any{{
			"type":      map[string]any{"coding": []map[string]string{coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", role, "")}},
			"who":       who,
			"requestor": e.ClientID != "" || e.Patient,
		}},
		"source": map[string]any{
			"observer": map[string]string{"display": "secondlook gateway"},
			"type":     []map[string]string{coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4", "Application Server")},
		},
		"entity": []map[string]any{{
			"what": map[string]any{"identifier": map[string]string{"system": "urn:secondlook:review", "value": e.ReviewID}},
			"type": coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "2", "System Object"),
		}},
	}
	return json.Marshal(ev)
}

func coding(system, code, display string) map[string]string {
	c := map[string]string{"system": system, "code": code}
	if display != "" {
		c["display"] = display
	}
	return c
}
