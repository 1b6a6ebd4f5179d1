package deid

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

// largestSynthea is the largest shared Synthea bundle, used by both benchmarks.
const largestSynthea = "Johnetta529_Marquardt819_abb133fd-5683-45cd-a5c8-137ca2807fbe.json"

func benchInput(b testing.TB) []byte {
	b.Helper()
	in, err := os.ReadFile(filepath.Join(syntheaDir, largestSynthea))
	if err != nil {
		b.Skipf("benchmark input: %v", err)
	}
	return in
}

// BenchmarkDeidentify measures the whole transformation of the largest Synthea bundle.
func BenchmarkDeidentify(b *testing.B) {
	in := benchInput(b)
	opts := Options{Profile: mustProfile(b), Key: testKey("bench"), Scope: "review-bench"}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Deidentify(in, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJSONFloor is what any JSON pipeline pays at least: a jsontext token-by-token copy of the same bytes.
func BenchmarkJSONFloor(b *testing.B) {
	in := benchInput(b)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	var out bytes.Buffer
	for b.Loop() {
		out.Reset()
		dec := jsontext.NewDecoder(bytes.NewReader(in))
		enc := jsontext.NewEncoder(&out)
		for {
			tok, err := dec.ReadToken()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if err := enc.WriteToken(tok); err != nil {
				b.Fatal(err)
			}
		}
	}
}
