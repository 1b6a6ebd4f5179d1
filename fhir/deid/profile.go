package deid

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

//go:embed profiles/*.yaml
var embeddedProfiles embed.FS

// DefaultProfile is the name of the profile used when none is given.
const DefaultProfile = "safe-harbor"

// Treatments a profile may give to an element.
const (
	// TreatKeep keeps the element and everything FHIR R4 defines below it, under the rules no profile can switch
	// off: references pseudonymized, dates shifted, free text scrubbed, identifiers and names removed, addresses
	// generalized, attachments scrubbed or dropped, imaging UIDs replaced.
	TreatKeep = "keep"
	// TreatGeneralize applies to Address (state or province, country, FSA or 3-digit ZIP), Patient.birthDate
	// (the age rule) and Patient.deceased[x] (a flag without a date).
	TreatGeneralize = "generalize"
	// TreatPseudonymize replaces an Identifier by a keyed pseudonymous one under IdentifierSystem.
	TreatPseudonymize = "pseudonymize"
	// TreatUID replaces DICOM UIDs (ImagingStudy.identifier, series.uid, series.instance.uid) by keyed 2.25 UIDs.
	TreatUID = "uid"
	// TreatDrop documents an element that is dropped; unlisted elements are dropped anyway.
	TreatDrop = "drop"
)

// Profile is a compiled allow-list: which resource types and elements survive de-identification and how each
// is treated. It is immutable once built and safe for concurrent use.
type Profile struct {
	// Name and Version identify the profile in every report.
	Name    string
	Version string
	// Description is a human summary from the profile file.
	Description string

	extensions map[string]bool
	roots      map[string]*node
	ids        map[string]*node // "Type.id" report nodes
	ext        *node
}

// ResourceTypes lists the resource types the profile keeps, sorted.
func (p *Profile) ResourceTypes() []string {
	out := make([]string, 0, len(p.roots))
	for t := range p.roots {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// profileFile is the on-disk profile format (YAML or JSON).
type profileFile struct {
	Profile     string                       `yaml:"profile"`
	Version     string                       `yaml:"version"`
	FHIRVersion string                       `yaml:"fhirVersion"`
	Description string                       `yaml:"description"`
	Extensions  []string                     `yaml:"extensions"`
	Resources   map[string]map[string]string `yaml:"resources"`
}

// ProfileError lists every problem found in a profile file. Messages name element paths, never resource content.
type ProfileError struct {
	Problems []string
}

func (e *ProfileError) Error() string {
	return "invalid de-identification profile: " + strings.Join(e.Problems, "; ")
}

// LoadProfile returns one of the profiles embedded in the binary by name ("safe-harbor").
func LoadProfile(name string) (*Profile, error) {
	if name == "" {
		name = DefaultProfile
	}
	if strings.ContainsAny(name, "/\\.") {
		return nil, fmt.Errorf("load profile: unknown embedded profile %q (available: %s)", name, strings.Join(EmbeddedProfiles(), ", "))
	}
	data, err := embeddedProfiles.ReadFile("profiles/" + name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("load profile: unknown embedded profile %q (available: %s)", name, strings.Join(EmbeddedProfiles(), ", "))
	}
	p, err := ParseProfile(data)
	if err != nil {
		return nil, fmt.Errorf("load profile %s: %w", name, err)
	}
	return p, nil
}

// EmbeddedProfiles lists the names LoadProfile accepts.
func EmbeddedProfiles() []string {
	entries, _ := embeddedProfiles.ReadDir("profiles")
	var out []string
	for _, e := range entries {
		out = append(out, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	return out
}

// maxProfileBytes bounds a user-supplied profile file.
const maxProfileBytes = 1 << 20

// ParseProfile parses and validates a profile file (YAML, or JSON which is valid YAML). It reports every problem
// at once in a *ProfileError: unknown keys, unknown resource types, element names FHIR R4 does not define for
// that type, unknown treatments and treatments that do not fit an element's datatype.
func ParseProfile(data []byte) (*Profile, error) {
	if len(data) > maxProfileBytes {
		return nil, &ProfileError{Problems: []string{fmt.Sprintf("profile larger than %d bytes", maxProfileBytes)}}
	}
	var pf profileFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&pf); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &ProfileError{Problems: []string{"empty profile"}}
		}
		return nil, &ProfileError{Problems: []string{"parse: " + sanitizeYAMLError(err)}}
	}
	return compileProfile(&pf)
}

// sanitizeYAMLError keeps the line information of a YAML error but not quoted document content.
func sanitizeYAMLError(err error) string {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var parts []string
		for _, e := range te.Errors {
			line, _, _ := strings.Cut(e, ":")
			parts = append(parts, line+": wrong type or unknown field")
		}
		return strings.Join(parts, ", ")
	}
	if i := strings.Index(msg, "line "); i >= 0 {
		rest := msg[i:]
		if j := strings.IndexByte(rest, ':'); j >= 0 {
			return rest[:j] + ": syntax error"
		}
	}
	return "syntax error"
}

