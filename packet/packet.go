package packet

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"golang.org/x/sync/errgroup"

	"secondlook/internal/fhirjson"
)

// ProfileURN prefixes the de-identification profile named in Provenance.policy.
const ProfileURN = "urn:secondlook:deid-profile:"

// Source describes one consented source for the packet's provenance.
type Source struct {
	// Kind is "hospital" or "provincial"; sources appear in the packet as "source N (kind)".
	Kind string
	// Retrieved reports whether the source contributed records.
	Retrieved bool
	// Missing says, in words safe to show the specialist, what this source could not provide and why ("" when
	// complete).
	Missing string
}

// Input is everything one packet is made of.
type Input struct {
	// ID is the packet's id, a UUID.
	ID      string
	Created time.Time
	// Records are de-identified collection Bundles (fhir/deid output) to merge: one per source, or one for all
	// sources de-identified together.
	Records [][]byte
	Sources []Source
	// Profile and ProfileVersion name the de-identification profile applied to every source.
	Profile, ProfileVersion string
	// Check is the fail-closed scan run over the finished packet (the de-identifier's residual scan over the
	// identifiers of the raw inputs). A non-nil error rejects the packet. Required. It is given every byte of the
	// packet but the signature element, which holds only the gateway's JWS over those bytes, and it runs while the
	// packet is canonicalized and signed.
	Check func(packet []byte) error
}

// Signer signs packets. Alg follows from the key: ES256 (P-256), ES384 (P-384) or RS256 (RSA).
type Signer struct {
	Key   crypto.Signer
	KeyID string
}

// Packet is a finished, signed packet.
type Packet struct {
	ID     string
	Bundle []byte
	// ETag is a strong validator: the hex SHA-256 of Bundle.
	ETag string
	// Counts holds how many resources of each type the packet carries.
	Counts map[string]int
}

// Errors.
var (
	ErrNoPatient = errors.New("packet: no source provided the patient")
	ErrInput     = errors.New("packet: invalid input")
)

type rawEntry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
}

