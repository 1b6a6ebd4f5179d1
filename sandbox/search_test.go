package sandbox

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	toddID    = "0ce18c7d-fd78-46d9-81b5-8bed231c337a"
	antoniaID = "fe07e69a-4d6d-4e11-a675-de69f62de5f3"
)

// TestSearchSynthea runs the search behaviour against one site loaded with all 13 shared bundles.
func TestSearchSynthea(t *testing.T) {
	fx := loadFixture(t)
	ts := newTestServer(t, Options{Sites: []SiteOptions{{Name: "hospital", Bundles: fx.bundles}}})
	base := ts.base("hospital")

	t.Run("paging union per patient", func(t *testing.T) {
		if len(fx.patients) != 11 {
			t.Fatalf("fixture has %d patients, want 11", len(fx.patients))
		}
		for _, p := range fx.patients {
			for _, typ := range []string{"DiagnosticReport", "ImagingStudy", "Condition", "DocumentReference", "Encounter"} {
				want := p.ids[typ]
				pages := ts.searchAll(t, u(base, typ, "patient", p.id, "_count", "10"))
				if n := max(1, (len(want)+9)/10); len(pages) != n {
					t.Errorf("%s %s: %d pages, want %d", p.file, typ, len(pages), n)
				}
				var got []string
				for _, page := range pages {
					if page.Total == nil || *page.Total != len(want) {
						t.Errorf("%s %s: total %v, want %d", p.file, typ, page.Total, len(want))
					}
					es := entries(t, page)
					if len(es) > 10 {
						t.Errorf("%s %s: page of %d entries, want at most 10", p.file, typ, len(es))
					}
					for _, e := range es {
						if e.mode != "match" || e.typ != typ || e.fullURL != base+"/"+typ+"/"+e.id {
							t.Errorf("%s %s: bad entry mode=%q type=%q fullUrl=%q", p.file, typ, e.mode, e.typ, e.fullURL)
						}
						got = append(got, e.id)
					}
				}
				if d := duplicates(got); len(d) > 0 {
					t.Errorf("%s %s: duplicates across pages: %v", p.file, typ, d)
				}
				if diff := cmp.Diff(sorted(want), sorted(got)); diff != "" {
					t.Errorf("%s %s: union of pages (-want +got):\n%s", p.file, typ, diff)
				}
			}
		}
	})

	t.Run("patient and subject reference forms", func(t *testing.T) {
		want := sorted(idsOf(t, ts, u(base, "DiagnosticReport", "patient", toddID, "_count", "200")))
		if len(want) != 19 {
			t.Fatalf("Todd has %d DiagnosticReports, want 19", len(want))
		}
		for _, q := range [][]string{
			{"patient", "Patient/" + toddID},
			{"patient", base + "/Patient/" + toddID},
			{"patient", "https://elsewhere.example/fhir/Patient/" + toddID + "/_history/3"},
			{"subject", "Patient/" + toddID},
			{"subject", toddID},
			{"subject:Patient", toddID},
			{"patient", "unknown," + toddID},
		} {
			got := sorted(idsOf(t, ts, u(base, "DiagnosticReport", q[0], q[1], "_count", "200")))
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s=%s (-want +got):\n%s", q[0], q[1], diff)
			}
		}
		for _, q := range [][]string{{"patient", "Practitioner/" + toddID}, {"subject", "Group/" + toddID}} {
			if got := idsOf(t, ts, u(base, "DiagnosticReport", q[0], q[1])); len(got) != 0 {
				t.Errorf("%s=%s matched %d resources, want none", q[0], q[1], len(got))
			}
		}
		// Repeating a parameter ANDs it: two different patients match nothing.
		if got := idsOf(t, ts, u(base, "DiagnosticReport", "patient", toddID, "patient", antoniaID)); len(got) != 0 {
			t.Errorf("patient=A&patient=B matched %d, want 0", len(got))
		}
	})

	t.Run("include results", func(t *testing.T) {
		for _, p := range fx.patients {
			if len(p.ids["DiagnosticReport"]) == 0 {
				continue
			}
			allRefs := map[string]bool{}
			allIncluded := map[string]bool{}
			for _, page := range ts.searchAll(t, u(base, "DiagnosticReport", "patient", p.id, "_include", "DiagnosticReport:result", "_count", "7")) {
				var matches, included []string
				wantIncluded := map[string]bool{}
				for _, e := range entries(t, page) {
					switch e.mode {
					case "match":
						matches = append(matches, e.id)
						for _, ref := range resultRefs(fx.expected("DiagnosticReport/" + e.id)) {
							if _, ok := fx.resources[ref]; ok && strings.HasPrefix(ref, "Observation/") {
								wantIncluded[strings.TrimPrefix(ref, "Observation/")] = true
								allRefs[ref] = true
							}
						}
					case "include":
						if e.typ != "Observation" || e.fullURL != base+"/Observation/"+e.id {
							t.Errorf("%s: include entry type %q fullUrl %q", p.file, e.typ, e.fullURL)
						}
						included = append(included, e.id)
						allIncluded["Observation/"+e.id] = true
					default:
						t.Errorf("%s: entry mode %q", p.file, e.mode)
					}
				}
				if len(matches) > 7 {
					t.Errorf("%s: %d matches on a page of 7 (includes must not count)", p.file, len(matches))
				}
				if d := duplicates(included); len(d) > 0 {
					t.Errorf("%s: Observations included twice on one page: %v", p.file, d)
				}
				if diff := cmp.Diff(sorted(keys(wantIncluded)), sorted(included)); diff != "" {
					t.Errorf("%s: included Observations (-want +got):\n%s", p.file, diff)
				}
			}
			if diff := cmp.Diff(sorted(keys(allRefs)), sorted(keys(allIncluded))); diff != "" {
				t.Errorf("%s: every referenced Observation must be included (-want +got):\n%s", p.file, diff)
			}
		}
	})

	t.Run("token", func(t *testing.T) {
		drs := fx.patientResources(toddID, "DiagnosticReport")
		obs := fx.patientResources(toddID, "Observation")
		tests := []struct {
			typ, param, value string
			want              func(map[string]any) bool
		}{
			{"DiagnosticReport", "code", "http://loinc.org|34117-2", hasCoding("code", "http://loinc.org", "34117-2")},
			{"DiagnosticReport", "code", "34117-2", hasCoding("code", "", "34117-2")},
			{"DiagnosticReport", "code", "|34117-2", func(map[string]any) bool { return false }},
			{"DiagnosticReport", "code", "http://snomed.info/sct|34117-2", func(map[string]any) bool { return false }},
			{"DiagnosticReport", "code", "http://loinc.org|", hasCoding("code", "http://loinc.org", "")},
			{"DiagnosticReport", "code", "http://loinc.org|58410-2,http://loinc.org|51990-0", func(r map[string]any) bool {
				return hasCoding("code", "http://loinc.org", "58410-2")(r) || hasCoding("code", "http://loinc.org", "51990-0")(r)
			}},
			{"DiagnosticReport", "category", "http://loinc.org|LP29684-5", hasCoding("category", "http://loinc.org", "LP29684-5")},
			{"Observation", "category", "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
				hasCoding("category", "http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs")},
			{"Observation", "code", "http://loinc.org|8302-2", hasCoding("code", "http://loinc.org", "8302-2")},
		}
		for _, tt := range tests {
			pool := drs
			if tt.typ == "Observation" {
				pool = obs
			}
			want := filterIDs(pool, tt.want)
			got := idsOf(t, ts, u(base, tt.typ, "patient", toddID, tt.param, tt.value, "_count", "200"))
			if diff := cmp.Diff(sorted(want), sorted(got)); diff != "" {
				t.Errorf("%s?%s=%s (-want +got):\n%s", tt.typ, tt.param, tt.value, diff)
			}
		}
		if n := len(filterIDs(drs, hasCoding("code", "http://loinc.org", "34117-2"))); n == 0 || n == len(drs) {
			t.Fatalf("fixture assumption broken: %d of %d reports are notes", n, len(drs))
		}
		// Repeating a token parameter ANDs it.
		got := idsOf(t, ts, u(base, "DiagnosticReport", "patient", toddID, "code", "34117-2", "code", "51847-2"))
		want := filterIDs(drs, func(r map[string]any) bool {
			return hasCoding("code", "", "34117-2")(r) && hasCoding("code", "", "51847-2")(r)
		})
		if diff := cmp.Diff(sorted(want), sorted(got)); diff != "" {
			t.Errorf("code AND code (-want +got):\n%s", diff)
		}
		// Modality on ImagingStudy and type on Encounter.
		studies := fx.patientResources(antoniaID, "ImagingStudy")
		got = idsOf(t, ts, u(base, "ImagingStudy", "patient", antoniaID, "modality", "http://dicom.nema.org/resources/ontology/DCM|DX"))
		want = filterIDs(studies, func(r map[string]any) bool { return strings.Contains(fmt.Sprint(r["series"]), "code:DX") })
		if len(want) == 0 {
			t.Fatal("fixture assumption broken: Antonia has no DX study")
		}
		if diff := cmp.Diff(sorted(want), sorted(got)); diff != "" {
			t.Errorf("modality=DX (-want +got):\n%s", diff)
		}
		encounters := fx.patientResources(toddID, "Encounter")
		got = idsOf(t, ts, u(base, "Encounter", "patient", toddID, "type", "http://snomed.info/sct|410620009"))
		want = filterIDs(encounters, hasCoding("type", "http://snomed.info/sct", "410620009"))
		if len(want) == 0 {
			t.Fatal("fixture assumption broken: Todd has no well child visit")
		}
		if diff := cmp.Diff(sorted(want), sorted(got)); diff != "" {
			t.Errorf("Encounter type (-want +got):\n%s", diff)
		}
	})

	t.Run("date prefixes", func(t *testing.T) {
		drs := fx.patientResources(toddID, "DiagnosticReport")
		eff := func(r map[string]any) time.Time { return mustTime(t, r["effectiveDateTime"].(string)) }
		// The pivot day is the UTC day of one of Todd's reports, so every prefix has matches on both sides.
		pivotT := eff(drs[len(drs)/2]).UTC()
		pivot := time.Date(pivotT.Year(), pivotT.Month(), pivotT.Day(), 0, 0, 0, 0, time.UTC)
		day := pivot.Format("2006-01-02")
		next := pivot.AddDate(0, 0, 1)
		exact := eff(drs[len(drs)/2])
		exactS := drs[len(drs)/2]["effectiveDateTime"].(string)
		y2015 := time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC)
		y2016 := time.Date(2016, 1, 1, 0, 0, 0, 0, time.UTC)
		tests := []struct {
			value string
			want  func(time.Time) bool
		}{
			{day, func(x time.Time) bool { return !x.Before(pivot) && x.Before(next) }},
			{"eq" + day, func(x time.Time) bool { return !x.Before(pivot) && x.Before(next) }},
			{"ne" + day, func(x time.Time) bool { return x.Before(pivot) || !x.Before(next) }},
			{"lt" + day, func(x time.Time) bool { return x.Before(pivot) }},
			{"le" + day, func(x time.Time) bool { return x.Before(next) }},
			{"gt" + day, func(x time.Time) bool { return !x.Before(next) }},
			{"ge" + day, func(x time.Time) bool { return !x.Before(pivot) }},
			{"sa" + day, func(x time.Time) bool { return !x.Before(next) }},
			{"eb" + day, func(x time.Time) bool { return x.Before(pivot) }},
			{"2015", func(x time.Time) bool { return !x.Before(y2015) && x.Before(y2016) }},
			{"ge2015-01", func(x time.Time) bool { return !x.Before(y2015) }},
			{"lt2015-01", func(x time.Time) bool { return x.Before(y2015) }},
			{"eq" + exactS, func(x time.Time) bool { return x.Equal(exact) }},
			{"ge" + exactS, func(x time.Time) bool { return !x.Before(exact) }},
			{"gt" + exactS, func(x time.Time) bool { return x.After(exact) }},
			{"lt2012,ge2019", func(x time.Time) bool { return x.Year() < 2012 || x.Year() >= 2019 }},
		}
		for _, tt := range tests {
			want := filterIDs(drs, func(r map[string]any) bool { return tt.want(eff(r)) })
			got := idsOf(t, ts, u(base, "DiagnosticReport", "patient", toddID, "date", tt.value, "_count", "200"))
			if diff := cmp.Diff(sorted(want), sorted(got)); diff != "" {
				t.Errorf("date=%s (-want +got):\n%s", tt.value, diff)
			}
		}
		// Repeating a date parameter ANDs it.
		got := idsOf(t, ts, u(base, "DiagnosticReport", "patient", toddID, "date", "ge2012", "date", "lt2016"))
		want := filterIDs(drs, func(r map[string]any) bool { y := eff(r).UTC().Year(); return y >= 2012 && y < 2016 })
		if diff := cmp.Diff(sorted(want), sorted(got)); diff != "" {
			t.Errorf("date=ge2012&date=lt2016 (-want +got):\n%s", diff)
		}
		// An unescaped '+' in a time zone arrives as a space and still parses.
		if r := ts.get(t, base+"/DiagnosticReport?date=ge2010-01-01T00:00:00+00:00"); r.status != http.StatusOK {
			t.Errorf("date with unescaped +: status %d", r.status)
		}

		// Encounter.period: eq matches periods that lie within the day.
		encs := fx.patientResources(toddID, "Encounter")
		got = idsOf(t, ts, u(base, "Encounter", "patient", toddID, "date", "ge2015", "date", "lt2017"))
		want = filterIDs(encs, func(r map[string]any) bool {
			// FHIR ranges: the period is [start, end+1s); ge2015 means it reaches past 2015 or lies within it,
			// lt2017 that it starts before 2017.
			p := r["period"].(map[string]any)
			lo, hi := mustTime(t, p["start"].(string)), mustTime(t, p["end"].(string)).Add(time.Second)
			ge2015 := hi.After(y2016) || (!lo.Before(y2015) && !hi.After(y2016))
			return ge2015 && lo.Before(time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC))
		})
		if diff := cmp.Diff(sorted(want), sorted(got)); diff != "" {
			t.Errorf("Encounter date (-want +got):\n%s", diff)
		}
		// Condition onset-date and recorded-date, ImagingStudy started, DocumentReference date.
		for _, c := range []struct{ typ, param, field, patient string }{
			{"Condition", "onset-date", "onsetDateTime", toddID},
			{"Condition", "recorded-date", "recordedDate", toddID},
			{"ImagingStudy", "started", "started", antoniaID},
			{"DocumentReference", "date", "date", toddID},
		} {
			pool := fx.patientResources(c.patient, c.typ)
			got := idsOf(t, ts, u(base, c.typ, "patient", c.patient, c.param, "ge2018-01", "_count", "200"))
			want := filterIDs(pool, func(r map[string]any) bool {
				return !mustTime(t, r[c.field].(string)).Before(time.Date(2018, 1, 1, 0, 0, 0, 0, time.UTC))
			})
			if len(want) == 0 || len(want) == len(pool) {
				t.Errorf("%s %s: fixture assumption broken (%d of %d from 2018)", c.typ, c.param, len(want), len(pool))
			}
			if diff := cmp.Diff(sorted(want), sorted(got)); diff != "" {
				t.Errorf("%s?%s=ge2018-01 (-want +got):\n%s", c.typ, c.param, diff)
			}
		}
	})

	t.Run("patient parameters", func(t *testing.T) {
		todd := fx.resources["Patient/"+toddID]
		var ssn string
		for _, id := range todd["identifier"].([]any) {
			m := id.(map[string]any)
			if m["system"] == "http://hl7.org/fhir/sid/us-ssn" {
				ssn = m["value"].(string)
			}
		}
		birth := todd["birthDate"].(string)
		tests := []struct {
			params []string
			want   []string
		}{
			{[]string{"identifier", "http://hl7.org/fhir/sid/us-ssn|" + ssn}, []string{toddID}},
			{[]string{"identifier", ssn}, []string{toddID}},
			{[]string{"identifier", "http://other|" + ssn}, nil},
			{[]string{"name", "todd"}, []string{toddID}},
			{[]string{"name", "STAMM"}, []string{toddID}},
			{[]string{"name", "odd315"}, nil},
			{[]string{"name:contains", "odd315"}, []string{toddID}},
			{[]string{"name:exact", "Todd315"}, []string{toddID}},
			{[]string{"name:exact", "todd315"}, nil},
			{[]string{"name", "todd,antonia"}, []string{toddID, antoniaID}},
			{[]string{"birthdate", birth}, []string{toddID}},
			{[]string{"birthdate", "lt1900"}, nil},
			{[]string{"_id", toddID + "," + antoniaID}, []string{toddID, antoniaID}},
		}
		for _, tt := range tests {
			got := idsOf(t, ts, u(base, "Patient", tt.params...))
			if diff := cmp.Diff(tt.want, sorted(got)); diff != "" {
				t.Errorf("Patient?%s=%s (-want +got):\n%s", tt.params[0], tt.params[1], diff)
			}
		}
		if r := ts.get(t, u(base, "Patient", "_count", "200")); len(entries(t, decodeSearchset(t, r))) != 11 {
			t.Error("Patient search without parameters does not return all 11 patients")
		}
	})

	t.Run("result parameters", func(t *testing.T) {
		nObs := len(fx.patientResources(toddID, "Observation"))
		b := decodeSearchset(t, ts.get(t, u(base, "Observation", "patient", toddID, "_count", "0")))
		if b.Total == nil || *b.Total != nObs || len(b.Entry) != 0 || b.link("next") != "" {
			t.Errorf("_count=0: total %v, %d entries, next %q; want total %d only", b.Total, len(b.Entry), b.link("next"), nObs)
		}
		b = decodeSearchset(t, ts.get(t, u(base, "Observation", "patient", toddID, "_summary", "count")))
		if b.Total == nil || *b.Total != nObs || len(b.Entry) != 0 {
			t.Errorf("_summary=count: total %v, %d entries", b.Total, len(b.Entry))
		}
		b = decodeSearchset(t, ts.get(t, u(base, "Observation", "patient", toddID, "_total", "none")))
		if b.Total != nil {
			t.Errorf("_total=none: total %d present", *b.Total)
		}
		b = decodeSearchset(t, ts.get(t, u(base, "Observation", "patient", toddID)))
		if len(b.Entry) != DefaultPageSize {
			t.Errorf("default page: %d entries, want %d", len(b.Entry), DefaultPageSize)
		}
		b = decodeSearchset(t, ts.get(t, u(base, "Observation", "_count", "1000")))
		if len(b.Entry) != MaxPageSize || !strings.Contains(b.link("next"), "_count=200") {
			t.Errorf("_count=1000: %d entries, next %q; want %d and _count=200", len(b.Entry), b.link("next"), MaxPageSize)
		}
		// Page two has previous and first links, and the self link carries the offset.
		b = decodeSearchset(t, ts.get(t, b.link("next")))
		if b.link("previous") == "" || b.link("first") == "" || !strings.Contains(b.link("self"), offsetParam+"=200") {
			t.Errorf("page two links: %+v", b.Link)
		}
		// Past the end: an empty page that still reports the total.
		b = decodeSearchset(t, ts.get(t, u(base, "Condition", "patient", toddID, offsetParam, "500")))
		if len(b.Entry) != 0 || b.Total == nil || *b.Total != 6 {
			t.Errorf("offset past the end: %d entries, total %v", len(b.Entry), b.Total)
		}

		// _sort: ascending and descending dates with id tiebreak, and _id.
		drs := fx.patientResources(antoniaID, "DiagnosticReport")
		byDate := func(desc bool) []string {
			s := slices.Clone(drs)
			slices.SortStableFunc(s, func(a, b map[string]any) int {
				ta, tb := mustTime(t, a["effectiveDateTime"].(string)), mustTime(t, b["effectiveDateTime"].(string))
				if c := ta.Compare(tb); c != 0 {
					if desc {
						return -c
					}
					return c
				}
				return strings.Compare(a["id"].(string), b["id"].(string))
			})
			return filterIDs(s, func(map[string]any) bool { return true })
		}
		for _, c := range []struct {
			sort string
			want []string
		}{
			{"date", byDate(false)},
			{"-date", byDate(true)},
			{"_id", sorted(filterIDs(drs, func(map[string]any) bool { return true }))},
		} {
			got := idsOf(t, ts, u(base, "DiagnosticReport", "patient", antoniaID, "_sort", c.sort, "_count", "13"))
			if diff := cmp.Diff(c.want[:13], got); diff != "" {
				t.Errorf("_sort=%s order (-want +got):\n%s", c.sort, diff)
			}
		}
		desc := idsOf(t, ts, u(base, "DiagnosticReport", "patient", antoniaID, "_sort", "-_id", "_count", "200"))
		if !slices.IsSortedFunc(desc, func(a, b string) int { return strings.Compare(b, a) }) {
			t.Error("_sort=-_id is not descending")
		}

		// POST _search with a form body finds what GET finds.
		form := url.Values{"patient": {toddID}, "_count": {"200"}, "code": {"34117-2"}}.Encode()
		r := ts.do(t, http.MethodPost, base+"/DiagnosticReport/_search",
			http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader(form))
		var posted []string
		for _, e := range entries(t, decodeSearchset(t, r)) {
			posted = append(posted, e.id)
		}
		want := idsOf(t, ts, u(base, "DiagnosticReport", "patient", toddID, "_count", "200", "code", "34117-2"))
		if diff := cmp.Diff(sorted(want), sorted(posted)); diff != "" || len(want) == 0 {
			t.Errorf("POST _search (-want +got):\n%s", diff)
		}
		r = ts.do(t, http.MethodPost, base+"/DiagnosticReport/_search", http.Header{"Content-Type": {"application/json"}}, strings.NewReader("{}"))
		if r.status != http.StatusUnsupportedMediaType || operationOutcomeCode(t, r) != "not-supported" {
			t.Errorf("POST _search with JSON: status %d", r.status)
		}
	})

	t.Run("strict and lenient handling", func(t *testing.T) {
		strict := http.Header{"Prefer": {"handling=strict"}}
		lenient := http.Header{"Prefer": {"return=minimal, handling=lenient"}}
		for _, q := range [][]string{
			{"DiagnosticReport", "patient", toddID, "foo", "bar"},
			{"DiagnosticReport", "patient", toddID, "_include", "DiagnosticReport:performer"},
			{"DiagnosticReport", "patient", toddID, "code:text", "note"},
			{"DiagnosticReport", "patient", toddID, "_sort", "issued"},
			{"DiagnosticReport", "patient", toddID, "_revinclude", "Provenance:target"},
			{"Condition", "patient", toddID, "_include", "DiagnosticReport:result"},
			{"Patient", "_id", toddID, "gender", "male"},
		} {
			bad := u(base, q[0], q[1:]...)
			good := u(base, q[0], q[1:3]...)
			r := ts.do(t, http.MethodGet, bad, strict, nil)
			if r.status != http.StatusBadRequest || operationOutcomeCode(t, r) != "not-supported" {
				t.Errorf("strict %s: status %d, want 400 not-supported", bad, r.status)
			}
			for _, h := range []http.Header{lenient, nil} {
				b := decodeSearchset(t, ts.do(t, http.MethodGet, bad, h, nil))
				ref := decodeSearchset(t, ts.get(t, good))
				if diff := cmp.Diff(idsOfBundle(t, ref), idsOfBundle(t, b)); diff != "" {
					t.Errorf("lenient %s changed the result (-want +got):\n%s", bad, diff)
				}
				if self := b.link("self"); strings.Contains(self, q[3]) {
					t.Errorf("lenient self link %q keeps the ignored parameter %q", self, q[3])
				}
			}
		}
		for _, q := range [][]string{
			{"DiagnosticReport", "date", "2015-13"},
			{"DiagnosticReport", "date", "xx2015"},
			{"DiagnosticReport", "date", "ap2015"},
			{"DiagnosticReport", "date", "2015-01-01T25:00:00Z"},
			{"DiagnosticReport", "_count", "-1"},
			{"DiagnosticReport", "_count", "ten"},
			{"DiagnosticReport", offsetParam, "x"},
			{"DiagnosticReport", "_total", "maybe"},
			{"Patient", "birthdate", "yesterday"},
		} {
			for _, h := range []http.Header{strict, nil} {
				r := ts.do(t, http.MethodGet, u(base, q[0], q[1:]...), h, nil)
				if code := operationOutcomeCode(t, r); r.status != http.StatusBadRequest || code != "invalid" {
					t.Errorf("%s?%s=%s (Prefer %v): status %d code %q, want 400 invalid", q[0], q[1], q[2], h, r.status, code)
				}
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, c := range []struct {
			method, path string
			status       int
			code         string
		}{
			{http.MethodGet, "/hospital/fhir/Patient/does-not-exist", 404, "not-found"},
			{http.MethodGet, "/hospital/fhir/Nonsense/1", 404, "not-supported"},
			{http.MethodGet, "/hospital/fhir/Nonsense?x=1", 404, "not-supported"},
			{http.MethodGet, "/hospital/fhir/Patient/" + toddID + "/_history", 404, "not-supported"},
			{http.MethodGet, "/hospital/fhir", 404, "not-supported"},
			{http.MethodGet, "/elsewhere/fhir/metadata", 404, "not-found"},
			{http.MethodGet, "/", 404, "not-found"},
			{http.MethodPut, "/hospital/fhir/Patient/" + toddID, 405, "not-supported"},
			{http.MethodDelete, "/hospital/fhir/Patient/" + toddID, 405, "not-supported"},
			{http.MethodPatch, "/hospital/fhir/Patient/" + toddID, 405, "not-supported"},
			{http.MethodPost, "/hospital/fhir/Patient", 405, "not-supported"},
			{http.MethodPost, "/hospital/fhir", 405, "not-supported"},
			{http.MethodPost, "/hospital/fhir/metadata", 405, "not-supported"},
		} {
			r := ts.do(t, c.method, ts.http.URL+c.path, nil, strings.NewReader("{}"))
			if code := operationOutcomeCode(t, r); r.status != c.status || code != c.code {
				t.Errorf("%s %s: %d %q, want %d %q", c.method, c.path, r.status, code, c.status, c.code)
			}
		}
		// A read of a known resource works for any loaded type.
		for _, key := range []string{"Patient/" + toddID, "Claim/" + fx.patients[0].ids["Claim"][0], "Organization/" + fx.patients[0].ids["Organization"][0]} {
			if r := ts.get(t, base+"/"+key); r.status != 200 || r.header.Get("Content-Type") != fhirJSON {
				t.Errorf("read %s: %d %q", key, r.status, r.header.Get("Content-Type"))
			}
		}
	})
}

// idsOf runs one search and returns the ids of the matches on its first page, in order.
func idsOf(t *testing.T, ts *testServer, rawURL string) []string {
	t.Helper()
	return idsOfBundle(t, decodeSearchset(t, ts.get(t, rawURL)))
}

func idsOfBundle(t *testing.T, b *searchset) []string {
	t.Helper()
	var ids []string
	for _, e := range entries(t, b) {
		if e.mode == "match" {
			ids = append(ids, e.id)
		}
	}
	return ids
}

// patientResources returns the source resources of one type in a patient's own bundle.
func (f *fixture) patientResources(patientID, typ string) []map[string]any {
	for _, p := range f.patients {
		if p.id == patientID {
			var out []map[string]any
			for _, id := range p.ids[typ] {
				out = append(out, f.resources[typ+"/"+id])
			}
			return out
		}
	}
	return nil
}

func filterIDs(rs []map[string]any, keep func(map[string]any) bool) []string {
	var out []string
	for _, r := range rs {
		if keep(r) {
			out = append(out, r["id"].(string))
		}
	}
	return out
}

// hasCoding reports whether the CodeableConcept (or list of them) in field has a coding with the system (any if
// empty) and code (any if empty).
func hasCoding(field, system, code string) func(map[string]any) bool {
	return func(r map[string]any) bool {
		var concepts []any
		switch v := r[field].(type) {
		case []any:
			concepts = v
		case map[string]any:
			concepts = []any{v}
		}
		for _, c := range concepts {
			codings, _ := c.(map[string]any)["coding"].([]any)
			for _, cd := range codings {
				m := cd.(map[string]any)
				if (system == "" || m["system"] == system) && (code == "" || m["code"] == code) {
					return true
				}
			}
		}
		return false
	}
}

func resultRefs(dr any) []string {
	var out []string
	results, _ := dr.(map[string]any)["result"].([]any)
	for _, r := range results {
		if ref, ok := r.(map[string]any)["reference"].(string); ok {
			out = append(out, ref)
		}
	}
	return out
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	x, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return x
}
