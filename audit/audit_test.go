package audit_test

import (
	"testing"
	"time"

	models "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"secondlook/audit"
)

func TestEventIsAnAuditEvent(t *testing.T) {
	for _, e := range []audit.Event{
		{Action: audit.PacketRead, Outcome: audit.Success, ClientID: "onco", ReviewID: "r1"},
		{Action: audit.Transition, State: "ready", Outcome: audit.Success, ReviewID: "r1"},
		{Action: audit.ReviewRead, Outcome: audit.Denied, ClientID: "ehr-2", ReviewID: "r1"},
		{Action: audit.Transition, State: "withdrawn", Patient: true, Outcome: audit.Success, ReviewID: "r1"},
	} {
		e.At = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
		raw, err := e.JSON()
		if err != nil {
			t.Fatal(err)
		}
		ae, err := models.UnmarshalAuditEvent(raw)
		if err != nil {
			t.Fatalf("not an R4 AuditEvent: %v\n%s", err, raw)
		}
		if ae.Recorded != "2026-11-26T12:00:00Z" || len(ae.Agent) != 1 || len(ae.Entity) != 1 || *ae.Entity[0].What.Identifier.Value != "r1" {
			t.Errorf("event %s", raw)
		}
		if ae.Outcome == nil || ae.Outcome.Code() != string(e.Outcome) {
			t.Errorf("outcome %v, want %s", ae.Outcome, e.Outcome)
		}
	}
}