// managedElements are resource members the transformer writes itself; a profile cannot list them.
var managedElements = map[string]string{
	"id":                "the id is always pseudonymized",
	"meta":              "meta is written by the transformer (security labels only)",
	"text":              "the narrative is always dropped",
	"contained":         "contained resources follow their own type's rules",
	"extension":         "list extension URLs under extensions:",
	"modifierExtension": "resources with modifier extensions are dropped",
	"resourceType":      "written by the transformer",
	"implicitRules":     "implicit rules cannot be honoured after de-identification",
}

func compileProfile(pf *profileFile) (*Profile, error) {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if pf.Profile == "" {
		add("profile: name missing")
	}
	if pf.Version == "" {
		add("version: missing")
	}
	if pf.FHIRVersion != "" && pf.FHIRVersion != "4.0.1" && pf.FHIRVersion != "4.0" && pf.FHIRVersion != "R4" {
		add("fhirVersion: only FHIR R4 (4.0.1) is supported")
	}
	if len(pf.Resources) == 0 {
		add("resources: at least one resource type is required")
	}
	types := resourceTypes()
	c := &compiler{}
	c.ext = c.extensionNode()
	p := &Profile{
		Name: pf.Profile, Version: pf.Version, Description: pf.Description,
		extensions: map[string]bool{}, roots: map[string]*node{}, ids: map[string]*node{}, ext: c.ext,
	}
	for _, u := range pf.Extensions {
		if !strings.Contains(u, ":") {
			add("extensions: %q is not an absolute URL", clip(u))
			continue
		}
		p.extensions[u] = true
	}
	rtNames := make([]string, 0, len(pf.Resources))
	for rt := range pf.Resources {
		rtNames = append(rtNames, rt)
	}
	sort.Strings(rtNames)
	for _, rt := range rtNames {
		t, ok := types[rt]
		if !ok {
			add("resources.%s: not a supported FHIR R4 resource type", clip(rt))
			continue
		}
		if rt == "Endpoint" {
			add("resources.Endpoint: Endpoint resources are always dropped (imaging access goes through the gateway)")
			continue
		}
		root := c.objectNode(t, rt)
		paths := make([]string, 0, len(pf.Resources[rt]))
		for path := range pf.Resources[rt] {
			paths = append(paths, path)
		}
		sort.Strings(paths)
		for _, path := range paths {
			if err := c.addPath(root, t, rt, path, pf.Resources[rt][path]); err != "" {
				add("resources.%s.%s: %s", rt, clip(path), err)
			}
		}
		for p2, req := range requiredChildren {
			if strings.HasPrefix(p2, rt+".") {
				if n := findNode(root, strings.TrimPrefix(p2, rt+".")); n != nil {
					n.required = req
				}
			}
		}
		p.roots[rt] = root
		p.ids[rt] = &node{kind: kCode, path: rt + ".id"}
	}
	if len(problems) > 0 {
		return nil, &ProfileError{Problems: problems}
	}
	return p, nil
}

