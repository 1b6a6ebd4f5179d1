package packet

import (
	"encoding/json"
	"fmt"
	"html"
	"slices"
	"strconv"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// section is one Composition.section.
type section struct {
	Title string      `json:"title"`
	Code  codeable    `json:"code"`
	Text  narrative   `json:"text"`
	Entry []reference `json:"entry,omitempty"`
	// EmptyReason says why a section has no entries (FHIR list-empty-reason "nilknown" or "unavailable").
	EmptyReason *codeable `json:"emptyReason,omitempty"`
}

type codeable struct {
	Coding []coding `json:"coding,omitempty"`
	Text   string   `json:"text,omitempty"`
}

type narrative struct {
	Status string `json:"status"`
	Div    string `json:"div"`
}

// The parts of de-identified resources the narrative shows. Decoding is lenient: a field the narrative cannot
// read is simply not shown; the resource itself is in the packet either way.
type fhirCodeable struct {
	Text   string `json:"text"`
	Coding []struct {
		System  string `json:"system"`
		Code    string `json:"code"`
		Display string `json:"display"`
	} `json:"coding"`
}

func (c *fhirCodeable) label() string {
	if c == nil {
		return ""
	}
	if c.Text != "" {
		return c.Text
	}
	for _, cd := range c.Coding {
		if cd.Display != "" {
			return cd.Display
		}
	}
	for _, cd := range c.Coding {
		if cd.Code != "" {
			return cd.Code
		}
	}
	return ""
}

type period struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

type conditionView struct {
	Code           *fhirCodeable `json:"code"`
	ClinicalStatus *fhirCodeable `json:"clinicalStatus"`
	OnsetDateTime  string        `json:"onsetDateTime"`
	OnsetPeriod    *period       `json:"onsetPeriod"`
	RecordedDate   string        `json:"recordedDate"`
	AbatementDate  string        `json:"abatementDateTime"`
}

type reportView struct {
	Code              *fhirCodeable `json:"code"`
	Status            string        `json:"status"`
	EffectiveDateTime string        `json:"effectiveDateTime"`
	EffectivePeriod   *period       `json:"effectivePeriod"`
	Issued            string        `json:"issued"`
	Conclusion        string        `json:"conclusion"`
	Result            []reference   `json:"result"`
	PresentedForm     []struct {
		ContentType string `json:"contentType"`
	} `json:"presentedForm"`
}

type observationView struct {
	Code          *fhirCodeable `json:"code"`
	ValueQuantity *struct {
		Value jsontext.Value `json:"value"`
		Unit  string         `json:"unit"`
	} `json:"valueQuantity"`
	ValueCodeableConcept *fhirCodeable  `json:"valueCodeableConcept"`
	ValueString          string         `json:"valueString"`
	Interpretation       []fhirCodeable `json:"interpretation"`
	Component            []struct {
		Code          *fhirCodeable `json:"code"`
		ValueQuantity *struct {
			Value jsontext.Value `json:"value"`
			Unit  string         `json:"unit"`
		} `json:"valueQuantity"`
	} `json:"component"`
}

type imagingView struct {
	Started           string         `json:"started"`
	Modality          []coding       `json:"modality"`
	Description       string         `json:"description"`
	NumberOfSeries    int            `json:"numberOfSeries"`
	NumberOfInstances int            `json:"numberOfInstances"`
	ProcedureCode     []fhirCodeable `json:"procedureCode"`
	Series            []struct {
		BodySite *coding `json:"bodySite"`
		Modality *coding `json:"modality"`
	} `json:"series"`
}

func composition(m *merged, id, deviceID, created string, in Input) (json.RawMessage, error) {
	var conds, reports, imaging []resource
	for _, r := range m.resources {
		switch r.typ {
		case "Condition":
			conds = append(conds, r)
		case "DiagnosticReport":
			reports = append(reports, r)
		case "ImagingStudy":
			imaging = append(imaging, r)
		}
	}
	sections := []section{
		conditionSection(conds),
		reportSection(reports, m),
		imagingSection(imaging),
		sourcesSection(in),
	}
	return json.Marshal(map[string]any{
		"resourceType": "Composition",
		"id":           id,
		"status":       "final",
		"type": codeable{Coding: []coding{{System: "http://loinc.org", Code: "60591-5", Display: "Patient summary Document"}},
			Text: "Second-opinion review packet"},
		"subject":         reference{Reference: "urn:uuid:" + m.patient.id},
		"date":            created,
		"author":          []reference{{Reference: "urn:uuid:" + deviceID}},
		"title":           "Second-opinion review packet",
		"confidentiality": "R",
		"section":         sections,
	})
}

// dated pairs a resource with the date it sorts by (newest first in every section).
type dated struct {
	r    resource
	date string
	row  string
}

func sortNewestFirst(rows []dated) {
	slices.SortStableFunc(rows, func(a, b dated) int { return strings.Compare(b.date, a.date) })
}

func table(caption string, head []string, rows []dated) string {
	var b strings.Builder
	b.WriteString(`<div xmlns="http://www.w3.org/1999/xhtml">`)
	if len(rows) == 0 {
		b.WriteString("<p>" + html.EscapeString(caption) + ": none in the consented records.</p></div>")
		return b.String()
	}
	b.WriteString("<table><caption>" + html.EscapeString(caption) + "</caption><thead><tr>")
	for _, h := range head {
		b.WriteString("<th>" + html.EscapeString(h) + "</th>")
	}
	b.WriteString("</tr></thead><tbody>")
	for _, r := range rows {
		b.WriteString(r.row)
	}
	b.WriteString("</tbody></table></div>")
	return b.String()
}

func tr(cells ...string) string {
	var b strings.Builder
	b.WriteString("<tr>")
	for _, c := range cells {
		b.WriteString("<td>" + html.EscapeString(c) + "</td>")
	}
	b.WriteString("</tr>")
	return b.String()
}

func entries(rows []dated) []reference {
	out := make([]reference, 0, len(rows))
	for _, r := range rows {
		out = append(out, reference{Reference: "urn:uuid:" + r.r.id})
	}
	return out
}

func newSection(title, loinc, display string, rows []dated, caption string, head []string) section {
	s := section{
		Title: title,
		Code:  codeable{Coding: []coding{{System: "http://loinc.org", Code: loinc, Display: display}}},
		Text:  narrative{Status: "generated", Div: table(caption, head, rows)},
		Entry: entries(rows),
	}
	if len(rows) == 0 {
		s.Entry = nil
		s.EmptyReason = &codeable{Coding: []coding{{System: "http://terminology.hl7.org/CodeSystem/list-empty-reason", Code: "nilknown", Display: "Nil Known"}}}
	}
	return s
}

func conditionSection(list []resource) section {
	var rows []dated
	for _, r := range list {
		var c conditionView
		_ = jsonv2.Unmarshal(r.raw, &c)
		onset := c.OnsetDateTime
		if onset == "" && c.OnsetPeriod != nil {
			onset = c.OnsetPeriod.Start
		}
		date := firstNonEmpty(onset, c.RecordedDate)
		rows = append(rows, dated{r: r, date: date, row: tr(c.Code.label(), c.ClinicalStatus.label(), day(onset), day(c.AbatementDate), day(c.RecordedDate))})
	}
	sortNewestFirst(rows)
	return newSection("Conditions", "11450-4", "Problem list - Reported", rows, "Conditions",
		[]string{"Condition", "Clinical status", "Onset", "Resolved", "Recorded"})
}

func reportSection(list []resource, m *merged) section {
	var rows []dated
	for _, r := range list {
		var d reportView
		_ = jsonv2.Unmarshal(r.raw, &d)
		eff := d.EffectiveDateTime
		if eff == "" && d.EffectivePeriod != nil {
			eff = d.EffectivePeriod.Start
		}
		var results []string
		for _, ref := range d.Result {
			o, ok := m.byRef[ref.Reference]
			if !ok || o.typ != "Observation" {
				continue
			}
			results = append(results, observationText(o.raw))
		}
		text := d.Conclusion
		if len(d.PresentedForm) > 0 {
			text = strings.TrimSpace(text + " (report text attached)")
		}
		rows = append(rows, dated{r: r, date: firstNonEmpty(eff, d.Issued),
			row: tr(d.Code.label(), d.Status, day(eff), strings.Join(results, "; "), text)})
	}
	sortNewestFirst(rows)
	return newSection("Diagnostic reports", "30954-2", "Relevant diagnostic tests/laboratory data Narrative", rows,
		"Diagnostic reports and their results", []string{"Report", "Status", "Date", "Results", "Conclusion"})
}

// number is a Quantity's value as the narrative shows it: the JSON number as written, or nothing for a value that
// is not a number (FHIR requires one; a quoted or structured value is not shown as if it were).
func number(v jsontext.Value) string {
	if v.Kind() != '0' {
		return ""
	}
	return string(v)
}

func observationText(raw []byte) string {
	var o observationView
	_ = jsonv2.Unmarshal(raw, &o)
	name := o.Code.label()
	var val string
	switch {
	case o.ValueQuantity != nil:
		val = strings.TrimSpace(number(o.ValueQuantity.Value) + " " + o.ValueQuantity.Unit)
	case o.ValueCodeableConcept != nil:
		val = o.ValueCodeableConcept.label()
	case o.ValueString != "":
		val = o.ValueString
	case len(o.Component) > 0:
		var parts []string
		for _, c := range o.Component {
			if c.ValueQuantity != nil {
				parts = append(parts, c.Code.label()+" "+strings.TrimSpace(number(c.ValueQuantity.Value)+" "+c.ValueQuantity.Unit))
			}
		}
		val = strings.Join(parts, ", ")
	}
	for _, in := range o.Interpretation {
		if l := in.label(); l != "" {
			val += " (" + l + ")"
		}
	}
	if val == "" {
		return name
	}
	return name + ": " + val
}

func imagingSection(list []resource) section {
	var rows []dated
	for _, r := range list {
		var s imagingView
		_ = jsonv2.Unmarshal(r.raw, &s)
		var mods, sites []string
		for _, m := range s.Modality {
			mods = appendUnique(mods, firstNonEmpty(m.Display, m.Code))
		}
		for _, se := range s.Series {
			if se.Modality != nil {
				mods = appendUnique(mods, firstNonEmpty(se.Modality.Display, se.Modality.Code))
			}
			if se.BodySite != nil {
				sites = appendUnique(sites, firstNonEmpty(se.BodySite.Display, se.BodySite.Code))
			}
		}
		desc := s.Description
		if desc == "" && len(s.ProcedureCode) > 0 {
			desc = s.ProcedureCode[0].label()
		}
		rows = append(rows, dated{r: r, date: s.Started, row: tr(day(s.Started), strings.Join(mods, ", "), strings.Join(sites, ", "), desc,
			strconv.Itoa(s.NumberOfSeries)+" / "+strconv.Itoa(s.NumberOfInstances))})
	}
	sortNewestFirst(rows)
	return newSection("Imaging studies", "18748-4", "Diagnostic imaging study", rows, "Imaging studies",
		[]string{"Date", "Modality", "Body site", "Description", "Series / instances"})
}

func sourcesSection(in Input) section {
	var b strings.Builder
	b.WriteString(`<div xmlns="http://www.w3.org/1999/xhtml"><p>`)
	b.WriteString(html.EscapeString(fmt.Sprintf("Records from %d consented source(s), de-identified with profile %s version %s. "+
		"Dates are shifted by a fixed number of days for the whole record, so intervals are exact; names, identifiers, "+
		"contact details and places below province or state are removed.", len(in.Sources), in.Profile, in.ProfileVersion)))
	b.WriteString("</p><ul>")
	for i, s := range in.Sources {
		status := "complete"
		if !s.Retrieved {
			status = "nothing retrieved"
		}
		if s.Missing != "" {
			status += ": " + s.Missing
		}
		b.WriteString("<li>" + html.EscapeString(sourceLabel(i, s.Kind)+": "+status) + "</li>")
	}
	b.WriteString("</ul></div>")
	return section{
		Title: "About this packet",
		Code:  codeable{Text: "Packet provenance"},
		Text:  narrative{Status: "generated", Div: b.String()},
	}
}

func sourceLabel(i int, kind string) string {
	return fmt.Sprintf("source %d (%s)", i+1, kind)
}

func provenance(id, compositionID, deviceID, created string, in Input) (json.RawMessage, error) {
	var ents []map[string]any
	for i, s := range in.Sources {
		d := sourceLabel(i, s.Kind)
		if !s.Retrieved {
			d += ": nothing retrieved"
		}
		if s.Missing != "" {
			d += ": " + s.Missing
		}
		ents = append(ents, map[string]any{"role": "source", "what": map[string]string{"display": d}})
	}
	return json.Marshal(map[string]any{
		"resourceType": "Provenance",
		"id":           id,
		"target":       []reference{{Reference: "urn:uuid:" + compositionID}},
		"recorded":     created,
		"policy":       []string{ProfileURN + in.Profile + ":" + in.ProfileVersion},
		"agent": []map[string]any{{
			"type": codeable{Coding: []coding{{System: "http://terminology.hl7.org/CodeSystem/provenance-participant-type", Code: "assembler", Display: "Assembler"}}},
			"who":  reference{Reference: "urn:uuid:" + deviceID},
		}},
		"entity": ents,
	})
}

// day keeps the date part of a FHIR date or dateTime for display.
func day(s string) string {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func appendUnique(list []string, s string) []string {
	if s == "" || slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}