// Build merges the sources, writes the Composition, Device and Provenance, signs the document and runs the
// fail-closed check. The same resource (same pseudonymous id) from two sources appears once; the Patients of all
// sources become one, the first source's, and every reference to the others points at it.
func Build(in Input, s Signer) (*Packet, error) {
	if in.Check == nil {
		return nil, fmt.Errorf("%w: no fail-closed check", ErrInput)
	}
	if !isUUID(in.ID) {
		return nil, fmt.Errorf("%w: packet id is not a UUID", ErrInput)
	}
	m, err := merge(in.Records)
	if err != nil {
		return nil, err
	}
	// The records' resources are most of the document's canonical form (the signature input): canonicalize them
	// now, beside the Composition, which needs the merge but not them (see canonicalParts).
	parts := make([][]byte, 1+len(m.resources))
	var canon errgroup.Group
	canon.Go(func() error {
		var err error
		if parts[0], err = canonicalize(m.patient.raw); err != nil {
			return err
		}
		for i, r := range m.resources {
			if parts[1+i], err = canonicalize(r.raw); err != nil {
				return err
			}
		}
		return nil
	})
	defer func() { _ = canon.Wait() }() // an early return waits for it too; its error is read below
	created := in.Created.UTC().Format(time.RFC3339)
	deviceID := derivedID(in.ID, "device")
	compositionID := derivedID(in.ID, "composition")
	provenanceID := derivedID(in.ID, "provenance")

	comp, err := composition(m, compositionID, deviceID, created, in)
	if err != nil {
		return nil, err
	}
	device, err := json.Marshal(map[string]any{
		"resourceType": "Device", "id": deviceID,
		"deviceName": []map[string]string{{"name": "secondlook gateway", "type": "manufacturer-name"}},
	})
	if err != nil {
		return nil, err
	}
	prov, err := provenance(provenanceID, compositionID, deviceID, created, in)
	if err != nil {
		return nil, err
	}

	entries := []rawEntry{
		{FullURL: "urn:uuid:" + compositionID, Resource: comp},
		{FullURL: "urn:uuid:" + m.patient.id, Resource: m.patient.raw},
	}
	for _, r := range m.resources {
		entries = append(entries, rawEntry{FullURL: "urn:uuid:" + r.id, Resource: r.raw})
	}
	entries = append(entries,
		rawEntry{FullURL: "urn:uuid:" + deviceID, Resource: device},
		rawEntry{FullURL: "urn:uuid:" + provenanceID, Resource: prov},
	)
	doc := document{
		ResourceType: "Bundle",
		ID:           in.ID,
		Meta:         documentMeta(),
		Identifier:   identifier{System: "urn:ietf:rfc:3986", Value: "urn:uuid:" + in.ID},
		Type:         "document",
		Timestamp:    created,
		Entry:        entries,
	}
	unsigned, err := doc.encode()
	if err != nil {
		return nil, fmt.Errorf("encode packet: %w", err)
	}
	// The fail-closed check and the signature both read the unsigned document: run them side by side.
	checked := make(chan error, 1)
	go func() { checked <- in.Check(unsigned) }()
	err = canon.Wait()
	var payload []byte
	if err == nil {
		payload, err = canonicalParts(&doc, parts)
	}
	if err != nil {
		<-checked //nolint:errcheck // the canonicalization error is the one reported; wait only so the check ends first
		return nil, err
	}
	jws, err := sign(s, payload)
	if cerr := <-checked; cerr != nil {
		return nil, fmt.Errorf("packet rejected by the fail-closed check: %w", cerr)
	}
	if err != nil {
		return nil, err
	}
	out, err := withSignature(unsigned, signature{
		Type:      []coding{{System: "urn:iso-astm:E1762-95:2013", Code: "1.2.840.10065.1.12.1.5", Display: "Verification Signature"}},
		When:      created,
		Who:       reference{Reference: "urn:uuid:" + deviceID},
		SigFormat: "application/jose",
		Data:      base64.StdEncoding.EncodeToString([]byte(jws)),
	})
	if err != nil {
		return nil, fmt.Errorf("encode packet: %w", err)
	}
	sum := sha256.Sum256(out)
	counts := map[string]int{"Patient": 1}
	for _, r := range m.resources {
		counts[r.typ]++
	}
	return &Packet{ID: in.ID, Bundle: out, ETag: hex.EncodeToString(sum[:]), Counts: counts}, nil
}

type document struct {
	ResourceType string     `json:"resourceType"`
	ID           string     `json:"id"`
	Meta         meta       `json:"meta"`
	Identifier   identifier `json:"identifier"`
	Type         string     `json:"type"`
	Timestamp    string     `json:"timestamp"`
	Entry        []rawEntry `json:"-"` // written by appendEntries
}

// encode writes the unsigned document: its own small fields through encoding/json, the entries' resources as the
// exact bytes they already are (valid, compact JSON from the de-identifier or from this package), so a
// multi-megabyte packet is not re-validated and re-compacted on every write.
func (d *document) encode() ([]byte, error) {
	head, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, d.size(len(head)))
	b = append(b, head[:len(head)-1]...) // without the closing brace
	b = append(b, ',')
	if b, err = d.appendEntries(b, func(i int) ([]byte, error) { return d.Entry[i].Resource, nil }); err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

// size is room for the document: its head of n bytes, every entry, and the signature added last (withSignature).
func (d *document) size(n int) int {
	for _, e := range d.Entry {
		n += len(e.FullURL) + len(e.Resource) + 32
	}
	return n + 64 + signatureRoom
}

// signatureRoom is what Bundle.signature takes, with room to spare: its coding, time, device reference and a
// detached JWS of an ECDSA or RSA signature.
const signatureRoom = 1 << 10