// requiredChildren names backbone elements that are meaningless once a required child is gone; they are then
// dropped as a whole.
var requiredChildren = map[string][]string{
	"DocumentReference.content":      {"attachment"},
	"DocumentReference.relatesTo":    {"target"},
	"Encounter.location":             {"location"},
	"Encounter.diagnosis":            {"condition"},
	"Procedure.performer":            {"actor"},
	"Procedure.focalDevice":          {"manipulated"},
	"ImagingStudy.series":            {"uid"},
	"ImagingStudy.series.instance":   {"uid", "sopClass"},
	"ImagingStudy.series.performer":  {"actor"},
	"Immunization.performer":         {"actor"},
	"MedicationRequest.substitution": {},
	"Observation.component":          {"code"},
	"Specimen.container":             {},
	"DiagnosticReport.media":         {"link"},
	"CareTeam.participant":           {"member"},
}

func findNode(n *node, path string) *node {
	for seg := range strings.SplitSeq(path, ".") {
		if n == nil || n.children == nil {
			return nil
		}
		n = n.children[seg]
	}
	return n
}

// clip shortens user-supplied profile text quoted in an error.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

type compiler struct {
	ext *node
}

// maxSchemaDepth bounds the expansion of recursive FHIR datatypes in a compiled profile.
const maxSchemaDepth = 10

func (c *compiler) objectNode(t reflect.Type, path string) *node {
	n := &node{kind: kObject, path: path, children: map[string]*node{}, known: map[string]bool{}}
	for _, f := range fieldsOf(t) {
		n.known[f.name] = true
	}
	n.known["contained"] = true
	return n
}

// extensionNode builds the one Extension node shared by every extension member (the type is recursive).
func (c *compiler) extensionNode() *node {
	t := reflect.TypeFor[extensionType]()
	n := &node{kind: kExtension, path: "Extension", children: map[string]*node{}, known: map[string]bool{}, array: true}
	c.ext = n
	for _, f := range fieldsOf(t) {
		n.known[f.name] = true
		switch f.name {
		case "url", "id":
			continue
		case "extension":
			n.children["extension"] = n
			continue
		}
		if ch := c.deep(f, "Extension."+f.name, 1, t); ch != nil {
			n.children[f.name] = ch
		}
	}
	return n
}

// deep builds the node for keeping element f and everything below it.
func (c *compiler) deep(f field, path string, depth int, parent reflect.Type) *node {
	k := kindOf(f.typ, f.name, parent)
	switch k {
	case kDrop, kIdentifier:
		return nil
	case kExtension:
		return c.ext
	}
	n := &node{kind: k, array: f.array, path: path}
	if k == kObject || k == kQuantity {
		if depth > maxSchemaDepth {
			return nil
		}
		n.children = map[string]*node{}
		n.known = map[string]bool{}
		for _, sub := range fieldsOf(f.typ) {
			n.known[sub.name] = true
			switch sub.name {
			case "id", "modifierExtension", "authorString":
				continue
			case "extension":
				n.children["extension"] = c.ext
				continue
			}
			if ch := c.deep(sub, path+"."+sub.name, depth+1, f.typ); ch != nil {
				n.children[sub.name] = ch
			}
		}
	}
	if k == kAttachment || k == kAddress || k == kReference {
		n.known = map[string]bool{}
		for _, sub := range fieldsOf(f.typ) {
			n.known[sub.name] = true
		}
	}
	return n
}

