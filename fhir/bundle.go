package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"secondlook/internal/fhirjson"
)

// Resource is one FHIR resource as the server sent it. Raw is the exact JSON, never re-encoded, so nothing the typed
// models do not know (contained resources, primitive extensions) is lost.
type Resource struct {
	Type string
	ID   string
	Raw  json.RawMessage
}

// Key returns "Type/id".
func (r Resource) Key() string { return r.Type + "/" + r.ID }

// entry is one searchset entry.
type entry struct {
	mode     string // match, include, outcome (or empty)
	resource Resource
}

// page is one decoded searchset page.
type page struct {
	entries []entry
	next    string
	total   int
	hasTot  bool
}

// readSearchset decodes a searchset Bundle from r as a stream: each entry is read and kept on its own, so the
// whole body is never held twice, and every kept value is checked against maxDepth.
func readSearchset(r io.Reader, maxDepth int) (*page, error) {
	dec := jsontext.NewDecoder(r)
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	p := &page{}
	sawType := false
	for dec.PeekKind() == '"' {
		name, err := dec.ReadToken()
		if err != nil {
			return nil, jsonErr(err)
		}
		switch name.String() {
		case "resourceType":
			tok, err := dec.ReadToken()
			if err != nil {
				return nil, jsonErr(err)
			}
			if tok.Kind() != '"' || tok.String() != "Bundle" {
				return nil, fmt.Errorf("%w: expected a Bundle", ErrInvalidResponse)
			}
			sawType = true
		case "type":
			tok, err := dec.ReadToken()
			if err != nil {
				return nil, jsonErr(err)
			}
			if tok.Kind() != '"' || tok.String() != "searchset" {
				return nil, fmt.Errorf("%w: expected a searchset Bundle", ErrInvalidResponse)
			}
		case "total":
			tok, err := dec.ReadToken()
			if err != nil {
				return nil, jsonErr(err)
			}
			if tok.Kind() == '0' {
				if n, err := tok.Int(); err == nil && n >= 0 {
					p.total, p.hasTot = int(n), true
				}
			}
		case "link":
			v, err := dec.ReadValue()
			if err != nil {
				return nil, jsonErr(err)
			}
			if err := checkDepth(v, maxDepth); err != nil {
				return nil, err
			}
			var links []struct {
				Relation string `json:"relation"`
				URL      string `json:"url"`
			}
			if err := json.Unmarshal(v, &links); err != nil {
				return nil, fmt.Errorf("%w: Bundle.link is malformed", ErrInvalidResponse)
			}
			for _, l := range links {
				if l.Relation == "next" {
					p.next = l.URL
				}
			}
		case "entry":
			if err := expectDelim(dec, '['); err != nil {
				return nil, err
			}
			for dec.PeekKind() != ']' {
				if dec.PeekKind() == 0 {
					_, err := dec.ReadToken()
					return nil, jsonErr(err)
				}
				e, err := readEntry(dec, maxDepth)
				if err != nil {
					return nil, err
				}
				p.entries = append(p.entries, e)
			}
			if _, err := dec.ReadToken(); err != nil {
				return nil, jsonErr(err)
			}
		default:
			if err := dec.SkipValue(); err != nil {
				return nil, jsonErr(err)
			}
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, err
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		var le *LimitError
		if errors.As(err, &le) {
			return nil, le
		}
		return nil, fmt.Errorf("%w: data after the Bundle", ErrInvalidResponse)
	}
	if !sawType {
		return nil, fmt.Errorf("%w: expected a Bundle", ErrInvalidResponse)
	}
	return p, nil
}

// errEntryMalformed is an entry that is not an object, or whose search member is not one.
var errEntryMalformed = fmt.Errorf("%w: Bundle.entry is malformed", ErrInvalidResponse)

// readEntry reads one Bundle.entry from dec, whose next value it is, in one pass: the resource is read (and so
// validated) once and kept as a copy of its bytes. maxDepth bounds the entry's nesting, counted from the entry.
func readEntry(dec *jsontext.Decoder, maxDepth int) (entry, error) {
	if dec.PeekKind() != '{' {
		if err := dec.SkipValue(); err != nil {
			return entry{}, jsonErr(err)
		}
		return entry{}, errEntryMalformed
	}
	if _, err := dec.ReadToken(); err != nil {
		return entry{}, jsonErr(err)
	}
	var e entry
	for dec.PeekKind() == '"' {
		name, err := dec.ReadValue() // the raw quoted name: no allocation
		if err != nil {
			return entry{}, jsonErr(err)
		}
		member := name[1 : len(name)-1]
		if bytes.IndexByte(member, '\\') >= 0 { // a name written with escapes means what it spells
			if member, err = jsontext.AppendUnquote(nil, name); err != nil {
				return entry{}, errEntryMalformed
			}
		}
		// Decide on the name now: the decoder reuses its bytes on the next read.
		const (
			other = iota
			resource
			search
		)
		which := other
		switch string(member) {
		case "resource":
			which = resource
		case "search":
			which = search
		}
		v, err := dec.ReadValue()
		if err != nil {
			return entry{}, jsonErr(err)
		}
		// Nesting is counted from the entry: the member's value is one level inside it.
		if err := checkDepth(v, maxDepth-1); err != nil {
			return entry{}, err
		}
		switch which {
		case resource:
			if v.Kind() == 'n' {
				continue
			}
			res, err := newResource(v) // copies v, which the decoder reuses on its next read
			if err != nil {
				return entry{}, err
			}
			e.resource = res
		case search:
			var search struct {
				Mode string `json:"mode"`
			}
			if err := jsonv2.Unmarshal(v, &search); err != nil {
				return entry{}, errEntryMalformed
			}
			e.mode = search.Mode
		}
	}
	if tok, err := dec.ReadToken(); err != nil {
		return entry{}, jsonErr(err)
	} else if tok.Kind() != '}' {
		return entry{}, errEntryMalformed
	}
	return e, nil
}

// newResource files raw JSON (already validated) under its resourceType and id, keeping a copy of it (raw may be
// a decoder's buffer).
func newResource(raw []byte) (Resource, error) {
	return fileResource(bytes.Clone(raw))
}

// fileResource files raw JSON (already validated, and the caller's to give away) under its resourceType and id.
func fileResource(raw []byte) (Resource, error) {
	typ, id, err := fhirjson.Head(raw)
	if err != nil {
		return Resource{}, fmt.Errorf("%w: resource is not a JSON object", ErrInvalidResponse)
	}
	if !validType(typ) {
		return Resource{}, fmt.Errorf("%w: resource without a valid resourceType", ErrInvalidResponse)
	}
	if !validID(id) {
		return Resource{}, fmt.Errorf("%w: %s without a valid id", ErrInvalidResponse, typ)
	}
	return Resource{Type: typ, ID: id, Raw: raw}, nil
}

// readResource decodes one resource body, checking depth.
func readResource(r io.Reader, maxDepth int) (Resource, error) {
	dec := jsontext.NewDecoder(r)
	v, err := dec.ReadValue()
	if err != nil {
		return Resource{}, jsonErr(err)
	}
	v = v.Clone() // the decoder reuses its buffer on the next read
	if _, err := dec.ReadToken(); err != io.EOF {
		var le *LimitError
		if errors.As(err, &le) {
			return Resource{}, le
		}
		return Resource{}, fmt.Errorf("%w: data after the resource", ErrInvalidResponse)
	}
	if err := checkDepth(v, maxDepth); err != nil {
		return Resource{}, err
	}
	return fileResource(v) // v is this function's own copy
}

// readOutcome extracts the issues of an OperationOutcome error body; anything else yields none.
func readOutcome(r io.Reader, maxDepth int) []Issue {
	dec := jsontext.NewDecoder(r)
	v, err := dec.ReadValue()
	if err != nil || checkDepth(v, maxDepth) != nil {
		return nil
	}
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Severity    string `json:"severity"`
			Code        string `json:"code"`
			Diagnostics string `json:"diagnostics"`
		} `json:"issue"`
	}
	if json.Unmarshal(v, &oo) != nil || oo.ResourceType != "OperationOutcome" {
		return nil
	}
	issues := make([]Issue, 0, len(oo.Issue))
	for _, is := range oo.Issue {
		issues = append(issues, Issue{Severity: safeCode(is.Severity), Code: safeCode(is.Code), Diagnostics: is.Diagnostics})
	}
	return issues
}

