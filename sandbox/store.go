package sandbox

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Limits on what a site loads. The sandbox reads trusted fixtures, but every outside input still gets a bound.
const (
	maxIDLength        = 64 // FHIR id: [A-Za-z0-9\-\.]{1,64}
	maxResourcesPerRun = 1_000_000
)

// resource is one stored resource with everything a search needs already extracted, so that searching never
// parses JSON again.
type resource struct {
	typ, id string
	// raw is the compact JSON of the resource as served. The site's base URL (only known per request) is inserted
	// at each offset in holes; the externalized attachment URLs are the only holes.
	raw   []byte
	holes []int

	patient string              // id of the Patient the resource belongs to through subject/patient, or ""
	subject []string            // subject references as Type/id
	tokens  map[string][]coding // token parameter name -> indexed codings (identifier: system and value)
	dates   map[string][]span   // date parameter name -> indexed ranges
	strs    map[string][]string // string parameter name -> indexed strings (Patient name parts)
	results []string            // DiagnosticReport.result references as Type/id
	binary  *binaryContent      // decoded content of a Binary
	// attachmentOf is the type of the resource whose attachment this Binary was split from, or "".
	attachmentOf string
}

type coding struct{ system, code string }

type binaryContent struct {
	contentType string
	data        []byte
}

// typeStore holds one resource type of one site.
type typeStore struct {
	byID      map[string]*resource
	all       []*resource            // sorted by id
	byPatient map[string][]*resource // patient id -> that patient's resources, sorted by id
}

// store is the content of one site. It is built once by loadStore and never modified afterwards, so requests read
// it without locking.
type store struct {
	types map[string]*typeStore
}

func (s *store) get(typ, id string) *resource {
	ts := s.types[typ]
	if ts == nil {
		return nil
	}
	return ts.byID[id]
}

type bundleEntryJSON struct {
	FullURL  string         `json:"fullUrl"`
	Resource jsontext.Value `json:"resource"`
}

type bundleJSON struct {
	ResourceType string            `json:"resourceType"`
	Type         string            `json:"type"`
	Entry        []bundleEntryJSON `json:"entry"`
}

type identifierJSON struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

type resourceHeadJSON struct {
	ResourceType string         `json:"resourceType"`
	ID           string         `json:"id"`
	Identifier   jsontext.Value `json:"identifier"`
}

// pending is a resource read from a bundle whose references are not yet resolved.
type pending struct {
	typ, id string
	raw     []byte
	idents  []identifierJSON
}

// loadStore loads bundles the way a FHIR server processes transactions: every resource is stored under its type
// and id (a later duplicate replaces an earlier one), references to bundle fullUrls become Type/id, and
// conditional references Type?identifier=system|value become Type/id when exactly one loaded resource of that type
// carries the identifier. With externalize, inline attachment data moves into Binary resources.
func loadStore(bundles [][]byte, externalize bool) (*store, error) {
	urls := map[string]string{} // fullUrl -> Type/id
	latest := map[string]*pending{}
	for i, b := range bundles {
		var bj bundleJSON
		if err := json.Unmarshal(b, &bj); err != nil {
			return nil, fmt.Errorf("parse bundle %d: %w", i, err)
		}
		if bj.ResourceType != "Bundle" {
			return nil, fmt.Errorf("parse bundle %d: resourceType is not Bundle", i)
		}
		switch bj.Type {
		case "transaction", "batch", "collection":
		default:
			return nil, fmt.Errorf("parse bundle %d: unsupported bundle type %q", i, bj.Type)
		}
		for j, e := range bj.Entry {
			if len(e.Resource) == 0 {
				continue // e.g. a DELETE entry; nothing to store
			}
			p, err := readPending(e)
			if err != nil {
				return nil, fmt.Errorf("parse bundle %d entry %d: %w", i, j, err)
			}
			key := p.typ + "/" + p.id
			if e.FullURL != "" {
				urls[e.FullURL] = key
			}
			latest[key] = p
			if len(latest) > maxResourcesPerRun {
				return nil, fmt.Errorf("load bundles: more than %d resources", maxResourcesPerRun)
			}
		}
	}

	idents := identifierIndex(latest)
	resolve := func(ref string) (string, bool) {
		if to, ok := urls[ref]; ok {
			return to, true
		}
		return resolveConditional(ref, idents)
	}

	st := &store{types: map[string]*typeStore{}}
	keys := make([]string, 0, len(latest))
	for k := range latest {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p := latest[k]
		raw, err := rewriteReferences(p.raw, resolve)
		if err != nil {
			return nil, fmt.Errorf("rewrite references of %s: %w", p.typ, err)
		}
		r := &resource{typ: p.typ, id: p.id}
		indexResource(r, raw)
		if externalize && (r.typ == "DiagnosticReport" || r.typ == "DocumentReference") {
			var bins []*resource
			raw, bins, err = externalizeAttachments(r, raw)
			if err != nil {
				return nil, fmt.Errorf("externalize attachments of %s: %w", p.typ, err)
			}
			for _, b := range bins {
				st.add(b)
			}
		}
		r.raw, r.holes = extractHoles(raw)
		st.add(r)
	}
	for _, ts := range st.types {
		ts.finish()
	}
	return st, nil
}

