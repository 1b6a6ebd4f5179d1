package deid

import (
	"fmt"
	"strings"
)

// entry is one resource of the input (a Bundle entry or the single input resource).
type entry struct {
	node      int32
	pos       int // position among the input entries, for error paths
	rt        string
	identity  string
	fullURL   string
	inScope   bool
	pseudo    string
	contained map[string]containedInfo
	order     []string // contained local ids in document order
}

// containedInfo describes one contained resource.
type containedInfo struct {
	node    int32
	rt      string
	newID   string
	inScope bool
}

// phiItem is one identifying string collected from the input.
type phiItem struct {
	kind  phiKind
	value string
	words bool // split into name words (person names)
}

// displayRef is a Reference.display collected before the reference targets are known.
type displayRef struct {
	display, ref, typ, member string
	entry                     int
}

// index is the result of the first pass: the resources, how references resolve, and every identifying string.
type index struct {
	tp        *tape
	entries   []entry
	byFullURL map[string]int
	byTypeID  map[string]int
	patient   int
	birth     fhirDate
	hasBirth  bool
	deceased  *fhirDate
	phi       []phiItem
	displays  []displayRef
	warnings  []string
	typeIn    map[string]int
	dropped   map[string]int
	rootIsBdl bool
	seen      map[phiItem]bool
	seenRef   map[string]uint8
}

// reportType returns rt when it is a known resource type name, so reports never echo arbitrary input.
func reportType(rt string) string {
	if allR4Types[rt] {
		return rt
	}
	return "(unknown type)"
}

func indexInput(tp *tape, prof *Profile, lim Limits) (*index, error) {
	ix := &index{
		tp: tp, byFullURL: map[string]int{}, byTypeID: map[string]int{}, patient: -1,
		typeIn: map[string]int{}, dropped: map[string]int{},
	}
	root := int32(0)
	rt := tp.memberStr(root, "resourceType")
	if rt == "" {
		return nil, &InputError{Reason: "top-level object has no resourceType", Offset: 0}
	}
	if rt == "Bundle" {
		ix.rootIsBdl = true
		entries := tp.member(root, "entry")
		if entries >= 0 && tp.nodes[entries].kind == '[' {
			n := 0
			for e := entries + 1; e < tp.nodes[entries].next; e = tp.nodes[e].next {
				n++
				if n > lim.MaxEntries {
					return nil, &InputError{Reason: fmt.Sprintf("more than %d Bundle entries", lim.MaxEntries), Offset: int64(tp.nodes[e].start)}
				}
				if tp.nodes[e].kind != '{' {
					return nil, &InputError{Reason: "Bundle.entry element is not an object", Offset: int64(tp.nodes[e].start)}
				}
				res := tp.member(e, "resource")
				if res < 0 {
					continue
				}
				if tp.nodes[res].kind != '{' {
					return nil, &InputError{Reason: "Bundle.entry.resource is not an object", Offset: int64(tp.nodes[res].start)}
				}
				ix.addEntry(res, tp.memberStr(e, "fullUrl"), n-1, prof)
			}
		}
	} else {
		ix.addEntry(root, "", 0, prof)
	}
	for i := range ix.entries {
		e := &ix.entries[i]
		ix.collect(e.node, e.rt, nil, i)
		for _, id := range e.order {
			c := e.contained[id]
			ix.collect(c.node, c.rt, nil, i)
		}
	}
	return ix, nil
}

