package deid

import (
	"crypto/sha256"
	"testing"
)

// syntheaDir holds the shared Synthea bundles (with their attribution README).
const syntheaDir = "../../testdata/synthea"

// testKey derives a deterministic 32-byte test secret from a label.
func testKey(label string) Key {
	s := sha256.Sum256([]byte("secondlook test key " + label))
	return Key{ID: "test-" + label, Secret: s[:]}
}

func mustProfile(tb testing.TB) *Profile {
	tb.Helper()
	p, err := LoadProfile(DefaultProfile)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}
