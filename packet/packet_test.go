package packet_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"secondlook/fhir/deid"
	"secondlook/packet"
)

const toddFile = "../testdata/synthea/Todd315_Stamm704_0ce18c7d-fd78-46d9-81b5-8bed231c337a.json"

// split divides a Synthea transaction bundle into two bundles as two sources would hold it: the Patient and
// practitioners in both, DiagnosticReports (with their Observations) in the first, everything else in the second,
// and two DiagnosticReports in both.
func split(t *testing.T, raw []byte) (a, b []byte) {
	t.Helper()
	var bundle struct {
		Entry []json.RawMessage `json:"entry"`
	}
	if err := json.Unmarshal(raw, &bundle); err != nil {
		t.Fatal(err)
	}
	var ea, eb []json.RawMessage
	reports := 0
	for _, e := range bundle.Entry {
		var h struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
			} `json:"resource"`
		}
		if err := json.Unmarshal(e, &h); err != nil {
			t.Fatal(err)
		}
		switch h.Resource.ResourceType {
		case "Patient", "Practitioner", "Organization", "Encounter":
			ea, eb = append(ea, e), append(eb, e)
		case "DiagnosticReport":
			ea = append(ea, e)
			if reports < 2 {
				eb = append(eb, e)
			}
			reports++
		case "Observation":
			ea = append(ea, e)
		default:
			eb = append(eb, e)
		}
	}
	enc := func(entries []json.RawMessage) []byte {
		out, err := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "collection", "entry": entries})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	return enc(ea), enc(eb)
}

func deidentify(t *testing.T, in []byte) []byte {
	t.Helper()
	res, err := deid.Deidentify(in, deid.Options{Key: deid.Key{ID: "k1", Secret: bytes.Repeat([]byte("k"), 32)}, Scope: "review-1"})
	if err != nil {
		t.Fatalf("deidentify: %v", err)
	}
	return res.Bundle
}

type fixture struct {
	pkt  *packet.Packet
	keys *jose.JSONWebKeySet
	raw  []byte
}

func build(t *testing.T) fixture {
	t.Helper()
	raw, err := os.ReadFile(toddFile)
	if err != nil {
		t.Fatal(err)
	}
	a, b := split(t, raw)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkt, err := packet.Build(packet.Input{
		ID:      "6f1c1a52-3a6e-4c43-9d1a-7d0a3f3b2c11",
		Created: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC),
		Records: [][]byte{deidentify(t, a), deidentify(t, b)},
		Sources: []packet.Source{
			{Kind: "hospital", Retrieved: true},
			{Kind: "provincial", Retrieved: true},
			{Kind: "provincial", Missing: "the source did not answer in time"},
		},
		Profile: "safe-harbor", ProfileVersion: "1",
		Check: func(p []byte) error {
			for _, s := range []string{"Todd315", "Stamm704", "0ce18c7d-fd78", "999-35-5722", "555-788-5466", "Raynor Mall"} {
				if bytes.Contains(p, []byte(s)) {
					return errors.New("identifier found")
				}
			}
			return nil
		},
	}, packet.Signer{Key: key, KeyID: "sig-1"})
	if err != nil {
		t.Fatal(err)
	}
	keys := &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "sig-1", Algorithm: "ES256", Use: "sig"}}}
	return fixture{pkt: pkt, keys: keys, raw: raw}
}

