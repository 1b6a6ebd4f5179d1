package deid

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"mime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// kind is the treatment class of a compiled profile node.
type kind uint8

const (
	kDrop kind = iota
	kText
	kCode
	kNumber
	kDate
	kUID
	kObject
	kReference
	kIdentifier
	kAttachment
	kAddress
	kExtension
	kQuantity
	kBirthDate
	kDeceased
)

// node is one element of a compiled profile: what to do with a member and, for complex elements, its children.
type node struct {
	kind     kind
	array    bool
	path     string
	treat    string
	children map[string]*node
	known    map[string]bool // every member FHIR R4 defines here, to report dropped ones by name
	required []string
}

// Values the transformer writes.
const (
	// IdentifierSystem is the system of pseudonymous identifiers.
	IdentifierSystem = "urn:secondlook:deid:pseudonym"
	// AgeCategoryExtension marks a patient aged 90 or over, whose birth date is withheld.
	AgeCategoryExtension = "urn:secondlook:deid:age-category"
	// SecurityLabelSystem is the HL7 system of the PSEUDED and REDACTED labels.
	SecurityLabelSystem = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
)

const metaSecurity = `{"security":[{"system":"` + SecurityLabelSystem + `","code":"PSEUDED","display":"pseudonymized"},{"system":"` + SecurityLabelSystem + `","code":"REDACTED","display":"redacted"}]}`

type transformer struct {
	tp     *tape
	ix     *index
	prof   *Profile
	keys   *keyer
	m      *matcher
	shift  int
	age90  bool
	w      writer
	sc     scrubber
	report reportBuilder

	scratch        []byte
	ent            *entry
	entPos         int
	rt             string
	inAllowedExt   int
	err            error
	birthCollision bool
	attCache       map[string][]byte
	textCache      map[string]cachedText
	decBuf         []byte // reused for decoding attachments
	cleanCodes     map[string]struct{}
}

// cachedText is the scrubbed form of a short text that passed the residual scan.
type cachedText struct {
	out     string
	changed bool
}

// maxCachedText bounds the texts remembered by the transformer.
const maxCachedText = 256

func newTransformer(tp *tape, ix *index, prof *Profile, keys *keyer, m *matcher, shift int, now time.Time) *transformer {
	t := &transformer{tp: tp, ix: ix, prof: prof, keys: keys, m: m, shift: shift, report: newReportBuilder(), attCache: map[string][]byte{},
		textCache: map[string]cachedText{}, cleanCodes: map[string]struct{}{}}
	t.sc = scrubber{m: m, shift: shift, nowYear: now.Year(), uid: keys.uid}
	t.w.buf = make([]byte, 0, len(tp.in)/3+4096) // de-identified bundles are smaller than their input
	if ix.hasBirth {
		ref := now
		if ix.deceased != nil {
			ref = time.Date(ix.deceased.y, time.Month(max(ix.deceased.m, 1)), max(ix.deceased.d, 1), 0, 0, 0, 0, time.UTC)
		}
		t.age90 = ageAt(ix.birth, ref) >= 90
		if t.age90 {
			b := ix.birth
			t.sc.birth = &b
			t.report.r.AgeRule = "90 or older: birthDate withheld, age category 90+"
		} else {
			t.report.r.AgeRule = "under 90: birthDate shifted like every other date"
		}
	}
	return t
}

