package packet_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"reflect"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	jsonv2 "github.com/go-json-experiment/json"

	"secondlook/fhir/deid"
	"secondlook/packet"
)

// FuzzVerify runs packet.Verify, as a provider's tools do on the bytes they receive, over fuzzed variants of a real
// signed packet. Properties: no panic; a packet verifies only if it is, as JSON, the packet that was signed (a
// strict parser, refusing duplicate members and invalid UTF-8, reads the same document as the signer wrote), so
// that no edit a parser could see gets past the signature.
func FuzzVerify(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	record := `{"resourceType":"Bundle","type":"collection","entry":[` +
		`{"fullUrl":"https://h.example/r4/Patient/p1","resource":{"resourceType":"Patient","id":"p1","gender":"male","birthDate":"1950-02-03"}},` +
		`{"fullUrl":"https://h.example/r4/Condition/c1","resource":{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},` +
		`"code":{"text":"Fracture of forearm"},"onsetDateTime":"2020-04-27"}}]}`
	res, err := deid.Deidentify([]byte(record), deid.Options{Key: deid.Key{ID: "k1", Secret: bytes.Repeat([]byte("k"), 32)}, Scope: "fuzz"})
	if err != nil {
		f.Fatal(err)
	}
	pkt, err := packet.Build(packet.Input{
		ID: "6f1c1a52-3a6e-4c43-9d1a-7d0a3f3b2c11", Created: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC),
		Records: [][]byte{res.Bundle}, Sources: []packet.Source{{Kind: "hospital", Retrieved: true}},
		Profile: "safe-harbor", ProfileVersion: "1", Check: func([]byte) error { return nil },
	}, packet.Signer{Key: key, KeyID: "sig-1"})
	if err != nil {
		f.Fatal(err)
	}
	keys := &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "sig-1", Algorithm: "ES256", Use: "sig"}}}
	if err := packet.Verify(pkt.Bundle, keys); err != nil {
		f.Fatalf("the genuine packet does not verify: %v", err)
	}
	signed := unsignedDoc(f, pkt.Bundle)
	f.Add(pkt.Bundle)
	f.Add(bytes.Replace(pkt.Bundle, []byte(`"type":"document"`), []byte(`"type":"collection"`), 1))
	f.Add(bytes.Replace(pkt.Bundle, []byte(`{"resourceType":"Bundle"`), []byte(`{"entry":[],"resourceType":"Bundle"`), 1))
	f.Add(bytes.Replace(pkt.Bundle, []byte(`"signature":{`), []byte(`"signature":{"sigFormat":"application/jose","data":"e30="},"x":{`), 1))
	f.Add([]byte(`{"resourceType":"Bundle","signature":{"sigFormat":"application/jose","data":"ZXlKaGJHY2lPaUp1YjI1bEluMC4uZQ=="}}`))
	f.Fuzz(func(t *testing.T, bundle []byte) {
		if err := packet.Verify(bundle, keys); err != nil {
			return
		}
		var doc map[string]any
		if err := jsonv2.Unmarshal(bundle, &doc); err != nil {
			t.Fatalf("verified a packet that a strict JSON parser refuses: %v", err)
		}
		delete(doc, "signature")
		if !reflect.DeepEqual(doc, signed) {
			t.Fatal("verified a packet whose content differs from the one signed")
		}
	})
}

func unsignedDoc(t testing.TB, bundle []byte) map[string]any {
	var doc map[string]any
	if err := jsonv2.Unmarshal(bundle, &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "signature")
	return doc
}