func (ix *index) addEntry(res int32, fullURL string, pos int, prof *Profile) {
	tp := ix.tp
	rt := tp.memberStr(res, "resourceType")
	id := tp.memberStr(res, "id")
	e := entry{node: res, pos: pos, rt: rt, fullURL: fullURL}
	switch {
	case rt != "" && id != "":
		e.identity = rt + "/" + id
	case fullURL != "":
		e.identity = fullURL
	default:
		e.identity = fmt.Sprintf("entry#%d", pos)
	}
	ix.typeIn[reportType(rt)]++
	_, e.inScope = prof.roots[rt]
	if e.inScope && hasModifierExtension(tp, res) {
		e.inScope = false
		ix.warnings = append(ix.warnings, reportType(rt)+" resource dropped: it carries a modifierExtension")
	}
	if !e.inScope {
		ix.dropped[reportType(rt)]++
	}
	if c := tp.member(res, "contained"); c >= 0 && tp.nodes[c].kind == '[' {
		e.contained = map[string]containedInfo{}
		for r := c + 1; r < tp.nodes[c].next; r = tp.nodes[r].next {
			if tp.nodes[r].kind != '{' {
				continue
			}
			lid := tp.memberStr(r, "id")
			crt := tp.memberStr(r, "resourceType")
			_, in := prof.roots[crt]
			if in && hasModifierExtension(tp, r) {
				in = false
			}
			if _, dup := e.contained[lid]; dup || lid == "" {
				continue
			}
			e.contained[lid] = containedInfo{node: r, rt: crt, newID: localID(len(e.order)), inScope: in}
			e.order = append(e.order, lid)
		}
	}
	idx := len(ix.entries)
	if _, seen := ix.byTypeID[e.identity]; !seen && rt != "" && id != "" {
		ix.byTypeID[e.identity] = idx // a repeated resource resolves to its first copy and is written once
	}
	if fullURL != "" {
		if _, ok := ix.byFullURL[fullURL]; !ok {
			ix.byFullURL[fullURL] = idx
		}
	}
	if rt == "Patient" && ix.patient < 0 {
		ix.patient = idx
		if b := tp.member(res, "birthDate"); b >= 0 && tp.nodes[b].kind == '"' {
			if fd, ok := parseFHIRDate(tp.str(b, nil)); ok {
				ix.birth, ix.hasBirth = fd, true
			}
		}
		if d := tp.member(res, "deceasedDateTime"); d >= 0 && tp.nodes[d].kind == '"' {
			if fd, ok := parseFHIRDate(tp.str(d, nil)); ok {
				ix.deceased = &fd
			}
		}
	}
	ix.entries = append(ix.entries, e)
}

func hasModifierExtension(tp *tape, res int32) bool {
	m := tp.member(res, "modifierExtension")
	return m >= 0 && tp.nodes[m].kind == '[' && tp.nodes[m].next > m+1
}

// personTypes are resource types whose Reference.display is a person's name.
var personTypes = map[string]bool{"Patient": true, "Practitioner": true, "RelatedPerson": true, "PractitionerRole": true, "Person": true}

// placeTypes are resource types whose names reveal a place.
var placeTypes = map[string]bool{"Organization": true, "Location": true, "HealthcareService": true, "Endpoint": true}

// collectedStrings are the members whose string values the collector looks at.
var collectedStrings = map[string]bool{
	"authorString": true, "uid": true, "serialNumber": true, "lotNumber": true, "deviceIdentifier": true,
	"carrierHRF": true, "carrierAIDC": true, "udiDeviceIdentifier": true, "modelNumber": true, "name": true,
	"alias": true, "address": true, "source": true, "birthDate": true, "id": true,
}