// run writes the collection Bundle.
func (t *transformer) run() ([]byte, error) {
	for k, v := range t.ix.typeIn {
		t.report.r.ResourcesIn[k] = v
	}
	for k, v := range t.ix.dropped {
		t.report.r.DroppedResources[k] = v
	}
	for _, w := range t.ix.warnings {
		t.report.warn(w)
	}
	w := &t.w
	w.open('{')
	w.name("resourceType")
	w.buf = append(w.buf, `"Bundle"`...)
	w.name("meta")
	w.buf = append(w.buf, metaSecurity...)
	w.name("type")
	w.buf = append(w.buf, `"collection"`...)
	m := w.mark()
	w.name("entry")
	w.open('[')
	seen := map[string]bool{}
	for i := range t.ix.entries {
		e := &t.ix.entries[i]
		if !e.inScope {
			continue
		}
		if e.pseudo == "" {
			e.pseudo = t.keys.pseudonym(e.identity)
		}
		if seen[e.pseudo] {
			t.report.r.DroppedResources["(duplicate)"]++
			continue
		}
		seen[e.pseudo] = true
		t.ent, t.entPos, t.rt = e, e.pos, e.rt
		em := w.mark()
		w.sep()
		w.open('{')
		w.name("fullUrl")
		w.buf = append(w.buf, `"urn:uuid:`...)
		w.buf = append(w.buf, e.pseudo...)
		w.buf = append(w.buf, '"')
		w.name("resource")
		ok := t.resource(e.node, t.prof.roots[e.rt], e.pseudo, false)
		w.close('}')
		if t.err != nil {
			return nil, t.err
		}
		if !ok {
			w.reset(em)
			continue
		}
		t.report.r.ResourcesOut[e.rt]++
		t.report.actN(actPseudonymized, t.prof.ids[e.rt])
	}
	if w.close(']') {
		w.reset(m)
	}
	w.close('}')
	if t.err != nil {
		return nil, t.err
	}
	return w.buf, nil
}

// pseudoOf returns the pseudonym of entry i (computed on first use).
func (t *transformer) pseudoOf(i int) string {
	e := &t.ix.entries[i]
	if e.pseudo == "" {
		e.pseudo = t.keys.pseudonym(e.identity)
	}
	return e.pseudo
}

// resource writes resource object ti under root.
func (t *transformer) resource(ti int32, root *node, id string, contained bool) bool {
	tp, w := t.tp, &t.w
	rt := t.rt
	if contained {
		rt = tp.memberStr(ti, "resourceType")
	}
	w.open('{')
	w.name("resourceType")
	w.buf, _ = jsontext.AppendQuote(w.buf, rt)
	w.name("id")
	w.buf, _ = jsontext.AppendQuote(w.buf, id)
	if !contained {
		w.name("meta")
		w.buf = append(w.buf, metaSecurity...)
	}
	if !contained && t.ent.contained != nil {
		cm := w.mark()
		w.name("contained")
		w.open('[')
		for _, lid := range t.ent.order {
			c := t.ent.contained[lid]
			if !c.inScope {
				t.report.act(actContained, rt+".contained")
				continue
			}
			im := w.mark()
			w.sep()
			if !t.resource(c.node, t.prof.roots[c.rt], c.newID, true) {
				w.reset(im)
			}
		}
		if w.close(']') {
			w.reset(cm)
		}
	}
	ageExtDone := false
	var scratch [64]byte
	deceasedDone := false
	for c := ti + 1; c < tp.nodes[ti].next; c = tp.nodes[c].next {
		name := tp.name(c, scratch[:0])
		switch string(name) {
		case "resourceType", "id", "contained":
			continue
		case "meta":
			t.report.act(actMeta, rt+".meta")
			continue
		case "text":
			t.report.act(actNarrative, rt+".text")
			continue
		case "extension":
			if rt == "Patient" && t.age90 && !contained {
				t.patientExtensions(c)
				ageExtDone = true
				continue
			}
		}
		if len(name) > 1 && name[0] == '_' {
			if base := root.children[string(name[1:])]; base != nil && base.kind != kBirthDate && base.kind != kDeceased {
				m := w.mark()
				w.name(string(name))
				if !t.primitiveExt(c) {
					w.reset(m)
				}
				continue
			}
		}
		child := root.children[string(name)]
		if child == nil {
			t.dropped(root, name)
			continue
		}
		switch child.kind {
		case kDeceased:
			if deceasedDone {
				continue
			}
			deceasedDone = true
			t.deceased(c)
			continue
		case kBirthDate:
			if t.age90 {
				t.report.actN(actBirthSuppressed, child)
				continue
			}
		}
		m := w.mark()
		w.name(string(name))
		if !t.value(child, c) {
			w.reset(m)
		}
		if t.err != nil {
			return false
		}
	}
	if rt == "Patient" && t.age90 && !contained && !ageExtDone {
		t.patientExtensions(-1)
	}
	w.close('}')
	return true
}

