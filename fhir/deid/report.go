package deid

import "sort"

// Report says what one Deidentify call did. It holds counts, element paths, resource types and identifier
// kinds, never values, and never the date shift itself.
type Report struct {
	Profile        string `json:"profile"`
	ProfileVersion string `json:"profileVersion"`
	KeyID          string `json:"keyId"`
	// ResourcesIn and ResourcesOut count resources per type before and after.
	ResourcesIn  map[string]int `json:"resourcesIn"`
	ResourcesOut map[string]int `json:"resourcesOut"`
	// DroppedResources counts resources left out (type not in the profile, modifier extensions, duplicates).
	DroppedResources map[string]int `json:"droppedResources"`
	// Actions counts, per action, the element paths it was applied to.
	Actions map[string]map[string]int `json:"actions"`
	// DroppedElements counts elements and extensions dropped because the profile does not list them.
	DroppedElements map[string]int `json:"droppedElements"`
	// AgeRule says which branch of the age rule applied: "birthDate shifted" or "90 or older".
	AgeRule string `json:"ageRule,omitempty"`
	// Warnings are PHI-free notes (dropped resources with modifier extensions, unparseable dates…).
	Warnings []string `json:"warnings"`
}

// action is a kind of treatment counted in the report.
type action uint8

// Report actions.
const (
	actPseudonymized action = iota
	actRefPseudonymized
	actRefRemoved
	actDisplayRemoved
	actIdentifier
	actIdentifierPseudo
	actDateShifted
	actDateDropped
	actTextScrubbed
	actAttScrubbed
	actAttDropped
	actAttURL
	actUID
	actAddress
	actAgeCapped
	actBirthSuppressed
	actDeceased
	actNarrative
	actMeta
	actExtension
	actName
	actTelecom
	actContained
	actTypeMismatch
	actModifierExt
)

var actionNames = [...]string{
	actPseudonymized:    "id-pseudonymized",
	actRefPseudonymized: "reference-pseudonymized",
	actRefRemoved:       "reference-removed",
	actDisplayRemoved:   "reference-display-removed",
	actIdentifier:       "identifier-removed",
	actIdentifierPseudo: "identifier-pseudonymized",
	actDateShifted:      "date-shifted",
	actDateDropped:      "date-unparseable-dropped",
	actTextScrubbed:     "text-scrubbed",
	actAttScrubbed:      "attachment-text-scrubbed",
	actAttDropped:       "attachment-dropped",
	actAttURL:           "attachment-url-removed",
	actUID:              "uid-replaced",
	actAddress:          "address-generalized",
	actAgeCapped:        "age-capped-at-90",
	actBirthSuppressed:  "birthdate-suppressed-age-90-or-over",
	actDeceased:         "deceased-date-removed",
	actNarrative:        "narrative-dropped",
	actMeta:             "meta-replaced",
	actExtension:        "extension-dropped",
	actName:             "name-removed",
	actTelecom:          "telecom-removed",
	actContained:        "contained-dropped",
	actTypeMismatch:     "element-wrong-json-type-dropped",
	actModifierExt:      "element-with-modifier-extension-dropped",
}

type reportBuilder struct {
	r     Report
	nodes map[nodeAction]int // counts keyed by compiled profile node: no string hashing in the hot path
	paths map[pathAction]int
}

type nodeAction struct {
	a action
	n *node
}

type pathAction struct {
	a action
	p string
}

func newReportBuilder() reportBuilder {
	return reportBuilder{nodes: map[nodeAction]int{}, paths: map[pathAction]int{}, r: Report{
		ResourcesIn: map[string]int{}, ResourcesOut: map[string]int{}, DroppedResources: map[string]int{},
		Actions: map[string]map[string]int{}, DroppedElements: map[string]int{}, Warnings: []string{},
	}}
}

// act counts an action on an element path built at run time.
func (b *reportBuilder) act(a action, path string) { b.paths[pathAction{a, path}]++ }

// actN counts an action on the element of a compiled profile node.
func (b *reportBuilder) actN(a action, n *node) { b.nodes[nodeAction{a, n}]++ }

func (b *reportBuilder) add(a action, path string, k int) {
	name := actionNames[a]
	m := b.r.Actions[name]
	if m == nil {
		m = map[string]int{}
		b.r.Actions[name] = m
	}
	m[path] += k
}

func (b *reportBuilder) drop(path string) { b.r.DroppedElements[path]++ }

func (b *reportBuilder) warn(w string) {
	for _, x := range b.r.Warnings {
		if x == w {
			return
		}
	}
	b.r.Warnings = append(b.r.Warnings, w)
}

func (b *reportBuilder) finish() Report {
	for k, v := range b.nodes {
		b.add(k.a, k.n.path, v)
	}
	for k, v := range b.paths {
		b.add(k.a, k.p, v)
	}
	sort.Strings(b.r.Warnings)
	return b.r
}