// collect gathers the identifying strings under node i (member is the name it sits under).
func (ix *index) collect(i int32, rt string, memberB []byte, ent int) {
	tp := ix.tp
	n := tp.nodes[i]
	switch n.kind {
	case '[':
		for c := i + 1; c < n.next; c = tp.nodes[c].next {
			ix.collect(c, rt, memberB, ent)
		}
		return
	case '"':
		if !collectedStrings[string(memberB)] {
			return
		}
		v := string(tp.str(i, nil))
		if v == "" {
			return
		}
		switch member := string(memberB); member {
		case "authorString":
			ix.add(phiItem{kind: phiName, value: v, words: true})
		case "uid":
			ix.add(phiItem{kind: phiUID, value: v})
		case "serialNumber", "lotNumber", "deviceIdentifier", "carrierHRF", "carrierAIDC", "udiDeviceIdentifier", "modelNumber":
			ix.add(phiItem{kind: phiID, value: v})
		case "name", "alias":
			if placeTypes[rt] {
				ix.add(phiItem{kind: phiLocation, value: v})
			}
		case "address":
			if rt == "Endpoint" {
				ix.add(phiItem{kind: phiURL, value: v})
			}
		case "source":
			if strings.Contains(v, "://") {
				ix.add(phiItem{kind: phiURL, value: v})
			}
		case "birthDate":
			if rt == "Patient" || rt == "RelatedPerson" || rt == "Person" {
				ix.add(phiItem{kind: phiBirthDate, value: v})
			}
		case "id":
			// Random UUIDs of clinical resources identify no one; ids of people (Synthea's Patient.id is its
			// MRN) and other ids with digits are collected.
			if countDigits(v) >= 5 && (personTypes[rt] || !isUUID(v)) {
				ix.add(phiItem{kind: phiID, value: v})
			}
		}
		return
	case '{':
	default:
		return
	}
	member := ""
	switch string(memberB) {
	case "name", "telecom", "address", "valueAddress", "identifier", "masterIdentifier", "accessionIdentifier", "valueIdentifier":
		member = string(memberB)
	}
	switch member {
	case "name":
		if tp.member(i, "family") >= 0 || tp.member(i, "given") >= 0 || tp.member(i, "text") >= 0 {
			for _, part := range []string{"family", "given", "text"} {
				ix.strings(tp.member(i, part), phiName, true)
			}
			for _, ext := range []string{"_family", "_given"} {
				ix.extStrings(tp.member(i, ext))
			}
		}
	case "telecom":
		kind := phiPhone
		switch tp.memberStr(i, "system") {
		case "email":
			kind = phiEmail
		case "url":
			kind = phiURL
		case "other", "pager", "sms", "fax", "phone", "":
		}
		ix.strings(tp.member(i, "value"), kind, false)
	case "address", "valueAddress":
		for _, part := range []string{"line", "city", "district", "postalCode", "text"} {
			ix.strings(tp.member(i, part), phiAddress, false)
		}
	case "identifier", "masterIdentifier", "accessionIdentifier", "valueIdentifier":
		if v := tp.memberStr(i, "value"); !personTypes[rt] && isUUID(v) && strings.HasSuffix(ix.entries[ent].identity, "/"+v) {
			break // Synthea mirrors each resource's random UUID id as an identifier
		}
		kind := phiID
		if v := tp.memberStr(i, "value"); rt == "ImagingStudy" && (strings.HasPrefix(v, "urn:oid:") || tp.memberStr(i, "system") == "urn:dicom:uid") {
			kind = phiUID
		}
		ix.strings(tp.member(i, "value"), kind, false)
	}
	var scratch [64]byte
	display, url := int32(-1), int32(-1)
	hasCode := false
	for c := i + 1; c < n.next; c = tp.nodes[c].next {
		switch string(tp.name(c, scratch[:0])) {
		case "display":
			display = c
		case "code", "system":
			hasCode = true
		case "url":
			url = c
		}
	}
	if display >= 0 && tp.nodes[display].kind == '"' && !hasCode {
		// References repeat verbatim thousands of times; each distinct one (per person or other member) is
		// classified once.
		flag := uint8(1)
		if personMembers[string(memberB)] {
			flag = 2
		}
		if ix.seenRef == nil {
			ix.seenRef = map[string]uint8{}
		}
		if f := ix.seenRef[string(tp.raw(i))]; f&flag == 0 {
			ix.seenRef[string(tp.raw(i))] = f | flag
			ix.displays = append(ix.displays, displayRef{display: string(tp.str(display, nil)), ref: tp.memberStr(i, "reference"),
				typ: tp.memberStr(i, "type"), entry: ent, member: string(memberB)})
		}
	}
	if url >= 0 && tp.nodes[url].kind == '"' {
		u := string(tp.str(url, nil))
		lu := strings.ToLower(u)
		if strings.Contains(lu, "maidenname") || strings.HasSuffix(lu, "-name") || strings.Contains(lu, "nickname") {
			ix.strings(tp.member(i, "valueString"), phiName, true)
		}
		if tp.member(i, "contentType") >= 0 || tp.member(i, "data") >= 0 {
			ix.add(phiItem{kind: phiURL, value: u})
		}
	}
	for c := i + 1; c < n.next; c = tp.nodes[c].next {
		name := tp.name(c, scratch[:0])
		switch tp.nodes[c].kind {
		case '"':
			if !collectedStrings[string(name)] {
				continue
			}
		case '{', '[':
			if string(name) == "contained" || string(name) == "coding" || string(name) == "text" && len(memberB) == 0 {
				// Contained resources are collected on their own; codings hold codes; the narrative is dropped.
				continue
			}
		default:
			continue
		}
		ix.collect(c, rt, name, ent)
	}
}