func readPending(e bundleEntryJSON) (*pending, error) {
	var h resourceHeadJSON
	if err := json.Unmarshal(e.Resource, &h); err != nil {
		return nil, fmt.Errorf("parse resource: %w", err)
	}
	if !validType(h.ResourceType) {
		return nil, errors.New("resource has no valid resourceType")
	}
	raw := []byte(e.Resource)
	if h.ID == "" {
		// A transaction may omit ids; assign the urn:uuid from fullUrl as a server would assign one.
		uuid, ok := strings.CutPrefix(e.FullURL, "urn:uuid:")
		if !ok {
			return nil, errors.New("resource has no id and fullUrl is not a urn:uuid")
		}
		h.ID = uuid
		var err error
		if raw, err = setMember(raw, "id", jsontext.Value(quote(uuid))); err != nil {
			return nil, fmt.Errorf("assign id: %w", err)
		}
	}
	if !validID(h.ID) {
		return nil, errors.New("resource id is not a valid FHIR id")
	}
	p := &pending{typ: h.ResourceType, id: h.ID, raw: raw}
	if len(h.Identifier) > 0 && h.Identifier.Kind() == '[' {
		_ = json.Unmarshal(h.Identifier, &p.idents) // an identifier of unexpected shape is simply not indexed
	}
	return p, nil
}

func (s *store) add(r *resource) {
	ts := s.types[r.typ]
	if ts == nil {
		ts = &typeStore{byID: map[string]*resource{}}
		s.types[r.typ] = ts
	}
	ts.byID[r.id] = r
}

// finish builds the sorted lists once every resource of the type is known.
func (ts *typeStore) finish() {
	ts.all = make([]*resource, 0, len(ts.byID))
	for _, r := range ts.byID {
		ts.all = append(ts.all, r)
	}
	slices.SortFunc(ts.all, func(a, b *resource) int { return strings.Compare(a.id, b.id) })
	ts.byPatient = map[string][]*resource{}
	for _, r := range ts.all {
		if r.patient != "" {
			ts.byPatient[r.patient] = append(ts.byPatient[r.patient], r)
		}
	}
}

// identifierIndex maps type -> "system|value" (and "|value" keys for system-less lookups, see resolveConditional)
// -> ids of the resources carrying that identifier.
func identifierIndex(latest map[string]*pending) map[string]map[string][]string {
	idx := map[string]map[string][]string{}
	for _, p := range latest {
		for _, id := range p.idents {
			if id.Value == "" {
				continue
			}
			m := idx[p.typ]
			if m == nil {
				m = map[string][]string{}
				idx[p.typ] = m
			}
			for _, k := range []string{id.System + "|" + id.Value, "\x00" + id.Value} {
				if !slices.Contains(m[k], p.id) {
					m[k] = append(m[k], p.id)
				}
			}
		}
	}
	return idx
}

// resolveConditional resolves Type?identifier=[system|]value to Type/id when exactly one loaded resource matches.
// Anything else (other criteria, no match, several matches) leaves the reference as it is.
func resolveConditional(ref string, idx map[string]map[string][]string) (string, bool) {
	typ, query, ok := strings.Cut(ref, "?")
	if !ok || !validType(typ) {
		return "", false
	}
	name, value, ok := strings.Cut(query, "=")
	if !ok || name != "identifier" || strings.ContainsAny(value, "&,") {
		return "", false
	}
	value, err := url.PathUnescape(value)
	if err != nil {
		return "", false
	}
	key := "\x00" + value
	if strings.Contains(value, "|") {
		key = value
	}
	ids := idx[typ][key]
	if len(ids) != 1 {
		return "", false
	}
	return typ + "/" + ids[0], true
}

