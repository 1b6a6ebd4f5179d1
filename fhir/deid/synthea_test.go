package deid

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// syntheaBundles lists the shared Synthea patient bundles (not the hospital and practitioner files).
func syntheaBundles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(syntheaDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		b := filepath.Base(f)
		if strings.HasPrefix(b, "hospitalInformation") || strings.HasPrefix(b, "practitionerInformation") {
			continue
		}
		out = append(out, f)
	}
	if len(out) != 11 {
		t.Fatalf("found %d Synthea patient bundles, want 11", len(out))
	}
	return out
}

type jsonObj = map[string]any

func decodeJSON(t *testing.T, b []byte) jsonObj {
	t.Helper()
	var v jsonObj
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("output is not JSON: %v", err)
	}
	return v
}

func resources(b jsonObj) []jsonObj {
	var out []jsonObj
	entries, _ := b["entry"].([]any)
	for _, e := range entries {
		if r, ok := e.(jsonObj)["resource"].(jsonObj); ok {
			out = append(out, r)
		}
	}
	return out
}

func str(v any) string { s, _ := v.(string); return s }

// outputText is everything a reader of the output sees: the JSON text plus every decoded attachment.
func outputText(t *testing.T, out []byte) string {
	t.Helper()
	var sb strings.Builder
	sb.Write(out)
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case jsonObj:
			if d, ok := x["data"].(string); ok {
				dec, err := base64.StdEncoding.DecodeString(d)
				if err != nil {
					t.Errorf("attachment data is not base64: %v", err)
				}
				sb.WriteString("\n")
				sb.Write(dec)
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(decodeJSON(t, out))
	return sb.String()
}

// patientPHI collects, straight from the input JSON and independently of the package's collector, what
// identifies the patient: names (with and without Synthea's digits), identifiers, phones, emails, address,
// birth date.
type patientPHI struct {
	names, idents, phones, address []string
	birthDate                      string
}

func collectPatientPHI(t *testing.T, in jsonObj) patientPHI {
	t.Helper()
	var p patientPHI
	for _, r := range resources(in) {
		switch r["resourceType"] {
		case "Practitioner":
			// Clinicians: names (with and without digits), emails, identifiers (NPI of 5+ digits).
			for _, n := range asList(r["name"]) {
				n := n.(jsonObj)
				parts := []string{str(n["family"])}
				for _, g := range asList(n["given"]) {
					parts = append(parts, str(g))
				}
				for _, part := range parts {
					if part != "" {
						p.names = append(p.names, part, strings.TrimRight(part, "0123456789"))
					}
				}
			}
			for _, c := range asList(r["telecom"]) {
				if v := str(c.(jsonObj)["value"]); strings.Contains(v, "@") {
					p.idents = append(p.idents, v)
				}
			}
			continue
		case "Organization", "Location":
			for _, a := range append(asList(r["address"]), r["address"]) {
				if a, ok := a.(jsonObj); ok {
					for _, l := range asList(a["line"]) {
						p.address = append(p.address, str(l))
					}
				}
			}
			continue
		case "Patient":
		default:
			continue
		}
		p.birthDate = str(r["birthDate"])
		names, _ := r["name"].([]any)
		for _, n := range names {
			n := n.(jsonObj)
			parts := []string{str(n["family"])}
			given, _ := n["given"].([]any)
			for _, g := range given {
				parts = append(parts, str(g))
			}
			for _, part := range parts {
				if part == "" {
					continue
				}
				p.names = append(p.names, part)
				if s := strings.TrimRight(part, "0123456789"); s != part && len(s) > 1 {
					p.names = append(p.names, s)
				}
			}
		}
		ids, _ := r["identifier"].([]any)
		for _, id := range ids {
			if v := str(id.(jsonObj)["value"]); v != "" {
				p.idents = append(p.idents, v)
			}
		}
		p.idents = append(p.idents, str(r["id"]))
		tel, _ := r["telecom"].([]any)
		for _, c := range tel {
			p.phones = append(p.phones, str(c.(jsonObj)["value"]))
		}
		addrs, _ := r["address"].([]any)
		for _, a := range addrs {
			a := a.(jsonObj)
			lines, _ := a["line"].([]any)
			for _, l := range lines {
				p.address = append(p.address, str(l))
			}
			p.address = append(p.address, str(a["city"]), str(a["postalCode"]))
		}
		exts, _ := r["extension"].([]any)
		for _, e := range exts {
			e := e.(jsonObj)
			if strings.HasSuffix(str(e["url"]), "patient-mothersMaidenName") {
				for _, w := range strings.Fields(str(e["valueString"])) {
					p.names = append(p.names, w, strings.TrimRight(w, "0123456789"))
				}
			}
		}
	}
	return p
}

// digitsPattern matches the digits of a phone number with any separators between them.
func digitsPattern(phone string) *regexp.Regexp {
	var d []string
	for _, r := range phone {
		if r >= '0' && r <= '9' {
			d = append(d, string(r))
		}
	}
	return regexp.MustCompile(strings.Join(d, `[\s\-.()/]*`))
}

// TestSyntheaNoPHI checks every shared Synthea bundle with a check written apart from the residual scan.
func TestSyntheaNoPHI(t *testing.T) {
	for _, f := range syntheaBundles(t) {
		t.Run(filepath.Base(f)[:20], func(t *testing.T) {
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Deidentify(in, Options{Key: testKey("synthea"), Scope: "review-1", Now: goldenNow})
			if err != nil {
				t.Fatalf("Deidentify: %v", err)
			}
			phi := collectPatientPHI(t, decodeJSON(t, in))
			if len(phi.names) == 0 || len(phi.idents) == 0 || phi.birthDate == "" {
				t.Fatal("test collected no PHI from the input")
			}
			text := outputText(t, res.Bundle)
			lower := strings.ToLower(text)
			for _, n := range phi.names {
				re := regexp.MustCompile(`(?i)\b` + regexp.QuoteMeta(n) + `\b`)
				if loc := re.FindStringIndex(text); loc != nil {
					t.Errorf("name part of length %d survives at output offset %d", len(n), loc[0])
				}
			}
			for _, id := range phi.idents {
				if strings.Contains(lower, strings.ToLower(id)) {
					t.Errorf("identifier of length %d survives", len(id))
				}
			}
			for _, ph := range phi.phones {
				if digitsPattern(ph).MatchString(text) {
					t.Errorf("phone number survives")
				}
			}
			for _, a := range phi.address {
				if a != "" && regexp.MustCompile(`(?i)\b`+regexp.QuoteMeta(a)+`\b`).MatchString(text) {
					t.Errorf("address part of length %d survives", len(a))
				}
			}
			if strings.Contains(text, phi.birthDate) {
				t.Errorf("birth date survives")
			}
			for _, must := range []string{"PSEUDED", "REDACTED", SecurityLabelSystem} {
				if !strings.Contains(text, must) {
					t.Errorf("output lacks %s", must)
				}
			}
			if bytes.Contains(res.Bundle, []byte(`"div"`)) || bytes.Contains(res.Bundle, []byte("lastUpdated")) {
				t.Error("narrative or meta.lastUpdated survives")
			}
		})
	}
}

// TestSyntheaClinicalContentKept checks every in-scope DiagnosticReport, Observation, ImagingStudy and Condition
// survives with its codes, values, units, status, category and conclusion, that every reference resolves in
// the output, and that every interval between two dates is preserved (one shift for the whole output).
func TestSyntheaClinicalContentKept(t *testing.T) {
	key := testKey("synthea")
	for _, f := range syntheaBundles(t) {
		t.Run(filepath.Base(f)[:20], func(t *testing.T) {
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Deidentify(in, Options{Key: key, Scope: "review-1", Now: goldenNow})
			if err != nil {
				t.Fatalf("Deidentify: %v", err)
			}
			out := decodeJSON(t, res.Bundle)
			if out["type"] != "collection" {
				t.Errorf("bundle type %v", out["type"])
			}
			byID := map[string]jsonObj{}
			fullURLs := map[string]bool{}
			for _, e := range out["entry"].([]any) {
				e := e.(jsonObj)
				r := e["resource"].(jsonObj)
				byID[str(r["resourceType"])+"/"+str(r["id"])] = r
				if e["fullUrl"] != "urn:uuid:"+str(r["id"]) {
					t.Errorf("fullUrl %v does not match id", e["fullUrl"])
				}
				fullURLs[str(e["fullUrl"])] = true
			}
			checkReferences(t, out, fullURLs)
			kr := newKeyer(key, "review-1")
			shifts := map[int]int{}
			checked := 0
			for _, r := range resources(decodeJSON(t, in)) {
				rt := str(r["resourceType"])
				if o, ok := byID[rt+"/"+kr.pseudonym(rt+"/"+str(r["id"]))]; ok {
					dateShifts(t, r, o, shifts) // every kept resource, every date at the same path
				}
				switch rt {
				case "DiagnosticReport", "Observation", "ImagingStudy", "Condition":
				default:
					continue
				}
				o, ok := byID[rt+"/"+kr.pseudonym(rt+"/"+str(r["id"]))]
				if !ok {
					t.Errorf("%s missing from output", rt)
					continue
				}
				checked++
				for _, k := range []string{"status", "code", "category", "valueQuantity", "valueCodeableConcept",
					"clinicalStatus", "verificationStatus", "modality", "numberOfSeries", "numberOfInstances"} {
					if diff := cmp.Diff(codesOf(r[k]), codesOf(o[k])); diff != "" {
						t.Errorf("%s.%s changed (-in +out):\n%s", rt, k, diff)
					}
				}
				if diff := cmp.Diff(componentsOf(r), componentsOf(o)); diff != "" {
					t.Errorf("%s.component changed (-in +out):\n%s", rt, diff)
				}
				if (r["conclusion"] == nil) != (o["conclusion"] == nil) {
					t.Errorf("%s.conclusion presence changed", rt)
				}
				if len(asList(r["presentedForm"])) != len(asList(o["presentedForm"])) {
					t.Errorf("%s.presentedForm: %d text attachments in, %d out", rt, len(asList(r["presentedForm"])), len(asList(o["presentedForm"])))
				}
				if rt == "ImagingStudy" {
					if diff := cmp.Diff(seriesShape(r), seriesShape(o)); diff != "" {
						t.Errorf("ImagingStudy series changed (-in +out):\n%s", diff)
					}
				}
			}
			if checked == 0 {
				t.Fatal("no clinical resources checked")
			}
			if len(shifts) != 1 {
				t.Errorf("dates shifted by %d different amounts (%v): intervals not preserved", len(shifts), shifts)
			}
			for s := range shifts {
				if s == 0 {
					t.Error("dates not shifted")
				}
			}
		})
	}
}

func asList(v any) []any { l, _ := v.([]any); return l }

// codesOf keeps the clinically meaningful parts of a value: codes, systems, values, units, status strings.
func codesOf(v any) any {
	switch x := v.(type) {
	case jsonObj:
		m := map[string]any{}
		for _, k := range []string{"system", "code", "value", "unit", "coding", "comparator"} {
			if c, ok := x[k]; ok {
				m[k] = codesOf(c)
			}
		}
		return m
	case []any:
		var l []any
		for _, c := range x {
			l = append(l, codesOf(c))
		}
		return l
	}
	return v
}

func componentsOf(r jsonObj) any {
	var out []any
	for _, c := range asList(r["component"]) {
		c := c.(jsonObj)
		out = append(out, []any{codesOf(c["code"]), codesOf(c["valueQuantity"]), codesOf(c["valueCodeableConcept"])})
	}
	return out
}

func seriesShape(r jsonObj) any {
	var out []any
	for _, s := range asList(r["series"]) {
		s := s.(jsonObj)
		var inst []any
		for _, i := range asList(s["instance"]) {
			inst = append(inst, codesOf(i.(jsonObj)["sopClass"]))
		}
		out = append(out, []any{codesOf(s["modality"]), codesOf(s["bodySite"]), s["numberOfInstances"], inst})
	}
	return out
}

var fullDate = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}(T.*)?$`)

// dateShifts records, for every date element present in both in and out at the same path, the shift in days;
// it also checks that times of day and offsets are untouched.
func dateShifts(t *testing.T, in, out any, shifts map[int]int) {
	switch x := in.(type) {
	case jsonObj:
		o, ok := out.(jsonObj)
		if !ok {
			return
		}
		for k, v := range x {
			if k == "data" {
				continue
			}
			dateShifts(t, v, o[k], shifts)
		}
	case []any:
		o, ok := out.([]any)
		if !ok || len(o) != len(x) {
			return
		}
		for i := range x {
			dateShifts(t, x[i], o[i], shifts)
		}
	case string:
		o, ok := out.(string)
		if !ok || !fullDate.MatchString(x) || !fullDate.MatchString(o) {
			return
		}
		if x[10:] != o[10:] {
			t.Errorf("time of day or offset changed by the shift")
		}
		a, _ := time.Parse("2006-01-02", x[:10])
		b, _ := time.Parse("2006-01-02", o[:10])
		shifts[int(b.Sub(a).Hours()/24)]++
	}
}

// checkReferences verifies every reference of the output resolves inside it.
func checkReferences(t *testing.T, v any, fullURLs map[string]bool) {
	t.Helper()
	var walk func(v any, contained map[string]bool)
	walk = func(v any, contained map[string]bool) {
		switch x := v.(type) {
		case jsonObj:
			if c, ok := x["contained"].([]any); ok {
				contained = map[string]bool{}
				for _, r := range c {
					contained[str(r.(jsonObj)["id"])] = true
				}
			}
			if ref, ok := x["reference"].(string); ok {
				switch {
				case strings.HasPrefix(ref, "#"):
					if ref != "#" && !contained[ref[1:]] {
						t.Errorf("local reference does not resolve")
					}
				case !fullURLs[ref]:
					t.Errorf("reference does not resolve inside the output")
				}
				if _, ok := x["display"]; ok {
					t.Error("Reference.display survives")
				}
			}
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				walk(x[k], contained)
			}
		case []any:
			for _, c := range x {
				walk(c, contained)
			}
		}
	}
	for _, e := range asList(v.(jsonObj)["entry"]) {
		walk(e.(jsonObj)["resource"], nil)
	}
}

// TestDeterminismAndUnlinkability: the same input and key give byte-identical output; another key or another
// review gives other pseudonyms, another shift and other UIDs.
func TestDeterminismAndUnlinkability(t *testing.T) {
	in, err := os.ReadFile(filepath.Join(syntheaDir, "Todd315_Stamm704_0ce18c7d-fd78-46d9-81b5-8bed231c337a.json"))
	if err != nil {
		t.Fatal(err)
	}
	run := func(k Key, scope string) []byte {
		res, err := Deidentify(in, Options{Key: k, Scope: scope, Now: goldenNow})
		if err != nil {
			t.Fatal(err)
		}
		return res.Bundle
	}
	a1, a2 := run(testKey("a"), "r1"), run(testKey("a"), "r1")
	if !bytes.Equal(a1, a2) {
		t.Fatal("same input and key gave different output")
	}
	for name, other := range map[string][]byte{"other key": run(testKey("b"), "r1"), "other review": run(testKey("a"), "r2")} {
		ids1, ids2 := idsOf(t, a1), idsOf(t, other)
		for id := range ids1 {
			if ids2[id] {
				t.Errorf("%s: pseudonym or UID shared", name)
			}
		}
		if firstDate(t, a1) == firstDate(t, other) {
			t.Errorf("%s: same date shift", name)
		}
	}
}

var uidOrID = regexp.MustCompile(`"(?:id|uid|value)":"((?:urn:oid:)?2\.25\.\d+|[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12})"`)

func idsOf(t *testing.T, b []byte) map[string]bool {
	m := map[string]bool{}
	for _, x := range uidOrID.FindAllSubmatch(b, -1) {
		m[string(x[1])] = true
	}
	if len(m) < 10 {
		t.Fatalf("found only %d pseudonyms", len(m))
	}
	return m
}

func firstDate(t *testing.T, b []byte) string {
	m := regexp.MustCompile(`"effectiveDateTime":"([^"]+)"`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no effectiveDateTime")
	}
	return string(m[1])
}