// safeCode keeps a FHIR code only if it looks like one, so a hostile server cannot smuggle text into Error().
func safeCode(s string) string {
	if len(s) == 0 || len(s) > 64 {
		return ""
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return ""
		}
	}
	return s
}

func expectDelim(dec *jsontext.Decoder, want jsontext.Kind) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return jsonErr(err)
	}
	if tok.Kind() != want {
		return fmt.Errorf("%w: unexpected JSON structure", ErrInvalidResponse)
	}
	return nil
}

// jsonErr turns a decoder error into a clear error without echoing input bytes. I/O errors pass through so the
// caller can tell a dropped connection (retried) from bad JSON (not retried).
func jsonErr(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: truncated JSON: %w", ErrInvalidResponse, io.ErrUnexpectedEOF)
	}
	var le *LimitError
	if errors.As(err, &le) {
		return le
	}
	var se *jsontext.SyntacticError
	if errors.As(err, &se) {
		if errors.Is(se.Err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: truncated JSON at byte %d", ErrInvalidResponse, se.ByteOffset)
		}
		return fmt.Errorf("%w: malformed JSON at byte %d", ErrInvalidResponse, se.ByteOffset)
	}
	if isNetReadError(err) {
		return fmt.Errorf("%w: truncated JSON: %w", ErrInvalidResponse, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("%w: malformed JSON", ErrInvalidResponse)
}

// checkDepth reports a LimitError when v nests objects and arrays deeper than maxDepth.
func checkDepth(v []byte, maxDepth int) error {
	depth, inStr, esc := 0, false, false
	for _, c := range v {
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '{', '[':
			depth++
			if depth > maxDepth {
				return &LimitError{Op: "decode JSON", Limit: "max_json_depth", Value: int64(maxDepth)}
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

func validType(t string) bool {
	if len(t) == 0 || len(t) > 64 || t[0] < 'A' || t[0] > 'Z' {
		return false
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// validID follows FHIR's id type: [A-Za-z0-9\-\.]{1,64}.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}