func TestBuildMergesAndSigns(t *testing.T) {
	f := build(t)
	if err := packet.Verify(f.pkt.Bundle, f.keys); err != nil {
		t.Fatalf("verify: %v", err)
	}
	var doc struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(f.pkt.Bundle, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Type != "document" {
		t.Errorf("type %q", doc.Type)
	}
	counts := map[string]int{}
	urls := map[string]bool{}
	for i, e := range doc.Entry {
		var h struct {
			ResourceType string `json:"resourceType"`
		}
		_ = json.Unmarshal(e.Resource, &h)
		if i == 0 && h.ResourceType != "Composition" {
			t.Errorf("first entry is %s, want the Composition", h.ResourceType)
		}
		if urls[e.FullURL] {
			t.Errorf("%s appears twice", e.FullURL)
		}
		urls[e.FullURL] = true
		counts[h.ResourceType]++
	}
	if counts["Patient"] != 1 {
		t.Errorf("%d Patients, want one merged Patient", counts["Patient"])
	}
	if counts["DiagnosticReport"] != 19 || counts["Condition"] != 6 || counts["ImagingStudy"] != 1 {
		t.Errorf("counts %v: want 19 reports (2 from both sources, once), 6 conditions, 1 imaging study", counts)
	}
	// Every reference resolves inside the packet.
	refs := regexpAll(f.pkt.Bundle)
	for _, r := range refs {
		if strings.HasPrefix(r, "#") {
			continue
		}
		if !urls[r] {
			t.Errorf("reference %s does not resolve inside the packet", r)
		}
	}
	if len(refs) < 50 {
		t.Errorf("only %d references found", len(refs))
	}
	if !bytes.Contains(f.pkt.Bundle, []byte("did not answer in time")) {
		t.Error("the missing source is not explained")
	}
}

func regexpAll(b []byte) []string {
	var out []string
	for _, part := range bytes.Split(b, []byte(`"reference":"`))[1:] {
		end := bytes.IndexByte(part, '"')
		out = append(out, string(part[:end]))
	}
	return out
}

func TestVerifyRejectsTampering(t *testing.T) {
	f := build(t)
	// Change one digit of a result value: the signature no longer matches.
	i := bytes.Index(f.pkt.Bundle, []byte(`"value":`))
	if i < 0 {
		t.Fatal("no value in packet")
	}
	tampered := bytes.Clone(f.pkt.Bundle)
	j := i + len(`"value":`)
	if tampered[j] == '9' {
		tampered[j] = '8'
	} else {
		tampered[j] = '9'
	}
	if err := packet.Verify(tampered, f.keys); err == nil {
		t.Error("tampered packet verified")
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	wrong := &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: other.Public(), KeyID: "sig-1"}}}
	if err := packet.Verify(f.pkt.Bundle, wrong); err == nil {
		t.Error("packet verified with another key")
	}
	// Re-serializing the same JSON (other whitespace, other member order) still verifies: the signature is over the
	// canonical form.
	var v any
	_ = json.Unmarshal(f.pkt.Bundle, &v)
	pretty, _ := json.MarshalIndent(v, "", "  ")
	if err := packet.Verify(pretty, f.keys); err != nil {
		t.Errorf("re-serialized packet does not verify: %v", err)
	}
}

func TestBuildFailsClosed(t *testing.T) {
	raw, _ := os.ReadFile(toddFile)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, err := packet.Build(packet.Input{
		ID: "6f1c1a52-3a6e-4c43-9d1a-7d0a3f3b2c11", Created: time.Now(),
		Records: [][]byte{deidentify(t, raw)},
		Sources: []packet.Source{{Kind: "hospital", Retrieved: true}},
		Profile: "safe-harbor", ProfileVersion: "1",
		Check: func([]byte) error { return errors.New("residual name at Composition.section") },
	}, packet.Signer{Key: key, KeyID: "k"})
	if err == nil {
		t.Fatal("a failing check did not reject the packet")
	}
	_, err = packet.Build(packet.Input{
		ID: "6f1c1a52-3a6e-4c43-9d1a-7d0a3f3b2c11", Created: time.Now(),
		Records: [][]byte{raw}, // not de-identified
		Check:   func([]byte) error { return nil },
	}, packet.Signer{Key: key, KeyID: "k"})
	if !errors.Is(err, packet.ErrInput) {
		t.Fatalf("raw transaction bundle accepted: %v", err)
	}
	if _, err := packet.Build(packet.Input{ID: "6f1c1a52-3a6e-4c43-9d1a-7d0a3f3b2c11", Check: func([]byte) error { return nil }}, packet.Signer{Key: key}); !errors.Is(err, packet.ErrNoPatient) {
		t.Fatalf("empty packet: %v", err)
	}
}

