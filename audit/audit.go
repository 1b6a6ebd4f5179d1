// Package audit writes the gateway's audit trail as FHIR R4 AuditEvent resources shaped after the IHE Basic Audit
// Log Patterns (BALP): who (the calling client, by id), did what (a RESTful interaction or a lifecycle step), to
// which review, when, with what outcome. Events name clients and reviews by their ids only; they carry no patient
// data, so the trail can be shown to the requesting EHR.
package audit

import (
	"time"

	"github.com/go-json-experiment/json/jsontext"
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

// JSON renders the event as a FHIR R4 AuditEvent. Every packet read and status poll writes one, so it is appended
// by hand rather than through reflection; export_test.go keeps the struct form it must stay equal to.
func (e Event) JSON() []byte {
	a := e.Action
	if a.SubtypeSystem == lifecycle {
		a.Subtype, a.SubtypeDisplay = e.State, e.State
	}
	role := "CST" // custodian
	switch {
	case e.ClientID != "":
		role = "IRCP"
	case e.Patient:
		role = "PAT"
	}
	b := make([]byte, 0, 1024)
	b = append(b, `{"resourceType":"AuditEvent","type":`...)
	b = appendCoding(b, "http://dicom.nema.org/resources/ontology/DCM", a.Type, a.TypeDisplay)
	b = append(b, `,"subtype":[`...)
	b = appendCoding(b, a.SubtypeSystem, a.Subtype, a.SubtypeDisplay)
	b = append(b, `],"action":`...)
	b = appendString(b, a.Verb)
	b = append(b, `,"recorded":"`...)
	b = e.At.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","outcome":`...)
	b = appendString(b, string(e.Outcome))
	b = append(b, `,"agent":[{"type":{"coding":[`...)
	b = appendCoding(b, "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", role, "")
	b = append(b, `]},"who":`...)
	switch {
	case e.ClientID != "":
		b = appendIdentified(b, "urn:secondlook:client", e.ClientID)
		b = append(b, `,"requestor":true}]`...)
	case e.Patient:
		b = append(b, `{"display":"patient (browser session)"},"requestor":true}]`...)
	default:
		b = append(b, `{"display":"secondlook gateway"},"requestor":false}]`...)
	}
	b = append(b, `,"source":{"observer":{"display":"secondlook gateway"},"type":[`...)
	b = appendCoding(b, "http://terminology.hl7.org/CodeSystem/security-source-type", "4", "Application Server")
	b = append(b, `]},"entity":[{"what":`...)
	b = appendIdentified(b, "urn:secondlook:review", e.ReviewID)
	b = append(b, `,"type":`...)
	b = appendCoding(b, "http://terminology.hl7.org/CodeSystem/audit-entity-type", "2", "System Object")
	b = append(b, `}]}`...)
	return b
}

func appendCoding(b []byte, system, code, display string) []byte {
	b = append(b, `{"system":`...)
	b = appendString(b, system)
	b = append(b, `,"code":`...)
	b = appendString(b, code)
	if display != "" {
		b = append(b, `,"display":`...)
		b = appendString(b, display)
	}
	return append(b, '}')
}

// appendIdentified writes {"identifier":{"system":…,"value":…}}.
func appendIdentified(b []byte, system, value string) []byte {
	b = append(b, `{"identifier":{"system":`...)
	b = appendString(b, system)
	b = append(b, `,"value":`...)
	b = appendString(b, value)
	return append(b, `}}`...)
}

// appendString appends s as a JSON string; invalid UTF-8 becomes U+FFFD, as encoding/json writes it.
func appendString(b []byte, s string) []byte {
	out, _ := jsontext.AppendQuote(b, s) // the only error is invalid UTF-8, already replaced in out
	return out
}
