package audit

import (
	"encoding/json"
	"time"
)

// ReferenceJSON is the struct form of Event.JSON, which the hand-written encoder must stay equal to.
func ReferenceJSON(e Event) ([]byte, error) {
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