// TestSignEveryKeyKind: packets signed with each accepted key kind (ES256, ES384, RS256) verify with go-jose
// against the public key, carry the algorithm and key id in their header, and fail against another key of the
// same kind.
func TestSignEveryKeyKind(t *testing.T) {
	f := build(t)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	r1, _ := rsa.GenerateKey(rand.Reader, 2048)
	other256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	r2, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, tc := range []struct {
		alg        string
		key, other crypto.Signer
	}{{"ES256", p256, other256}, {"ES384", p384, other384}, {"RS256", r1, r2}} {
		t.Run(tc.alg, func(t *testing.T) {
			records := [][]byte{deidentify(t, f.raw)}
			// A key id is the operator's: one that needs JSON escaping must still make a valid header.
			kid := "k-" + tc.alg + "\"\x7f\u00e9"
			pkt, err := packet.Build(packet.Input{ID: "6f1c1a52-3a6e-4c43-9d1a-7d0a3f3b2c11", Created: time.Now(), Records: records,
				Sources: []packet.Source{{Kind: "hospital", Retrieved: true}}, Profile: "safe-harbor", ProfileVersion: "1",
				Check: func([]byte) error { return nil }}, packet.Signer{Key: tc.key, KeyID: kid})
			if err != nil {
				t.Fatal(err)
			}
			set := func(k crypto.Signer) *jose.JSONWebKeySet {
				return &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.Public(), KeyID: kid, Algorithm: tc.alg, Use: "sig"}}}
			}
			if err := packet.Verify(pkt.Bundle, set(tc.key)); err != nil {
				t.Fatalf("verify: %v", err)
			}
			if err := packet.Verify(pkt.Bundle, set(tc.other)); err == nil {
				t.Error("verified against another key")
			}
			var doc struct {
				Signature struct {
					Data []byte `json:"data"`
				} `json:"signature"`
			}
			if err := json.Unmarshal(pkt.Bundle, &doc); err != nil {
				t.Fatal(err)
			}
			jws, err := jose.ParseDetached(string(doc.Signature.Data), []byte("x"), []jose.SignatureAlgorithm{jose.SignatureAlgorithm(tc.alg)})
			if err != nil {
				t.Fatal(err)
			}
			if h := jws.Signatures[0].Protected; h.KeyID != kid || h.Algorithm != tc.alg || h.ExtraHeaders["typ"] != "JOSE" {
				t.Errorf("header %+v", h)
			}
		})
	}
}

// TestEveryPatientsPacketVerifies: Build writes the signature input from the canonical forms of the document's
// parts; Verify canonicalizes the whole document with RFC 8785 as any verifier would. A packet of every shared
// Synthea patient (narratives, numbers, escapes and all) verifies, so the two agree.
func TestEveryPatientsPacketVerifies(t *testing.T) {
	files, _ := filepath.Glob("../testdata/synthea/*_*_*.json")
	if len(files) < 10 {
		t.Fatalf("%d patients", len(files))
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys := &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "s", Algorithm: "ES256", Use: "sig"}}}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		a, b := split(t, raw)
		pkt, err := packet.Build(packet.Input{ID: "6f1c1a52-3a6e-4c43-9d1a-7d0a3f3b2c11", Created: time.Now(),
			Records: [][]byte{deidentify(t, a), deidentify(t, b)}, Sources: []packet.Source{{Kind: "hospital", Retrieved: true}, {Kind: "provincial", Retrieved: true}},
			Profile: "safe-harbor", ProfileVersion: "1", Check: func([]byte) error { return nil }}, packet.Signer{Key: key, KeyID: "s"})
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(f), err)
		}
		if err := packet.Verify(pkt.Bundle, keys); err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
		}
	}
}

// TestEntryTypes: a packet's entries counted from its bytes are the resources Build counted, plus the
// Composition, Device and Provenance it wrote; bytes that are not JSON are refused.
func TestEntryTypes(t *testing.T) {
	f := build(t)
	got, err := packet.EntryTypes(f.pkt.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	want := maps.Clone(f.pkt.Counts)
	want["Composition"], want["Device"], want["Provenance"] = 1, 1, 1
	if !maps.Equal(got, want) {
		t.Errorf("entry types %v, want %v", got, want)
	}
	if _, err := packet.EntryTypes([]byte("{")); !errors.Is(err, packet.ErrInput) {
		t.Errorf("junk: %v", err)
	}
}