// patientExtensions writes Patient.extension with the age category of a patient aged 90 or over, followed by the
// allowed input extensions (node ext, or -1).
func (t *transformer) patientExtensions(ext int32) {
	w := &t.w
	w.name("extension")
	w.open('[')
	w.sep()
	w.buf = append(w.buf, `{"url":"`+AgeCategoryExtension+`","valueString":"90+"}`...)
	if ext >= 0 && t.tp.nodes[ext].kind == '[' {
		for c := ext + 1; c < t.tp.nodes[ext].next; c = t.tp.nodes[c].next {
			m := w.mark()
			w.sep()
			if !t.value(t.prof.ext, c) {
				w.reset(m)
			}
		}
	}
	w.close(']')
}

// deceased writes a deceased flag without a date.
func (t *transformer) deceased(c int32) {
	n := t.tp.nodes[c]
	w := &t.w
	switch n.kind {
	case 't', 'f':
		w.name("deceasedBoolean")
		w.buf = append(w.buf, t.tp.raw(c)...)
	case '"':
		w.name("deceasedBoolean")
		w.buf = append(w.buf, "true"...)
		t.report.act(actDeceased, "Patient.deceasedDateTime")
	}
}

// dropped counts a member the profile does not list.
func (t *transformer) dropped(parent *node, name []byte) {
	switch string(name) {
	case "identifier":
		t.report.act(actIdentifier, parent.path+".identifier")
		return
	case "name":
		if parent.known["name"] {
			t.report.act(actName, parent.path+".name")
			return
		}
	case "telecom":
		t.report.act(actTelecom, parent.path+".telecom")
		return
	case "extension", "modifierExtension":
		t.report.act(actExtension, parent.path+"."+string(name))
		return
	}
	n := strings.TrimPrefix(string(name), "_")
	if parent.known[n] {
		t.report.drop(parent.path + "." + string(name))
	} else {
		t.report.drop(parent.path + ".(element not in FHIR R4)")
	}
}

// value writes the value of node c under profile node n, returning false when nothing was written.
func (t *transformer) value(n *node, c int32) bool {
	tn := t.tp.nodes[c]
	if n.array && n.kind != kUID {
		if tn.kind != '[' {
			// Tolerate a single value where FHIR wants an array.
			return t.one(n, c)
		}
		w := &t.w
		w.open('[')
		for e := c + 1; e < tn.next; e = t.tp.nodes[e].next {
			m := w.mark()
			w.sep()
			if !t.one(n, e) {
				w.reset(m)
			}
			if t.err != nil {
				break
			}
		}
		return !w.close(']')
	}
	if tn.kind == '[' {
		t.report.actN(actTypeMismatch, n)
		return false
	}
	return t.one(n, c)
}

