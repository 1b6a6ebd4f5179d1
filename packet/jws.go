package packet

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math/big"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// sign returns the detached compact JWS (RFC 7515, appendix F: "header..signature") of payload. The signing input
// is hashed as it is base64url-encoded, so the encoded payload (a third larger than the packet) is never held in
// memory; the signature is then the key's own (a crypto.Signer: in memory, or a KMS or HSM behind the
// interface). Verify, with go-jose, checks what this writes.
func sign(s Signer, payload []byte) (string, error) {
	alg, err := Algorithm(s.Key)
	if err != nil {
		return "", err
	}
	var h hash.Hash
	var hf crypto.Hash
	var size int // bytes of each of r and s in an ECDSA signature
	switch alg {
	case jose.ES256:
		h, hf, size = sha256.New(), crypto.SHA256, 32
	case jose.ES384:
		h, hf, size = sha512.New384(), crypto.SHA384, 48
	case jose.RS256:
		h, hf = sha256.New(), crypto.SHA256
	}
	hj, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{string(alg), s.KeyID, "JOSE"})
	if err != nil {
		return "", fmt.Errorf("sign packet: %w", err)
	}
	header := base64.RawURLEncoding.EncodeToString(hj)
	_, _ = h.Write([]byte(header + ".")) // a hash never fails to write
	enc := base64.NewEncoder(base64.RawURLEncoding, h)
	_, _ = enc.Write(payload) // a hash never fails to write
	_ = enc.Close()
	sig, err := s.Key.Sign(rand.Reader, h.Sum(nil), hf)
	if err != nil {
		return "", fmt.Errorf("sign packet: %w", err)
	}
	if size > 0 { // ECDSA signers answer ASN.1 DER; JWS wants r and s, fixed size, big-endian (RFC 7518, 3.4)
		if sig, err = rawECDSA(sig, size); err != nil {
			return "", fmt.Errorf("sign packet: %w", err)
		}
	}
	return header + ".." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// rawECDSA turns an ASN.1 ECDSA signature into r || s, each size bytes.
func rawECDSA(der []byte, size int) ([]byte, error) {
	var r, s big.Int
	var inner cryptobyte.String
	in := cryptobyte.String(der)
	if !in.ReadASN1(&inner, asn1.SEQUENCE) || !in.Empty() || !inner.ReadASN1Integer(&r) || !inner.ReadASN1Integer(&s) || !inner.Empty() {
		return nil, errors.New("malformed ECDSA signature")
	}
	if r.Sign() <= 0 || s.Sign() <= 0 || r.BitLen() > 8*size || s.BitLen() > 8*size {
		return nil, errors.New("ECDSA signature out of range")
	}
	out := make([]byte, 2*size)
	r.FillBytes(out[:size])
	s.FillBytes(out[size:])
	return out, nil
}
