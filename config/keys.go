package config

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// minSymmetricKeyBytes is the least key material a SymmetricKey may hold: 256 bits.
const minSymmetricKeyBytes = 32

// minRSABits is the smallest RSA signing key accepted, matching the packet signer.
const minRSABits = 2048

// Material reads the key's secret and decodes it from base64 (standard or URL alphabet, padded or not), requiring
// at least 32 bytes. Surrounding whitespace is ignored. Errors name the key and its reference, never the material.
func (k SymmetricKey) Material() ([]byte, error) {
	key, err := k.material()
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", k.ID, err)
	}
	return key, nil
}

func (k SymmetricKey) material() ([]byte, error) {
	raw, err := k.Secret.Resolve()
	if err != nil {
		return nil, err
	}
	key, err := decodeBase64(strings.TrimSpace(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("secret %s is not base64", k.Secret)
	}
	if len(key) < minSymmetricKeyBytes {
		return nil, fmt.Errorf("secret %s decodes to %d bytes; want at least %d", k.Secret, len(key), minSymmetricKeyBytes)
	}
	return key, nil
}

func decodeBase64(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding, base64.RawStdEncoding, base64.URLEncoding} {
		if b, err := enc.Strict().DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

// Signer reads and parses the key, checking that it is a kind the packet signer accepts. Errors name the
// reference, never the key material.
func (k SigningKey) Signer() (crypto.Signer, error) {
	raw, err := k.PrivateKey.Resolve()
	if err != nil {
		return nil, err
	}
	s, err := parsePrivateKeyPEM(raw)
	if err != nil {
		return nil, fmt.Errorf("private key %s %w", k.PrivateKey, err)
	}
	return s, nil
}

// parsePrivateKeyPEM parses the first PEM block of data as a PKCS#8, SEC 1 or PKCS#1 private key holding an ECDSA
// P-256/P-384 or an RSA (>= 2048 bits) key. Its errors say what is wrong without quoting the data.
func parsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("is not PEM")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("is a PEM %q block; want PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot be parsed as a %s", strings.ToLower(block.Type))
	}
	switch key := key.(type) {
	case *ecdsa.PrivateKey:
		if key.Curve != elliptic.P256() && key.Curve != elliptic.P384() {
			return nil, errors.New("is an ECDSA key on an unsupported curve; want P-256 or P-384")
		}
		return key, nil
	case *rsa.PrivateKey:
		if key.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("is a %d-bit RSA key; want at least %d bits", key.N.BitLen(), minRSABits)
		}
		return key, nil
	}
	return nil, fmt.Errorf("is a %T; want an ECDSA or RSA key", key)
}

// Signer reads and parses a private_key_jwt source's private key (PEM). Errors name the reference, never the key.
func (a Auth) Signer() (crypto.Signer, error) {
	raw, err := a.PrivateKey.Resolve()
	if err != nil {
		return nil, err
	}
	k, err := parsePrivateKeyPEM(raw)
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", a.PrivateKey, err)
	}
	return k, nil
}