// addPath adds one "a.b.c: treatment" line of a profile to the tree rooted at root. It returns a problem or "".
func (c *compiler) addPath(root *node, t reflect.Type, rt, path, treat string) string {
	switch treat {
	case TreatKeep, TreatGeneralize, TreatPseudonymize, TreatUID, TreatDrop:
	default:
		return fmt.Sprintf("unknown treatment %q (keep, generalize, pseudonymize, uid, drop)", clip(treat))
	}
	segs := strings.Split(path, ".")
	if why, ok := managedElements[segs[0]]; ok {
		return "cannot be listed: " + why
	}
	cur, curT, curPath := root, t, rt
	for _, seg := range segs[:len(segs)-1] {
		f, ok := lookupField(curT, seg)
		if !ok {
			return fmt.Sprintf("FHIR R4 %s has no element %q", curPath, clip(seg))
		}
		k := kindOf(f.typ, f.name, curT)
		if k != kObject && k != kQuantity {
			return fmt.Sprintf("%s.%s is not a backbone or complex element", curPath, seg)
		}
		child := cur.children[seg]
		if child == nil {
			child = c.objectNode(f.typ, curPath+"."+seg)
			child.kind = k
			child.array = f.array
			cur.children[seg] = child
		}
		cur, curT, curPath = child, f.typ, curPath+"."+seg
	}
	last := segs[len(segs)-1]
	var fields []field
	if base, ok := strings.CutSuffix(last, "[x]"); ok {
		fields = choiceFields(curT, base)
	} else if f, ok := lookupField(curT, last); ok {
		fields = []field{f}
	}
	if len(fields) == 0 {
		return fmt.Sprintf("FHIR R4 %s has no element %q", curPath, clip(last))
	}
	for _, f := range fields {
		if _, ok := managedElements[f.name]; ok && f.name != "id" {
			return fmt.Sprintf("%s cannot be listed: %s", f.name, managedElements[f.name])
		}
		if f.name == "id" {
			return "element ids are always dropped"
		}
		elemPath := curPath + "." + f.name
		k := kindOf(f.typ, f.name, curT)
		var n *node
		switch treat {
		case TreatDrop:
			delete(cur.children, f.name)
			continue
		case TreatKeep:
			switch k {
			case kDrop:
				return fmt.Sprintf("%s (%s) can never be kept", elemPath, f.typ.Name())
			case kIdentifier:
				return fmt.Sprintf("%s is an Identifier: identifiers are removed; use pseudonymize (or uid on ImagingStudy)", elemPath)
			case kExtension:
				return "list extension URLs under extensions:"
			}
			n = c.deep(f, elemPath, strings.Count(elemPath, "."), curT)
			if n == nil {
				return fmt.Sprintf("%s nests too deeply to keep whole; list its children", elemPath)
			}
		case TreatGeneralize:
			switch {
			case k == kAddress:
				n = &node{kind: kAddress, array: f.array, path: elemPath}
			case rt == "Patient" && f.name == "birthDate" && cur == root:
				n = &node{kind: kBirthDate, path: elemPath}
			case rt == "Patient" && strings.HasPrefix(f.name, "deceased") && cur == root:
				n = &node{kind: kDeceased, path: elemPath}
			default:
				return fmt.Sprintf("generalize applies to Address, Patient.birthDate and Patient.deceased[x], not %s", elemPath)
			}
		case TreatPseudonymize:
			if k != kIdentifier {
				return fmt.Sprintf("pseudonymize applies to Identifier elements, not %s", elemPath)
			}
			n = &node{kind: kIdentifier, array: f.array, path: elemPath, treat: TreatPseudonymize}
		case TreatUID:
			switch {
			case rt == "ImagingStudy" && k == kIdentifier && cur == root:
				n = &node{kind: kIdentifier, array: f.array, path: elemPath, treat: TreatUID}
			case rt == "ImagingStudy" && f.name == "uid":
				n = &node{kind: kUID, path: elemPath}
			default:
				return fmt.Sprintf("uid applies to ImagingStudy.identifier, series.uid and series.instance.uid, not %s", elemPath)
			}
		}
		if k == kAttachment || k == kAddress || k == kReference {
			n.known = map[string]bool{}
			for _, sub := range fieldsOf(f.typ) {
				n.known[sub.name] = true
			}
		}
		// Paths are compiled in sorted order, so "series" comes before "series.uid": children listed
		// explicitly refine a kept element afterwards. An intermediate compiled first (a choice expansion)
		// keeps its explicit children.
		if old := cur.children[f.name]; old != nil && old.children != nil && n.children != nil && treat == TreatKeep {
			for name, ch := range old.children {
				n.children[name] = ch
			}
		}
		cur.children[f.name] = n
	}
	return ""
}