// add records one identifying string once.
func (ix *index) add(p phiItem) {
	if ix.seen == nil {
		ix.seen = map[phiItem]bool{}
	}
	if !ix.seen[p] {
		ix.seen[p] = true
		ix.phi = append(ix.phi, p)
	}
}

// strings adds the string (or strings of an array) at node i.
func (ix *index) strings(i int32, k phiKind, words bool) {
	if i < 0 {
		return
	}
	tp := ix.tp
	switch tp.nodes[i].kind {
	case '"':
		if v := string(tp.str(i, nil)); v != "" {
			ix.add(phiItem{kind: k, value: v, words: words})
		}
	case '[':
		for c := i + 1; c < tp.nodes[i].next; c = tp.nodes[c].next {
			ix.strings(c, k, words)
		}
	}
}

// extStrings collects valueString members of extensions on name parts (e.g. own-prefix, partner names).
func (ix *index) extStrings(i int32) {
	if i < 0 {
		return
	}
	tp := ix.tp
	for c := i; c < tp.nodes[i].next; c++ {
		if tp.nodes[c].kind == '"' && tp.nodes[c].nameEnd != 0 && string(tp.name(c, nil)) == "valueString" {
			ix.add(phiItem{kind: phiName, value: string(tp.str(c, nil)), words: true})
		}
	}
}

// isUUID reports whether s has the 8-4-4-4-12 hexadecimal shape of a UUID.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
				return false
			}
		}
	}
	return true
}

func countDigits(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			n++
		}
	}
	return n
}

// targetType finds the resource type a reference points at, if it can be known.
func (ix *index) targetType(ref, typ string, ent int) string {
	if typ != "" {
		return typ
	}
	if ref == "" {
		return ""
	}
	if ref[0] == '#' {
		if ent >= 0 && ent < len(ix.entries) {
			if c, ok := ix.entries[ent].contained[ref[1:]]; ok {
				return c.rt
			}
		}
		return ""
	}
	if e, ok := ix.byFullURL[ref]; ok {
		return ix.entries[e].rt
	}
	ref, _, _ = strings.Cut(ref, "/_history/")
	parts := strings.Split(ref, "/")
	if len(parts) >= 2 {
		t := parts[len(parts)-2]
		if allR4Types[t] {
			return t
		}
	}
	return ""
}

// personMembers hold references to people, whatever the reference resolves to.
var personMembers = map[string]bool{
	"performer": true, "author": true, "requester": true, "recorder": true, "asserter": true, "individual": true,
	"actor": true, "collector": true, "interpreter": true, "referrer": true, "resultsInterpreter": true,
	"generalPractitioner": true, "authenticator": true, "informant": true, "enterer": true, "verifier": true,
	"sender": true, "recipient": true, "practitioner": true, "member": true, "who": true, "agent": true,
	"participant": true, "attester": true, "party": true, "authorReference": true, "patient": true, "subject": true,
}

// payerMembers hold references to insurers and coverage.
var payerMembers = map[string]bool{"coverage": true, "insurer": true, "payor": true, "insurance": true}

