package sandbox

import (
	"encoding/base64"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// fieldsJSON is every element some search parameter reads. Each is kept raw because the same name has different
// shapes across types (Encounter.type is a list, DocumentReference.type a single CodeableConcept).
type fieldsJSON struct {
	Subject           jsontext.Value `json:"subject"`
	Patient           jsontext.Value `json:"patient"`
	Identifier        jsontext.Value `json:"identifier"`
	Name              jsontext.Value `json:"name"`
	BirthDate         jsontext.Value `json:"birthDate"`
	Category          jsontext.Value `json:"category"`
	Code              jsontext.Value `json:"code"`
	Type              jsontext.Value `json:"type"`
	Modality          jsontext.Value `json:"modality"`
	Series            jsontext.Value `json:"series"`
	EffectiveDateTime jsontext.Value `json:"effectiveDateTime"`
	EffectiveInstant  jsontext.Value `json:"effectiveInstant"`
	EffectivePeriod   jsontext.Value `json:"effectivePeriod"`
	Date              jsontext.Value `json:"date"`
	Period            jsontext.Value `json:"period"`
	Started           jsontext.Value `json:"started"`
	OnsetDateTime     jsontext.Value `json:"onsetDateTime"`
	OnsetPeriod       jsontext.Value `json:"onsetPeriod"`
	RecordedDate      jsontext.Value `json:"recordedDate"`
	Result            jsontext.Value `json:"result"`
	ContentType       jsontext.Value `json:"contentType"`
	Data              jsontext.Value `json:"data"`
}

type referenceJSON struct {
	Reference string `json:"reference"`
}

type codingJSON struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

type codeableConceptJSON struct {
	Coding []codingJSON `json:"coding"`
}

type periodJSON struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

type humanNameJSON struct {
	Text   string   `json:"text"`
	Family string   `json:"family"`
	Given  []string `json:"given"`
	Prefix []string `json:"prefix"`
	Suffix []string `json:"suffix"`
}

// indexResource extracts the search values of r from its (reference-rewritten) JSON. Values of an unexpected
// shape are not indexed rather than failing the load: a real server would have rejected them, and a test peer
// should keep serving the rest.
func indexResource(r *resource, raw []byte) {
	var f fieldsJSON
	if err := json.Unmarshal(raw, &f); err != nil {
		return
	}
	r.tokens = map[string][]coding{}
	r.dates = map[string][]span{}
	r.strs = map[string][]string{}
	addDate := func(name string, v jsontext.Value) {
		var s string
		if len(v) == 0 || json.Unmarshal(v, &s) != nil {
			return
		}
		if sp, err := parseDate(s); err == nil {
			r.dates[name] = append(r.dates[name], sp)
		}
	}
	addPeriod := func(name string, v jsontext.Value) {
		var p periodJSON
		if len(v) == 0 || json.Unmarshal(v, &p) != nil {
			return
		}
		if sp, ok := parsePeriod(p.Start, p.End); ok {
			r.dates[name] = append(r.dates[name], sp)
		}
	}
	addConcepts := func(name string, v jsontext.Value) {
		r.tokens[name] = append(r.tokens[name], concepts(v)...)
	}
	setSubject := func(v jsontext.Value) {
		if ref := referenceOf(v); ref != "" {
			r.subject = append(r.subject, ref)
			if id, ok := strings.CutPrefix(ref, "Patient/"); ok {
				r.patient = id
			}
		}
	}

	switch r.typ {
	case "Patient":
		r.patient = r.id
		var ids []identifierJSON
		if len(f.Identifier) > 0 && json.Unmarshal(f.Identifier, &ids) == nil {
			for _, id := range ids {
				r.tokens["identifier"] = append(r.tokens["identifier"], coding{system: id.System, code: id.Value})
			}
		}
		var names []humanNameJSON
		if len(f.Name) > 0 && json.Unmarshal(f.Name, &names) == nil {
			for _, n := range names {
				parts := append([]string{n.Text, n.Family}, n.Given...)
				parts = append(append(parts, n.Prefix...), n.Suffix...)
				for _, p := range parts {
					if p != "" {
						r.strs["name"] = append(r.strs["name"], p)
					}
				}
			}
		}
		addDate("birthdate", f.BirthDate)
	case "DiagnosticReport", "Observation":
		setSubject(f.Subject)
		addConcepts("category", f.Category)
		addConcepts("code", f.Code)
		addDate("date", f.EffectiveDateTime)
		addDate("date", f.EffectiveInstant)
		addPeriod("date", f.EffectivePeriod)
		if r.typ == "DiagnosticReport" {
			var refs []referenceJSON
			if len(f.Result) > 0 && json.Unmarshal(f.Result, &refs) == nil {
				for _, ref := range refs {
					if ref.Reference != "" {
						r.results = append(r.results, ref.Reference)
					}
				}
			}
		}
	case "ImagingStudy":
		setSubject(f.Subject)
		addDate("started", f.Started)
		r.tokens["modality"] = append(r.tokens["modality"], codings(f.Modality)...)
		var series []struct {
			Modality jsontext.Value `json:"modality"`
		}
		if len(f.Series) > 0 && json.Unmarshal(f.Series, &series) == nil {
			for _, s := range series {
				r.tokens["modality"] = append(r.tokens["modality"], codings(s.Modality)...)
			}
		}
	case "Condition":
		setSubject(f.Subject)
		addConcepts("category", f.Category)
		addConcepts("code", f.Code)
		addDate("onset-date", f.OnsetDateTime)
		addPeriod("onset-date", f.OnsetPeriod)
		addDate("recorded-date", f.RecordedDate)
	case "DocumentReference":
		setSubject(f.Subject)
		addConcepts("category", f.Category)
		addConcepts("type", f.Type)
		addDate("date", f.Date)
	case "Encounter":
		setSubject(f.Subject)
		addPeriod("date", f.Period)
		addConcepts("type", f.Type)
	case "Binary":
		var ct, data string
		_ = json.Unmarshal(f.ContentType, &ct)
		_ = json.Unmarshal(f.Data, &data)
		if b, err := base64.StdEncoding.DecodeString(data); err == nil {
			if ct == "" {
				ct = "application/octet-stream"
			}
			r.binary = &binaryContent{contentType: ct, data: b}
		}
	default:
		switch patientElement(r.typ) {
		case "patient":
			setSubject(f.Patient)
		case "subject":
			setSubject(f.Subject)
		}
	}
}

// referenceOf returns Reference.reference of a Reference value, or "".
func referenceOf(v jsontext.Value) string {
	var ref referenceJSON
	if len(v) == 0 || json.Unmarshal(v, &ref) != nil {
		return ""
	}
	return ref.Reference
}

// concepts returns the codings of a CodeableConcept or of a list of them.
func concepts(v jsontext.Value) []coding {
	var list []codeableConceptJSON
	switch v.Kind() {
	case '[':
		if json.Unmarshal(v, &list) != nil {
			return nil
		}
	case '{':
		var one codeableConceptJSON
		if json.Unmarshal(v, &one) != nil {
			return nil
		}
		list = append(list, one)
	}
	var out []coding
	for _, cc := range list {
		for _, c := range cc.Coding {
			out = append(out, coding{system: c.System, code: c.Code})
		}
	}
	return out
}

// codings returns a Coding or a list of Codings.
func codings(v jsontext.Value) []coding {
	var list []codingJSON
	switch v.Kind() {
	case '[':
		if json.Unmarshal(v, &list) != nil {
			return nil
		}
	case '{':
		var one codingJSON
		if json.Unmarshal(v, &one) != nil {
			return nil
		}
		list = append(list, one)
	}
	out := make([]coding, 0, len(list))
	for _, c := range list {
		out = append(out, coding{system: c.System, code: c.Code})
	}
	return out
}