// rewriteReferences streams a resource through a decoder and encoder, replacing the string value of every
// "reference" member (at any depth: contained resources, extensions, nested backbone elements) for which resolve
// reports a replacement. Everything else is copied token by token; numbers keep their exact text.
func rewriteReferences(raw []byte, resolve func(string) (string, bool)) ([]byte, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(raw))
	var out bytes.Buffer
	out.Grow(len(raw))
	enc := jsontext.NewEncoder(&out)
	type frame struct {
		object   bool
		wantName bool
		name     string
	}
	var stack []frame
	for {
		tok, err := dec.ReadToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read token: %w", err)
		}
		k := tok.Kind()
		top := len(stack) - 1
		if k == '"' && top >= 0 && stack[top].object && stack[top].wantName {
			stack[top].name = tok.String()
			stack[top].wantName = false
			if err := enc.WriteToken(tok); err != nil {
				return nil, fmt.Errorf("write token: %w", err)
			}
			continue
		}
		switch k {
		case '{':
			stack = append(stack, frame{object: true, wantName: true})
		case '[':
			stack = append(stack, frame{})
		case '}', ']':
			stack = stack[:top]
		case '"':
			if top >= 0 && stack[top].object && stack[top].name == "reference" {
				if to, ok := resolve(tok.String()); ok {
					tok = jsontext.String(to)
				}
			}
		}
		if err := enc.WriteToken(tok); err != nil {
			return nil, fmt.Errorf("write token: %w", err)
		}
		if k != '{' && k != '[' {
			// A value just ended; in an object the next token is a member name.
			if t := len(stack) - 1; t >= 0 && stack[t].object {
				stack[t].wantName = true
			}
		}
	}
	return bytes.TrimRight(out.Bytes(), "\n"), nil
}

// baseHole marks, inside a JSON string, where the per-request base URL goes. A raw NUL byte cannot occur in
// valid JSON text, so the marker can never collide with loaded content.
const baseHole = "\x00"

// extractHoles removes the base markers and returns their offsets.
func extractHoles(b []byte) ([]byte, []int) {
	if bytes.IndexByte(b, 0) < 0 {
		return b, nil
	}
	out := make([]byte, 0, len(b))
	var holes []int
	for {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			return append(out, b...), holes
		}
		out = append(out, b[:i]...)
		holes = append(holes, len(out))
		b = b[i+1:]
	}
}

// externalizeAttachments moves inline Attachment.data of DiagnosticReport.presentedForm and
// DocumentReference.content.attachment into Binary resources, replacing data with url <base>/Binary/<id> as
// Epic and Cerner do. Attachments whose data is not valid base64 stay inline.
func externalizeAttachments(r *resource, raw []byte) ([]byte, []*resource, error) {
	var bins []*resource
	n := 0
	move := func(att jsontext.Value) (jsontext.Value, error) {
		members, err := readObject(att)
		if err != nil {
			return nil, err
		}
		var data, contentType string
		for _, m := range members {
			switch m.name {
			case "data":
				_ = json.Unmarshal(m.value, &data)
			case "contentType":
				_ = json.Unmarshal(m.value, &contentType)
			}
		}
		decoded, err := base64.StdEncoding.DecodeString(data)
		if data == "" || err != nil {
			return att, nil
		}
		if contentType == "" {
			contentType = "application/octet-stream"
		}
		id := fmt.Sprintf("%s-%d", r.id, n)
		if len(id) > maxIDLength {
			id = fmt.Sprintf("%s-%d", r.id[:maxIDLength-8], n)
		}
		n++
		bin, err := json.Marshal(struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
			ContentType  string `json:"contentType"`
			Data         string `json:"data"`
		}{"Binary", id, contentType, data})
		if err != nil {
			return nil, fmt.Errorf("encode Binary: %w", err)
		}
		bins = append(bins, &resource{typ: "Binary", id: id, raw: bin, patient: r.patient, attachmentOf: r.typ,
			binary: &binaryContent{contentType: contentType, data: decoded}})
		out := make([]member, 0, len(members))
		for _, m := range members {
			switch m.name {
			case "url":
				continue
			case "data":
				url := `"` + baseHole + `/Binary/` + id + `"`
				out = append(out, member{name: "url", value: jsontext.Value(url)})
			default:
				out = append(out, m)
			}
		}
		return writeObject(out), nil
	}
	var err error
	switch r.typ {
	case "DiagnosticReport":
		raw, err = mapMember(raw, "presentedForm", func(v jsontext.Value) (jsontext.Value, error) {
			return mapArray(v, move)
		})
	case "DocumentReference":
		raw, err = mapMember(raw, "content", func(v jsontext.Value) (jsontext.Value, error) {
			return mapArray(v, func(content jsontext.Value) (jsontext.Value, error) {
				return mapMember(content, "attachment", move)
			})
		})
	}
	if err != nil {
		return nil, nil, err
	}
	return raw, bins, nil
}