// appendEntries writes "entry":[…], each entry {"fullUrl":…,"resource":…} in that order, with the resource as
// resource(i) gives it: the written one (encode) or its canonical form (canonicalParts).
func (d *document) appendEntries(b []byte, resource func(i int) ([]byte, error)) ([]byte, error) {
	b = append(b, `"entry":[`...)
	for i, e := range d.Entry {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"fullUrl":`...)
		var err error
		if b, err = jsontext.AppendQuote(b, e.FullURL); err != nil { // minimal escaping: also the RFC 8785 form
			return nil, err
		}
		b = append(b, `,"resource":`...)
		r, err := resource(i)
		if err != nil {
			return nil, err
		}
		b = append(b, r...)
		b = append(b, '}')
	}
	return append(b, ']'), nil
}

// withSignature returns the signed document: the unsigned one with Bundle.signature as its last member, written in
// place of its closing brace, in the room encode left (so a multi-megabyte document is not copied to add a few
// hundred bytes). unsigned must not be read after.
func withSignature(unsigned []byte, sig signature) ([]byte, error) {
	sb, err := json.Marshal(sig)
	if err != nil {
		return nil, err
	}
	out := append(unsigned[:len(unsigned)-1], `,"signature":`...)
	out = append(out, sb...)
	return append(out, '}'), nil
}

type meta struct {
	Security []coding `json:"security"`
}

type identifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

type coding struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

type reference struct {
	Reference string `json:"reference"`
}

type signature struct {
	Type      []coding  `json:"type"`
	When      string    `json:"when"`
	Who       reference `json:"who"`
	SigFormat string    `json:"sigFormat"`
	Data      string    `json:"data"`
}

// canonicalParts writes the document's canonical form (RFC 8785, as canonicalize gives it for the whole
// unsigned document) from the canonical forms of its parts: parts[0] is the Patient's and parts[1:] the other
// records' resources', in the order of the entries that carry them (after the Composition). The Bundle's members
// are sorted with "entry" first (it sorts before every other member the document has, which the assertion below
// keeps true), each entry is {"fullUrl":…,"resource":…} in that order, and a canonical value does not depend on
// where it sits. TestEveryPatientsPacketVerifies holds this to canonicalize over every shared patient, and Verify
// checks every signature against canonicalize itself.
func canonicalParts(d *document, parts [][]byte) ([]byte, error) {
	if len(d.Entry) != len(parts)+3 { // Composition, the parts, Device, Provenance
		return nil, errors.New("canonicalize: entries and parts differ")
	}
	head, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	ch, err := canonicalize(head)
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(ch, []byte(`{"id":`)) { // the first member after "entry" in UTF-16 order
		return nil, errors.New("canonicalize: unexpected document members")
	}
	out := make([]byte, 0, d.size(len(ch)))
	out = append(out, '{')
	out, err = d.appendEntries(out, func(i int) ([]byte, error) {
		if i >= 1 && i <= len(parts) {
			return parts[i-1], nil
		}
		return canonicalize(d.Entry[i].Resource)
	})
	if err != nil {
		return nil, err
	}
	out = append(out, ',')
	return append(out, ch[1:]...), nil
}

func documentMeta() meta {
	const obs = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
	return meta{Security: []coding{
		{System: obs, Code: "PSEUDED", Display: "pseudonymized"},
		{System: obs, Code: "REDACTED", Display: "redacted"},
		{System: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", Code: "R", Display: "restricted"},
	}}
}

// resource is one de-identified resource in the merged record.
type resource struct {
	typ, id string
	raw     json.RawMessage
}

type merged struct {
	patient   resource
	resources []resource // everything but the Patient, sorted by type then id
	byRef     map[string]resource
}

func merge(records [][]byte) (*merged, error) {
	m := &merged{byRef: map[string]resource{}}
	alias := map[string]string{} // other sources' Patient pseudonym → the kept one
	seen := map[string]bool{}
	var all []resource
	for i, rec := range records {
		entries, err := collectionEntries(rec)
		if err != nil {
			return nil, fmt.Errorf("%w: record %d is not a collection Bundle", ErrInput, i+1)
		}
		for _, e := range entries {
			typ, id, err := fhirjson.Head(e.Resource)
			if err != nil || typ == "" || !isUUID(id) || e.FullURL != "urn:uuid:"+id {
				return nil, fmt.Errorf("%w: record %d has an entry that is not a de-identified resource", ErrInput, i+1)
			}
			r := resource{typ: typ, id: id, raw: e.Resource}
			if r.typ == "Patient" {
				if m.patient.id == "" {
					m.patient = r
				} else if r.id != m.patient.id {
					alias[r.id] = m.patient.id
				}
				continue
			}
			key := r.typ + "/" + r.id
			if seen[key] {
				continue
			}
			seen[key] = true
			all = append(all, r)
		}
	}
	if m.patient.id == "" {
		return nil, ErrNoPatient
	}
	for _, r := range all {
		for from, to := range alias {
			r.raw = bytes.ReplaceAll(r.raw, []byte(`"urn:uuid:`+from+`"`), []byte(`"urn:uuid:`+to+`"`))
		}
		m.resources = append(m.resources, r)
		m.byRef["urn:uuid:"+r.id] = r
	}
	slices.SortStableFunc(m.resources, func(a, b resource) int {
		return strings.Compare(a.typ+"/"+a.id, b.typ+"/"+b.id)
	})
	return m, nil
}

// Algorithm is the JWS algorithm a key signs packets with: ES256 (P-256), ES384 (P-384) or RS256 (RSA of 2048 bits
// or more); other keys are refused.
func Algorithm(k crypto.Signer) (jose.SignatureAlgorithm, error) {
	switch pub := k.Public().(type) {
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		}
	case *rsa.PublicKey:
		if pub.N.BitLen() >= 2048 {
			return jose.RS256, nil
		}
	}
	return "", errors.New("packet: signing key must be ECDSA P-256/P-384 or RSA >= 2048 bits")
}

// Verify checks a packet's Bundle.signature against the keys: the detached JWS over the canonical form of the
// Bundle without its signature element, signed by the key its header names.
//
// The Bundle's members are read strictly: a duplicate member name or invalid UTF-8 is refused, since another parser
// could read a different document from the same bytes (the first of two "entry" members, where the signature
// covers the last).
func Verify(bundle []byte, keys *jose.JSONWebKeySet) error {
	var doc map[string]json.RawMessage
	if err := jsonv2.Unmarshal(bundle, &doc); err != nil {
		return fmt.Errorf("verify packet: %w", ErrInput)
	}
	var sig signature
	if err := json.Unmarshal(doc["signature"], &sig); err != nil || sig.SigFormat != "application/jose" {
		return errors.New("verify packet: no JOSE signature")
	}
	jws, err := base64.StdEncoding.DecodeString(sig.Data)
	if err != nil {
		return errors.New("verify packet: signature data is not base64")
	}
	delete(doc, "signature")
	unsigned, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("verify packet: %w", err)
	}
	payload, err := canonicalize(unsigned)
	if err != nil {
		return fmt.Errorf("verify packet: %w", err)
	}
	obj, err := jose.ParseDetached(string(jws), payload, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256})
	if err != nil {
		return fmt.Errorf("verify packet: %w", err)
	}
	if len(obj.Signatures) != 1 {
		return errors.New("verify packet: want exactly one signature")
	}
	kid := obj.Signatures[0].Header.KeyID
	found := keys.Key(kid)
	if len(found) == 0 {
		return errors.New("verify packet: signed by an unknown key")
	}
	if _, err := obj.Verify(found[0].Public().Key); err != nil {
		return errors.New("verify packet: signature does not match")
	}
	return nil
}

// derivedID gives the packet's own resources stable UUID-shaped ids (RFC 9562 version 8) derived from the packet id.
func derivedID(packetID, what string) string {
	s := sha256.Sum256([]byte("secondlook/packet/v1\x00" + packetID + "\x00" + what))
	s[6] = s[6]&0x0f | 0x80
	s[8] = s[8]&0x3f | 0x80
	h := hex.EncodeToString(s[:16])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}