// one writes a single (non-array) value.
func (t *transformer) one(n *node, c int32) bool {
	tn := t.tp.nodes[c]
	w := &t.w
	switch n.kind {
	case kText:
		if tn.kind != '"' {
			return t.mismatch(n, tn)
		}
		s := t.tp.str(c, t.scratch)
		if r, ok := t.textCache[string(s)]; ok {
			// The same short text was scrubbed and scanned before (displays and codes repeat a lot).
			if r.changed {
				t.report.actN(actTextScrubbed, n)
				w.buf, _ = jsontext.AppendQuote(w.buf, r.out)
				return true
			}
			w.buf = append(w.buf, t.tp.raw(c)...)
			return true
		}
		out, changed := t.sc.scrub(s)
		if changed {
			t.report.actN(actTextScrubbed, n)
		}
		ok := t.emitText(n, c, out, changed)
		if ok && t.err == nil && len(s) <= maxCachedText && !t.tp.nodes[c].esc {
			t.textCache[string(s)] = cachedText{out: string(out), changed: changed}
		}
		return ok
	case kCode:
		if tn.kind != '"' {
			return t.mismatch(n, tn)
		}
		s := t.tp.str(c, t.scratch)
		if _, ok := t.cleanCodes[string(s)]; ok && !tn.esc {
			w.buf = append(w.buf, t.tp.raw(c)...)
			return true
		}
		ok := t.emitText(n, c, s, false)
		if ok && t.err == nil && len(s) <= maxCachedText && !tn.esc {
			t.cleanCodes[string(s)] = struct{}{}
		}
		return ok
	case kNumber:
		switch tn.kind {
		case '0', 't', 'f':
			raw := t.tp.raw(c)
			if len(raw) >= 7 {
				if k := t.m.residual(raw); k != phiNone {
					t.fail(n, k)
					return false
				}
			}
			w.buf = append(w.buf, raw...)
			return true
		}
		return t.mismatch(n, tn)
	case kDate, kBirthDate:
		if tn.kind != '"' {
			return t.mismatch(n, tn)
		}
		fd, ok := parseFHIRDate(t.tp.str(c, t.scratch))
		if !ok {
			t.report.actN(actDateDropped, n)
			return false
		}
		start := len(w.buf)
		w.buf = append(w.buf, '"')
		w.buf = appendShifted(w.buf, fd, t.shift)
		w.buf = append(w.buf, '"')
		t.report.actN(actDateShifted, n)
		// A shifted date is built from parsed numbers: only a coincidence with the true birth date can make it
		// identifying (Deidentify then retries with the next keyed shift).
		if t.m.isBirthDate(w.buf[start:]) {
			t.birthCollision = true
			t.fail(n, phiBirthDate)
			return false
		}
		return true
	case kUID:
		if tn.kind != '"' {
			return t.mismatch(n, tn)
		}
		w.buf = append(w.buf, '"')
		w.buf = append(w.buf, t.keys.uid(string(t.tp.str(c, t.scratch)))...)
		w.buf = append(w.buf, '"')
		t.report.actN(actUID, n)
		return true
	case kObject, kQuantity, kExtension, kReference, kIdentifier, kAttachment, kAddress:
		if tn.kind != '{' {
			return t.mismatch(n, tn)
		}
		switch n.kind {
		case kReference:
			return t.reference(n, c)
		case kIdentifier:
			return t.identifier(n, c)
		case kAttachment:
			return t.attachment(n, c)
		case kAddress:
			return t.address(n, c)
		}
		return t.object(n, c)
	}
	return false
}

func (t *transformer) mismatch(n *node, tn tnode) bool {
	if tn.kind != 'n' {
		t.report.actN(actTypeMismatch, n)
	}
	return false
}

// emitText writes a string after the residual scan. Unchanged strings without escapes are copied verbatim.
func (t *transformer) emitText(n *node, c int32, s []byte, changed bool) bool {
	if k := t.m.residual(s); k != phiNone {
		t.birthCollision = k == phiBirthDate
		t.fail(n, k)
		return false
	}
	if len(s) == 0 {
		return false
	}
	if !changed && !t.tp.nodes[c].esc {
		t.w.buf = append(t.w.buf, t.tp.raw(c)...)
		return true
	}
	t.w.buf, _ = jsontext.AppendQuote(t.w.buf, s)
	return true
}

// fail records the first residual finding.
func (t *transformer) fail(n *node, k phiKind) {
	if t.err == nil {
		path := n.path
		if t.ix.rootIsBdl {
			path = fmt.Sprintf("Bundle.entry[%d].resource.%s", t.entPos, path)
		}
		t.err = &ResidualError{Path: path, Kind: k.String()}
	}
}