// member is one name/value pair of a JSON object, kept in document order.
type member struct {
	name  string
	value jsontext.Value
}

func readObject(v jsontext.Value) ([]member, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(v))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return nil, errors.New("expected a JSON object")
	}
	var ms []member
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return nil, fmt.Errorf("read member name: %w", err)
		}
		name := tok.String() // the token is only valid until the next read
		val, err := dec.ReadValue()
		if err != nil {
			return nil, fmt.Errorf("read member value: %w", err)
		}
		ms = append(ms, member{name: name, value: val.Clone()})
	}
	return ms, nil
}

// writeObject serializes members without validating them, so values may carry base markers.
func writeObject(ms []member) jsontext.Value {
	b := []byte{'{'}
	for i, m := range ms {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, quote(m.name)...)
		b = append(b, ':')
		b = append(b, m.value...)
	}
	return append(b, '}')
}

// mapMember replaces the value of the named member of a JSON object; objects without it are returned unchanged.
func mapMember(obj jsontext.Value, name string, f func(jsontext.Value) (jsontext.Value, error)) (jsontext.Value, error) {
	if obj.Kind() != '{' {
		return obj, nil
	}
	ms, err := readObject(obj)
	if err != nil {
		return nil, err
	}
	found := false
	for i := range ms {
		if ms[i].name == name {
			if ms[i].value, err = f(ms[i].value); err != nil {
				return nil, err
			}
			found = true
		}
	}
	if !found {
		return obj, nil
	}
	return writeObject(ms), nil
}

// mapArray replaces every element of a JSON array; a non-array is returned unchanged.
func mapArray(arr jsontext.Value, f func(jsontext.Value) (jsontext.Value, error)) (jsontext.Value, error) {
	if arr.Kind() != '[' {
		return arr, nil
	}
	dec := jsontext.NewDecoder(bytes.NewReader(arr))
	if _, err := dec.ReadToken(); err != nil {
		return nil, fmt.Errorf("read array: %w", err)
	}
	b := []byte{'['}
	for i := 0; dec.PeekKind() != ']'; i++ {
		v, err := dec.ReadValue()
		if err != nil {
			return nil, fmt.Errorf("read array element: %w", err)
		}
		nv, err := f(v.Clone())
		if err != nil {
			return nil, err
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, nv...)
	}
	return append(b, ']'), nil
}

// setMember sets (or adds, right after resourceType) one member of a JSON object.
func setMember(obj []byte, name string, value jsontext.Value) ([]byte, error) {
	ms, err := readObject(obj)
	if err != nil {
		return nil, err
	}
	for i := range ms {
		if ms[i].name == name {
			ms[i].value = value
			return writeObject(ms), nil
		}
	}
	at := 0
	if len(ms) > 0 && ms[0].name == "resourceType" {
		at = 1
	}
	ms = slices.Insert(ms, at, member{name: name, value: value})
	return writeObject(ms), nil
}

// quote returns s as a JSON string literal.
func quote(s string) []byte {
	b, _ := jsontext.AppendQuote(nil, s) // invalid UTF-8 is still quoted, with replacement characters
	return b
}

func validType(t string) bool {
	if t == "" || len(t) > 64 || t[0] < 'A' || t[0] > 'Z' {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

func validID(id string) bool {
	if id == "" || len(id) > maxIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
