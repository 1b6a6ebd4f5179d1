package packet_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"testing"
	"time"

	"secondlook/fhir/deid"
	"secondlook/packet"
)

// BenchmarkBuildLargest builds the packet of the largest shared patient (Johnetta529) from what retrieval brings
// (Patient, DiagnosticReports, Observations, Conditions), de-identified: merge, Composition with its narratives,
// Provenance, JCS, signature and the fail-closed residual scan over the finished packet.
func BenchmarkBuildLargest(b *testing.B) {
	raw, err := os.ReadFile("../testdata/synthea/Johnetta529_Marquardt819_abb133fd-5683-45cd-a5c8-137ca2807fbe.json")
	if err != nil {
		b.Fatal(err)
	}
	var bundle struct {
		Entry []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(raw, &bundle); err != nil {
		b.Fatal(err)
	}
	var kept []string
	for _, e := range bundle.Entry {
		var h struct {
			ResourceType string `json:"resourceType"`
		}
		_ = json.Unmarshal(e.Resource, &h)
		switch h.ResourceType {
		case "Patient", "DiagnosticReport", "Observation", "Condition", "ImagingStudy":
			fu, _ := json.Marshal(e.FullURL)
			kept = append(kept, `{"fullUrl":`+string(fu)+`,"resource":`+string(e.Resource)+`}`)
		}
	}
	var in bytes.Buffer
	in.WriteString(`{"resourceType":"Bundle","type":"collection","entry":[`)
	for i, r := range kept {
		if i > 0 {
			in.WriteByte(',')
		}
		in.WriteString(r)
	}
	in.WriteString(`]}`)
	res, err := deid.Deidentify(in.Bytes(), deid.Options{Key: deid.Key{ID: "k", Secret: bytes.Repeat([]byte("k"), 32)}, Scope: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b.SetBytes(int64(len(res.Bundle)))
	for b.Loop() {
		if _, err := packet.Build(packet.Input{ID: "6f1c1a52-3a6e-4c43-9d1a-7d0a3f3b2c11", Created: time.Now(), Records: [][]byte{res.Bundle},
			Sources: []packet.Source{{Kind: "hospital", Retrieved: true}}, Profile: "safe-harbor", ProfileVersion: "1",
			Check: res.Scanner.Scan}, packet.Signer{Key: key, KeyID: "s"}); err != nil {
			b.Fatal(err)
		}
	}
}
