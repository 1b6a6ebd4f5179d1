package audit_test

import (
	"encoding/json"
	"reflect"
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
		raw := e.JSON()
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

// TestJSONEqualsTheStructForm: the hand-written encoder says exactly what the struct form says, for every action,
// outcome and kind of actor, and for strings that need escaping.
func TestJSONEqualsTheStructForm(t *testing.T) {
	at := time.Date(2026, 11, 26, 12, 0, 0, 123456789, time.FixedZone("EST", -5*3600))
	for _, a := range []audit.Action{audit.ReviewCreated, audit.ReviewRead, audit.PacketRead, audit.ReportRead, audit.AuditRead, audit.Transition} {
		for _, o := range []audit.Outcome{audit.Success, audit.Denied, audit.Failure} {
			for _, e := range []audit.Event{
				{Action: a, Outcome: o, At: at, ClientID: "onco", ReviewID: "r1", State: "ready"},
				{Action: a, Outcome: o, At: at, Patient: true, ReviewID: "r2", State: "withdrawn"},
				{Action: a, Outcome: o, At: at, ReviewID: "r3", State: "expired"},
				{Action: a, Outcome: o, At: at, ClientID: "a\"b<c>&\u2028\x01", ReviewID: "r\\4"},
			} {
				got := e.JSON()
				want, err := audit.ReferenceJSON(e)
				if err != nil {
					t.Fatal(err)
				}
				var g, w any
				if err := json.Unmarshal(got, &g); err != nil {
					t.Fatalf("invalid JSON %s: %v", got, err)
				}
				_ = json.Unmarshal(want, &w)
				if !reflect.DeepEqual(g, w) {
					t.Errorf("got  %s\nwant %s", got, want)
				}
			}
		}
	}
}

func BenchmarkEventJSON(b *testing.B) {
	e := audit.Event{Action: audit.PacketRead, Outcome: audit.Success, At: time.Now(), ClientID: "onco", ReviewID: "vpxd7y5m7bskpudupb7zuvfrmy"}
	for b.Loop() {
		_ = e.JSON()
	}
}
