package packet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-json-experiment/json/jsontext"
)

// errNotCollection is any way a record fails to be a collection Bundle.
var errNotCollection = errors.New("not a collection Bundle")

// collectionEntries reads a collection Bundle in one pass, validating it, and returns its entries with each
// resource as a slice of rec (no copy): records are megabytes, and merging must not parse them twice.
func collectionEntries(rec []byte) ([]rawEntry, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(rec))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return nil, errNotCollection
	}
	var rt, typ string
	var entries []rawEntry
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return nil, errNotCollection
		}
		switch n := name.String(); n {
		case "resourceType", "type":
			tok, err := dec.ReadToken()
			if err != nil || tok.Kind() != '"' {
				return nil, errNotCollection
			}
			if n == "type" {
				typ = tok.String()
			} else {
				rt = tok.String()
			}
		case "entry":
			if entries, err = readEntries(dec, rec); err != nil {
				return nil, err
			}
		default:
			if err := dec.SkipValue(); err != nil {
				return nil, errNotCollection
			}
		}
	}
	if _, err := dec.ReadToken(); err != nil || rt != "Bundle" || typ != "collection" {
		return nil, errNotCollection
	}
	if _, err := dec.ReadToken(); err == nil { // trailing data after the Bundle
		return nil, errNotCollection
	}
	return entries, nil
}

func readEntries(dec *jsontext.Decoder, rec []byte) ([]rawEntry, error) {
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '[' {
		return nil, errNotCollection
	}
	var entries []rawEntry
	for dec.PeekKind() != ']' {
		if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
			return nil, errNotCollection
		}
		var e rawEntry
		for dec.PeekKind() != '}' {
			name, err := dec.ReadToken()
			if err != nil {
				return nil, errNotCollection
			}
			switch name.String() {
			case "fullUrl":
				tok, err := dec.ReadToken()
				if err != nil || tok.Kind() != '"' {
					return nil, errNotCollection
				}
				e.FullURL = tok.String()
			case "resource":
				v, err := dec.ReadValue()
				if err != nil || v.Kind() != '{' {
					return nil, errNotCollection
				}
				end := int(dec.InputOffset())
				e.Resource = rec[end-len(v) : end : end]
			default:
				if err := dec.SkipValue(); err != nil {
					return nil, errNotCollection
				}
			}
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, errNotCollection
		}
		entries = append(entries, e)
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, errNotCollection
	}
	return entries, nil
}

// EntryTypes counts a document's entries by resource type (the Composition, Device and Provenance included), for
// readers that hold only a packet's bytes.
func EntryTypes(bundle []byte) (map[string]int, error) {
	var doc struct {
		Entry []struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(bundle, &doc); err != nil {
		return nil, fmt.Errorf("%w: not a JSON Bundle", ErrInput)
	}
	counts := map[string]int{}
	for _, e := range doc.Entry {
		counts[e.Resource.ResourceType]++
	}
	return counts, nil
}
