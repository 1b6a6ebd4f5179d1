package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Version is the first byte of every sealed value produced by this package.
const Version byte = 1

const (
	// KeySize is the length of every key in a Keyring: AES-256.
	KeySize   = 32
	nonceSize = 12
	tagSize   = 16
	maxKIDLen = 64
)

// Errors returned by Open. They never contain any part of the plaintext or the key.
var (
	// ErrMalformed reports a value too short or with an unknown version to be a sealed value.
	ErrMalformed = errors.New("seal: malformed sealed value")
	// ErrUnknownKey reports a sealed value whose key id is not in the keyring (a key retired too early, or foreign data).
	ErrUnknownKey = errors.New("seal: unknown key id")
	// ErrAuth reports a value that failed authentication: tampered, truncated, or opened with another aad.
	ErrAuth = errors.New("seal: message authentication failed")
)

// Keyring holds the AES-256 keys by key id and names the one used to seal. It is immutable and safe for concurrent use.
type Keyring struct {
	current string
	aeads   map[string]cipher.AEAD
}

// NewKeyring validates keys (each exactly 32 bytes, key ids 1..64 characters of [A-Za-z0-9._-]) and returns a
// keyring that seals under current, which must be one of them. The key bytes are copied.
func NewKeyring(keys map[string][]byte, current string) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("seal: keyring has no keys")
	}
	var problems []string
	aeads := make(map[string]cipher.AEAD, len(keys))
	for _, kid := range slices.Sorted(maps.Keys(keys)) {
		if err := checkKID(kid); err != nil {
			problems = append(problems, err.Error())
			continue
		}
		key := keys[kid]
		if len(key) != KeySize {
			problems = append(problems, fmt.Sprintf("key %q is %d bytes, want %d", kid, len(key), KeySize))
			continue
		}
		block, err := aes.NewCipher(slices.Clone(key))
		if err != nil {
			problems = append(problems, fmt.Sprintf("key %q: %v", kid, err))
			continue
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			problems = append(problems, fmt.Sprintf("key %q: %v", kid, err))
			continue
		}
		aeads[kid] = aead
	}
	if _, ok := keys[current]; !ok {
		problems = append(problems, fmt.Sprintf("current key id %q is not in the keyring", current))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("seal: invalid keyring: %s", strings.Join(problems, "; "))
	}
	return &Keyring{current: current, aeads: aeads}, nil
}

// ParseKeyring builds a Keyring from base64-encoded keys (standard or URL alphabet, padded or not), as they come
// from configuration or the environment.
func ParseKeyring(encoded map[string]string, current string) (*Keyring, error) {
	keys := make(map[string][]byte, len(encoded))
	var problems []string
	for _, kid := range slices.Sorted(maps.Keys(encoded)) {
		key, err := decodeKey(encoded[kid])
		if err != nil {
			problems = append(problems, fmt.Sprintf("key %q is not base64", kid))
			continue
		}
		keys[kid] = key
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("seal: invalid keyring: %s", strings.Join(problems, "; "))
	}
	return NewKeyring(keys, current)
}

func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

const kidChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"

func checkKID(kid string) error {
	if kid == "" || len(kid) > maxKIDLen {
		return fmt.Errorf("key id %q must be 1..%d characters", kid, maxKIDLen)
	}
	for _, r := range kid {
		if !strings.ContainsRune(kidChars, r) {
			return fmt.Errorf("key id %q has a character outside [A-Za-z0-9._-]", kid)
		}
	}
	return nil
}

// Current returns the key id new values are sealed under.
func (k *Keyring) Current() string { return k.current }

// KeyIDs returns the key ids in the ring, sorted.
func (k *Keyring) KeyIDs() []string { return slices.Sorted(maps.Keys(k.aeads)) }

// Seal encrypts plaintext under the current key, authenticating aad (which is not stored: Open needs the same aad).
func (k *Keyring) Seal(plaintext, aad []byte) ([]byte, error) {
	aead := k.aeads[k.current]
	hdr := header(k.current)
	out := make([]byte, 0, len(hdr)+nonceSize+len(plaintext)+tagSize)
	out = append(out, hdr...)
	nonce := out[len(hdr) : len(hdr)+nonceSize]
	_, _ = rand.Read(nonce) // crypto/rand.Read never fails (Go 1.24+): it crashes the program instead.
	out = out[:len(hdr)+nonceSize]
	return aead.Seal(out, nonce, plaintext, additional(hdr, aad)), nil
}

// Open authenticates and decrypts a value produced by Seal with the same aad, using the key named in the value. Its
// errors are ErrMalformed, ErrUnknownKey or ErrAuth, and never carry plaintext.
func (k *Keyring) Open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < 2 || sealed[0] != Version {
		return nil, ErrMalformed
	}
	n := int(sealed[1])
	if n == 0 || n > maxKIDLen || len(sealed) < 2+n+nonceSize+tagSize {
		return nil, ErrMalformed
	}
	hdr := sealed[:2+n]
	aead, ok := k.aeads[string(sealed[2:2+n])]
	if !ok {
		return nil, ErrUnknownKey
	}
	nonce := sealed[2+n : 2+n+nonceSize]
	plain, err := aead.Open(nil, nonce, sealed[2+n+nonceSize:], additional(hdr, aad))
	if err != nil {
		return nil, ErrAuth
	}
	return plain, nil
}

// KeyID returns the key id a sealed value names, so a rotation job can find values to re-seal.
func KeyID(sealed []byte) (string, error) {
	if len(sealed) < 2 || sealed[0] != Version {
		return "", ErrMalformed
	}
	n := int(sealed[1])
	if n == 0 || n > maxKIDLen || len(sealed) < 2+n+nonceSize+tagSize {
		return "", ErrMalformed
	}
	return string(sealed[2 : 2+n]), nil
}

func header(kid string) []byte {
	h := make([]byte, 0, 2+len(kid))
	h = append(h, Version, byte(len(kid))) //nolint:gosec // G115: checkKID holds every key id to 1..maxKIDLen (64) bytes
	return append(h, kid...)
}

func additional(hdr, aad []byte) []byte {
	a := make([]byte, 0, len(hdr)+len(aad))
	a = append(a, hdr...)
	return append(a, aad...)
}