// nameStopwords are parts of names that identify no one (titles, particles).
var nameStopwords = map[string]bool{
	"dr": true, "mr": true, "mrs": true, "ms": true, "miss": true, "md": true, "phd": true, "rn": true, "np": true,
	"jr": true, "sr": true, "ii": true, "iii": true, "iv": true, "the": true, "and": true, "of": true, "de": true,
	"la": true, "le": true, "van": true, "von": true, "der": true, "del": true, "da": true, "di": true, "du": true,
	"dds": true, "dmd": true, "do": true, "prof": true, "mx": true,
	// Words of organization and team names that reach the collector through Reference.display.
	"university": true, "medical": true, "center": true, "centre": true, "hospital": true, "clinic": true,
	"health": true, "care": true, "general": true, "department": true, "laboratory": true, "lab": true,
	"service": true, "services": true, "group": true, "associates": true, "family": true, "practice": true,
	"radiology": true, "imaging": true, "team": true, "unit": true, "ward": true, "nurse": true, "nursing": true,
	"doctor": true, "physician": true, "surgeon": true, "pharmacy": true, "patient": true, "inc": true, "llc": true,
	"ltd": true, "saint": true, "st": true, "community": true, "regional": true, "memorial": true,
}

// buildMatcher turns the collected strings into the scrubber trie and the residual automaton.
func (ix *index) buildMatcher() *matcher {
	m := newMatcher()
	total := 1
	for _, p := range ix.phi {
		total += 2 * len(p.value)
	}
	m.nodes = make([]trieNode, 1, total)
	for _, d := range ix.displays {
		t := ix.targetType(d.ref, d.typ, d.entry)
		switch {
		case placeTypes[t]:
			ix.add(phiItem{kind: phiLocation, value: d.display})
		case personTypes[t], personMembers[d.member]:
			ix.add(phiItem{kind: phiName, value: d.display, words: true})
		case placeTypes[t]:
			ix.add(phiItem{kind: phiLocation, value: d.display})
		case t == "" && payerMembers[d.member]:
			// An insurer's name identifies no one.
		case t == "":
			ix.add(phiItem{kind: phiName, value: d.display})
		}
	}
	for _, p := range ix.phi {
		norm := normalize(p.value)
		switch p.kind {
		case phiName:
			if p.words {
				for _, w := range splitWords(p.value) {
					addNameWord(m, w)
				}
			}
			m.add(norm, phiName, len(norm) >= 4, len(norm) >= 8)
		case phiID, phiUID:
			m.add(norm, p.kind, len(norm) >= 4, len(norm) >= 5)
		case phiPhone:
			d := digitsOnly(p.value)
			if len(d) >= 7 {
				m.add(d, phiPhone, true, true)
				if len(d) == 11 && d[0] == '1' {
					m.add(d[1:], phiPhone, true, true)
				}
			} else {
				m.add(norm, phiPhone, len(norm) >= 4, len(norm) >= 5)
			}
		case phiEmail, phiURL:
			m.add(norm, p.kind, len(norm) >= 4, len(norm) >= 6)
		case phiAddress:
			m.add(norm, phiAddress, len(norm) >= 3, len(norm) >= 5)
		case phiLocation:
			m.add(norm, phiLocation, len(norm) >= 4, len(norm) >= 8)
		case phiBirthDate:
			if fd, ok := parseFHIRDate([]byte(p.value)); ok && fd.prec == precDay {
				m.birth = append(m.birth, []byte(p.value[:10]))
			}
		}
	}
	m.link()
	return m
}

func addNameWord(m *matcher, w string) {
	if len(w) < 2 || nameStopwords[w] {
		return
	}
	m.addWord(w)
	// Distinctive name words (with Synthea's digits, or long) are also found inside other words.
	m.add(w, phiName, true, countDigits(w) > 0 && len(w) >= 5 || len(w) >= 8)
	stripped := strings.TrimRight(w, "0123456789")
	if len(stripped) >= 2 && stripped != w && !nameStopwords[stripped] {
		m.addWord(stripped)
		m.add(stripped, phiName, true, len(stripped) >= 8)
	}
	if countDigits(w) == len(w) {
		delete(m.words, w) // a bare number is not a name word
	}
}

// splitWords returns the normalized alphanumeric runs of s.
func splitWords(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool {
		return r < 0x80 && !isAlnum(byte(r)) //nolint:gosec // G115: r < 0x80 fits in a byte
	}) {
		if w := normalize(f); w != "" {
			out = append(out, w)
		}
	}
	return out
}

func digitsOnly(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