// object writes a complex or backbone element, keeping only the children the profile lists.
func (t *transformer) object(n *node, c int32) bool {
	tp, w := t.tp, &t.w
	isExt := n.kind == kExtension
	if isExt {
		url := tp.memberStr(c, "url")
		if t.inAllowedExt == 0 && !t.prof.extensions[url] {
			t.report.actN(actExtension, n)
			return false
		}
		t.inAllowedExt++
		defer func() { t.inAllowedExt-- }()
	}
	if !isExt && hasModifierExtension(tp, c) {
		// A modifier extension changes the meaning of its element; unknown, the element cannot be kept.
		t.report.actN(actModifierExt, n)
		return false
	}
	capAge := n.kind == kQuantity && t.isAge90(c)
	var emitted []string
	kept := 0
	w.open('{')
	if isExt {
		url := tp.memberStr(c, "url")
		if !t.prof.extensions[url] {
			// A relative url of a sub-extension comes from the input: it is scanned like any string.
			if k := t.m.residual([]byte(url)); k != phiNone {
				t.fail(n, k)
				w.close('}')
				return false
			}
		}
		w.name("url")
		w.buf, _ = jsontext.AppendQuote(w.buf, url)
	}
	var scratch [64]byte
	for m := c + 1; m < tp.nodes[c].next; m = tp.nodes[m].next {
		name := tp.name(m, scratch[:0])
		if isExt && string(name) == "url" {
			continue
		}
		if capAge {
			switch string(name) {
			case "value":
				w.name("value")
				w.buf = append(w.buf, "90"...)
				w.name("comparator")
				w.buf = append(w.buf, `">="`...)
				t.report.actN(actAgeCapped, n)
				kept++
				continue
			case "comparator":
				continue
			}
		}
		if len(name) > 1 && name[0] == '_' {
			if base := n.children[string(name[1:])]; base != nil {
				mk := w.mark()
				w.name(string(name))
				if !t.primitiveExt(m) {
					w.reset(mk)
				}
				continue
			}
		}
		child := n.children[string(name)]
		if child == nil {
			t.dropped(n, name)
			continue
		}
		mk := w.mark()
		w.name(string(name))
		if !t.value(child, m) {
			w.reset(mk)
		} else {
			kept++
			if n.required != nil {
				emitted = append(emitted, string(name))
			}
		}
		if t.err != nil {
			break
		}
	}
	empty := w.close('}')
	if isExt && kept == 0 {
		return false // an extension with only its url carries nothing
	}
	for _, r := range n.required {
		found := false
		for _, e := range emitted {
			if e == r || strings.HasPrefix(e, strings.TrimSuffix(r, "[x]")) && strings.HasSuffix(r, "[x]") {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return !empty
}

// isAge90 reports whether Quantity object c is an age in years (or months, weeks, days) of 90 or more.
func (t *transformer) isAge90(c int32) bool {
	tp := t.tp
	v, code, unitN := int32(-1), int32(-1), int32(-1)
	var scratch [16]byte
	for m := c + 1; m < tp.nodes[c].next; m = tp.nodes[m].next {
		switch string(tp.name(m, scratch[:0])) {
		case "value":
			v = m
		case "code":
			code = m
		case "unit":
			unitN = m
		}
	}
	if v < 0 || tp.nodes[v].kind != '0' {
		return false
	}
	var unitBuf [16]byte
	unit := unitBuf[:0]
	switch {
	case code >= 0 && tp.nodes[code].kind == '"' && tp.nodes[code].end-tp.nodes[code].start > 2:
		unit = append(unit, tp.str(code, nil)...)
	case unitN >= 0 && tp.nodes[unitN].kind == '"':
		for _, b := range tp.str(unitN, nil) {
			unit = append(unit, lower(b))
		}
	}
	if len(unit) == 0 || len(unit) > 6 {
		return false
	}
	switch string(unit) {
	case "a", "yr", "yrs", "year", "years", "y", "ans", "mo", "month", "months", "wk", "week", "weeks", "d", "day", "days":
	default:
		return false
	}
	f, err := strconv.ParseFloat(string(tp.raw(v)), 64)
	if err != nil {
		return false
	}
	switch string(unit) {
	case "a", "yr", "yrs", "year", "years", "y", "ans":
		return f >= 90
	case "mo", "month", "months":
		return f >= 90*12
	case "wk", "week", "weeks":
		return f >= 90*52
	case "d", "day", "days":
		return f >= 90*365
	}
	return false
}

// primitiveExt writes a primitive's "_name" sibling: only allowed extensions survive.
func (t *transformer) primitiveExt(c int32) bool {
	tp, w := t.tp, &t.w
	one := func(e int32) bool {
		if tp.nodes[e].kind != '{' {
			return false
		}
		x := tp.member(e, "extension")
		if x < 0 {
			return false
		}
		w.open('{')
		m := w.mark()
		w.name("extension")
		if !t.value(t.prof.ext, x) {
			w.reset(m)
		}
		return !w.close('}')
	}
	switch tp.nodes[c].kind {
	case '{':
		return one(c)
	case '[':
		w.open('[')
		kept := false
		for e := c + 1; e < tp.nodes[c].next; e = tp.nodes[e].next {
			w.sep()
			m := len(w.buf)
			if one(e) {
				kept = true
			} else {
				w.buf = append(w.buf[:m], "null"...)
			}
		}
		w.close(']')
		return kept
	}
	return false
}

// resolve maps an input reference to its output form: the entry index of the target (>= 0), or a local
// "#id" reference, or ok == false when the target is not in the output.
func (t *transformer) resolve(ref []byte) (idx int, local string, ok bool) {
	if len(ref) == 0 {
		return -1, "", false
	}
	if ref[0] == '#' {
		if len(ref) == 1 {
			return -1, "#", true
		}
		if t.ent != nil && t.ent.contained != nil {
			if c, found := t.ent.contained[string(ref[1:])]; found && c.inScope {
				return -1, "#" + c.newID, true
			}
		}
		return -1, "", false
	}
	idx, ok = t.ix.byFullURL[string(ref)]
	if !ok {
		r := ref
		if k := bytes.Index(r, []byte("/_history/")); k >= 0 {
			r = r[:k]
		}
		if idx, ok = t.ix.byFullURL[string(r)]; !ok {
			// The last two segments: Type/id.
			if k := bytes.LastIndexByte(r, '/'); k > 0 {
				k2 := bytes.LastIndexByte(r[:k], '/') // -1 for a relative "Type/id"
				idx, ok = t.ix.byTypeID[string(r[k2+1:])]
			}
		}
	}
	if !ok || !t.ix.entries[idx].inScope {
		return -1, "", false
	}
	return idx, "", true
}

// reference writes a Reference: only a resolving reference (and its type) survive; display, identifier and
// extensions are removed.
func (t *transformer) reference(n *node, c int32) bool {
	tp, w := t.tp, &t.w
	var scratch [32]byte
	ref, typ := int32(-1), int32(-1)
	for m := c + 1; m < tp.nodes[c].next; m = tp.nodes[m].next {
		switch string(tp.name(m, scratch[:0])) {
		case "reference":
			ref = m
		case "type":
			typ = m
		case "display":
			t.report.actN(actDisplayRemoved, n)
		case "identifier":
			t.report.act(actIdentifier, n.path+".identifier")
		}
	}
	idx, local, ok := -1, "", false
	if ref >= 0 && tp.nodes[ref].kind == '"' {
		idx, local, ok = t.resolve(tp.str(ref, t.scratch))
	}
	if !ok {
		t.report.actN(actRefRemoved, n)
		return false
	}
	w.open('{')
	w.name("reference")
	if idx >= 0 {
		w.buf = append(w.buf, `"urn:uuid:`...)
		w.buf = append(w.buf, t.pseudoOf(idx)...)
		w.buf = append(w.buf, '"')
	} else {
		w.buf, _ = jsontext.AppendQuote(w.buf, local)
	}
	if typ >= 0 && tp.nodes[typ].kind == '"' && allR4Types[string(tp.str(typ, t.scratch))] {
		w.name("type")
		w.buf = append(w.buf, tp.raw(typ)...)
	}
	w.close('}')
	t.report.actN(actRefPseudonymized, n)
	return true
}

// identifier writes a pseudonymous identifier or a DICOM UID identifier, or nothing.
func (t *transformer) identifier(n *node, c int32) bool {
	tp, w := t.tp, &t.w
	sys, val := tp.memberStr(c, "system"), tp.memberStr(c, "value")
	switch n.treat {
	case TreatUID:
		if val == "" || !(sys == "urn:dicom:uid" || strings.HasPrefix(val, "urn:oid:")) {
			t.report.actN(actIdentifier, n)
			return false
		}
		w.open('{')
		w.name("system")
		w.buf = append(w.buf, `"urn:dicom:uid"`...)
		w.name("value")
		w.buf = append(w.buf, `"urn:oid:`...)
		w.buf = append(w.buf, t.keys.uid(val)...)
		w.buf = append(w.buf, '"')
		w.close('}')
		t.report.actN(actUID, n)
		return true
	case TreatPseudonymize:
		if val == "" {
			return false
		}
		w.open('{')
		w.name("system")
		w.buf = append(w.buf, `"`+IdentifierSystem+`"`...)
		w.name("value")
		w.buf = append(w.buf, '"')
		w.buf = append(w.buf, t.keys.pseudonym("identifier|"+sys+"|"+val)...)
		w.buf = append(w.buf, '"')
		w.close('}')
		t.report.actN(actIdentifierPseudo, n)
		return true
	}
	t.report.actN(actIdentifier, n)
	return false
}

// restrictedZIP3 are the 3-digit ZIP prefixes with 20,000 people or fewer (HHS Safe Harbor guidance, 2000
// census), which become "000".
var restrictedZIP3 = map[string]bool{
	"036": true, "059": true, "063": true, "102": true, "203": true, "556": true, "692": true, "790": true,
	"821": true, "823": true, "830": true, "831": true, "878": true, "879": true, "884": true, "890": true,
	"893": true,
}

// generalizePostal returns the forward sortation area of a Canadian postal code, the 3-digit prefix of a US
// ZIP code (000 for restricted prefixes), or "" for anything else.
func generalizePostal(pc, country string) string {
	p := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(pc), " ", ""))
	if len(p) == 6 && isLetter(p[0]) && isDigit(p[1]) && isLetter(p[2]) && isDigit(p[3]) && isLetter(p[4]) && isDigit(p[5]) && contains(canadianFirst, p[0]) {
		return p[:3]
	}
	if len(p) == 7 && p[3] == '-' {
		return generalizePostal(p[:3]+p[4:], country)
	}
	if (len(p) == 5 || len(p) == 10 && p[5] == '-' || len(p) == 9) && allDigits(p[:5]) {
		z := p[:3]
		if restrictedZIP3[z] {
			return "000"
		}
		return z
	}
	return ""
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

// address writes state or province, country and the generalized postal code; everything else is removed.
func (t *transformer) address(n *node, c int32) bool {
	tp, w := t.tp, &t.w
	w.open('{')
	for _, k := range []string{"use", "type"} {
		if v := tp.memberStr(c, k); v != "" && len(v) < 20 && allLetters(v) && t.m.residual([]byte(v)) == phiNone {
			w.name(k)
			w.buf, _ = jsontext.AppendQuote(w.buf, v)
		}
	}
	country := tp.memberStr(c, "country")
	if s := tp.memberStr(c, "state"); s != "" {
		if k := t.m.residual([]byte(s)); k == phiNone {
			w.name("state")
			w.buf, _ = jsontext.AppendQuote(w.buf, s)
		}
	}
	if pc := generalizePostal(tp.memberStr(c, "postalCode"), country); pc != "" {
		w.name("postalCode")
		w.buf, _ = jsontext.AppendQuote(w.buf, pc)
	}
	if country != "" {
		if k := t.m.residual([]byte(country)); k == phiNone {
			w.name("country")
			w.buf, _ = jsontext.AppendQuote(w.buf, country)
		}
	}
	t.report.actN(actAddress, n)
	return !w.close('}')
}

func allLetters(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isLetter(s[i]) {
			return false
		}
	}
	return true
}

// attachment writes a text attachment with its decoded content scrubbed; other attachments, URLs, sizes and
// hashes are dropped.
func (t *transformer) attachment(n *node, c int32) bool {
	tp, w := t.tp, &t.w
	ct := tp.memberStr(c, "contentType")
	mediaType, params, err := mime.ParseMediaType(ct)
	isText := err == nil && strings.HasPrefix(mediaType, "text/")
	if cs := strings.ToLower(params["charset"]); cs != "" && cs != "utf-8" && cs != "us-ascii" && cs != "utf8" {
		isText = false
	}
	if tp.member(c, "url") >= 0 {
		t.report.actN(actAttURL, n)
	}
	d := tp.member(c, "data")
	if d < 0 || tp.nodes[d].kind != '"' || !isText {
		t.report.act(actAttDropped, n.path+" ("+contentFamily(mediaType)+")")
		return false
	}
	out, ok := t.attachmentData(n, d)
	if t.err != nil {
		return false
	}
	if !ok {
		t.report.act(actAttDropped, n.path+" (undecodable text)")
		return false
	}
	// The content type is rebuilt from its type and charset: other parameters (name=, filename=) are dropped.
	ctOut := mediaType
	if cs := params["charset"]; cs != "" {
		ctOut = mime.FormatMediaType(mediaType, map[string]string{"charset": strings.ToLower(cs)})
	}
	if k := t.m.residual([]byte(ctOut)); k != phiNone {
		t.fail(n, k)
		return false
	}
	w.open('{')
	w.name("contentType")
	w.buf, _ = jsontext.AppendQuote(w.buf, ctOut)
	if lang := tp.member(c, "language"); lang >= 0 && tp.nodes[lang].kind == '"' {
		w.name("language")
		t.emitText(n, lang, tp.str(lang, nil), false)
	}
	w.name("data")
	w.buf = append(w.buf, out...)
	for _, k := range []string{"title", "creation"} {
		if m := tp.member(c, k); m >= 0 {
			child := &node{kind: kText, path: n.path + "." + k}
			if k == "creation" {
				child.kind = kDate
			}
			mk := w.mark()
			w.name(k)
			if !t.value(child, m) {
				w.reset(mk)
			}
		}
	}
	w.close('}')
	return true
}

// attachmentData decodes, scrubs, scans and re-encodes base64 text; identical inputs are done once.
func (t *transformer) attachmentData(n *node, d int32) ([]byte, bool) {
	raw := t.tp.raw(d)
	if out, ok := t.attCache[string(raw)]; ok {
		t.report.actN(actAttScrubbed, n)
		return out, out != nil
	}
	src := t.tp.str(d, nil)
	if need := base64.StdEncoding.DecodedLen(len(src)); cap(t.decBuf) < need {
		t.decBuf = make([]byte, need)
	}
	dec := t.decBuf[:base64.StdEncoding.DecodedLen(len(src))]
	nn, err := base64.StdEncoding.Decode(dec, src)
	if err != nil || !utf8.Valid(dec[:nn]) {
		t.attCache[string(raw)] = nil
		return nil, false
	}
	text, _ := t.sc.scrub(dec[:nn])
	if k := t.m.residual(text); k != phiNone {
		t.birthCollision = k == phiBirthDate
		t.fail(&node{path: n.path + ".data(decoded)"}, k)
		return nil, false
	}
	out := make([]byte, 0, base64.StdEncoding.EncodedLen(len(text))+2)
	out = append(out, '"')
	out = base64.StdEncoding.AppendEncode(out, text)
	out = append(out, '"')
	t.attCache[string(raw)] = out
	t.report.actN(actAttScrubbed, n)
	return out, true
}

func contentFamily(mt string) string {
	fam, _, _ := strings.Cut(mt, "/")
	switch fam {
	case "application", "image", "audio", "video", "text", "multipart", "model", "font":
		return fam + "/*"
	}
	return "unknown"
}

// writer appends JSON to a buffer and can roll back a member that turned out empty.
type writer struct {
	buf   []byte
	first []bool
}

type mark struct {
	n     int
	first bool
}

func (w *writer) mark() mark { return mark{len(w.buf), w.first[len(w.first)-1]} }

func (w *writer) reset(m mark) {
	w.buf = w.buf[:m.n]
	w.first[len(w.first)-1] = m.first
}

// sep writes the comma before a member or element.
func (w *writer) sep() {
	top := len(w.first) - 1
	if !w.first[top] {
		w.buf = append(w.buf, ',')
	}
	w.first[top] = false
}

// name writes a member name (FHIR element names need no escaping).
func (w *writer) name(n string) {
	w.sep()
	w.buf = append(w.buf, '"')
	w.buf = append(w.buf, n...)
	w.buf = append(w.buf, '"', ':')
}

func (w *writer) open(c byte) {
	w.buf = append(w.buf, c)
	w.first = append(w.first, true)
}

// close ends a container and reports whether it was empty.
func (w *writer) close(c byte) bool {
	top := len(w.first) - 1
	empty := w.first[top]
	w.first = w.first[:top]
	w.buf = append(w.buf, c)
	return empty
}
