package seal

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, KeySize)
	_, _ = rand.Read(k)
	return k
}

func TestRoundTrip(t *testing.T) {
	kr, err := NewKeyring(map[string][]byte{"k1": newKey(t)}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	for _, pt := range [][]byte{nil, {}, []byte("access-token-abc"), bytes.Repeat([]byte{0xff}, 4096)} {
		sealed, err := kr.Seal(pt, []byte("grant:1"))
		if err != nil {
			t.Fatal(err)
		}
		if len(pt) > 4 && bytes.Contains(sealed, pt) {
			t.Fatal("sealed value contains the plaintext")
		}
		if sealed[0] != Version || sealed[1] != 2 || string(sealed[2:4]) != "k1" {
			t.Fatalf("header = %x", sealed[:4])
		}
		if len(sealed) != 4+12+len(pt)+16 {
			t.Fatalf("len = %d", len(sealed))
		}
		got, err := kr.Open(sealed, []byte("grant:1"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("got %q, want %q", got, pt)
		}
	}
}

func TestNoncesDiffer(t *testing.T) {
	kr, _ := NewKeyring(map[string][]byte{"k1": newKey(t)}, "k1")
	a, _ := kr.Seal([]byte("same"), nil)
	b, _ := kr.Seal([]byte("same"), nil)
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same plaintext are equal: nonce reused")
	}
}

func TestOpenFailures(t *testing.T) {
	secret := []byte("refresh-token-SECRET-value")
	kr, _ := NewKeyring(map[string][]byte{"k1": newKey(t)}, "k1")
	other, _ := NewKeyring(map[string][]byte{"k2": newKey(t)}, "k2")
	sameKIDOtherKey, _ := NewKeyring(map[string][]byte{"k1": newKey(t)}, "k1")
	sealed, _ := kr.Seal(secret, []byte("aad-1"))

	tests := []struct {
		name   string
		kr     *Keyring
		sealed []byte
		aad    string
		want   error
	}{
		{"wrong aad", kr, sealed, "aad-2", ErrAuth},
		{"missing aad", kr, sealed, "", ErrAuth},
		{"unknown kid", other, sealed, "aad-1", ErrUnknownKey},
		{"same kid other key", sameKIDOtherKey, sealed, "aad-1", ErrAuth},
		{"empty", kr, nil, "aad-1", ErrMalformed},
		{"bad version", kr, append([]byte{2}, sealed[1:]...), "aad-1", ErrMalformed},
		{"truncated below minimum", kr, sealed[:20], "aad-1", ErrMalformed},
		{"truncated tag", kr, sealed[:len(sealed)-1], "aad-1", ErrAuth},
		{"zero kid length", kr, append([]byte{1, 0}, sealed[2:]...), "aad-1", ErrMalformed},
	}
	// Every single flipped bit anywhere in the value must fail.
	for i := range sealed {
		tampered := bytes.Clone(sealed)
		tampered[i] ^= 0x01
		want := ErrAuth
		switch {
		case i == 0:
			want = ErrMalformed
		case i == 1:
			want = nil // kid length changed: malformed or unknown key, checked below
		case i < 4:
			want = ErrUnknownKey
		}
		tests = append(tests, struct {
			name   string
			kr     *Keyring
			sealed []byte
			aad    string
			want   error
		}{fmt.Sprintf("tampered byte %d", i), kr, tampered, "aad-1", want})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.kr.Open(tt.sealed, []byte(tt.aad))
			if err == nil {
				t.Fatalf("Open succeeded: %q", got)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if got != nil {
				t.Fatal("plaintext returned with an error")
			}
			if strings.Contains(err.Error(), string(secret)) {
				t.Fatal("error contains the plaintext")
			}
		})
	}
}

func TestRotation(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	ring1, err := NewKeyring(map[string][]byte{"k1": k1}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	old, _ := ring1.Seal([]byte("old"), []byte("a"))

	ring2, err := NewKeyring(map[string][]byte{"k1": k1, "k2": k2}, "k2")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ring2.Open(old, []byte("a")); err != nil || string(got) != "old" {
		t.Fatalf("old value after rotation: %q, %v", got, err)
	}
	fresh, _ := ring2.Seal([]byte("new"), []byte("a"))
	if kid, _ := KeyID(fresh); kid != "k2" {
		t.Fatalf("new value sealed under %q, want k2", kid)
	}
	if _, err := ring1.Open(fresh, []byte("a")); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("old ring opened a k2 value: %v", err)
	}
	// Retiring k1 makes old values unreadable, loudly.
	ring3, _ := NewKeyring(map[string][]byte{"k2": k2}, "k2")
	if _, err := ring3.Open(old, []byte("a")); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("retired key: %v", err)
	}
	if got, err := ring3.Open(fresh, []byte("a")); err != nil || string(got) != "new" {
		t.Fatalf("k2 value: %q, %v", got, err)
	}
}

func TestNewKeyringValidation(t *testing.T) {
	good := newKey(t)
	tests := []struct {
		name    string
		keys    map[string][]byte
		current string
		want    []string
	}{
		{"no keys", nil, "k1", []string{"no keys"}},
		{"short key", map[string][]byte{"k1": good[:16]}, "k1", []string{`"k1" is 16 bytes`}},
		{"long key", map[string][]byte{"k1": append(good, 0)}, "k1", []string{`"k1" is 33 bytes`}},
		{"current missing", map[string][]byte{"k1": good}, "k2", []string{`current key id "k2"`}},
		{"bad kid", map[string][]byte{"k 1": good}, "k 1", []string{"outside"}},
		{"empty kid", map[string][]byte{"": good}, "", []string{"1..64"}},
		{"long kid", map[string][]byte{strings.Repeat("a", 65): good}, "k", []string{"1..64"}},
		{"all problems at once", map[string][]byte{"a": good[:1], "b": good[:2]}, "c", []string{`"a" is 1`, `"b" is 2`, `"c"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewKeyring(tt.keys, tt.current)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(good[:16])) {
				t.Error("error contains key material")
			}
		})
	}
}

func TestParseKeyring(t *testing.T) {
	k := newKey(t)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		kr, err := ParseKeyring(map[string]string{"2026-11": enc.EncodeToString(k)}, "2026-11")
		if err != nil {
			t.Fatal(err)
		}
		if kr.Current() != "2026-11" {
			t.Fatal(kr.Current())
		}
	}
	if _, err := ParseKeyring(map[string]string{"k": "!!!"}, "k"); err == nil || strings.Contains(err.Error(), "!!!") {
		t.Fatalf("bad base64: %v", err)
	}
	if _, err := ParseKeyring(map[string]string{"k": base64.StdEncoding.EncodeToString(k[:31])}, "k"); err == nil {
		t.Fatal("31-byte key accepted")
	}
}

func TestKeyringCopiesKey(t *testing.T) {
	k := newKey(t)
	kr, _ := NewKeyring(map[string][]byte{"k": k}, "k")
	s, _ := kr.Seal([]byte("x"), nil)
	for i := range k {
		k[i] = 0
	}
	if _, err := kr.Open(s, nil); err != nil {
		t.Fatalf("keyring aliased the caller's key slice: %v", err)
	}
}

// The header is authenticated: relabelling a value with another key id fails even when both ids name the same key
// bytes (a key imported twice during a rotation), so the key id in an envelope can be trusted by rotation jobs.
func TestHeaderAuthenticated(t *testing.T) {
	k := newKey(t)
	kr, err := NewKeyring(map[string][]byte{"ka": k, "kb": k}, "ka")
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := kr.Seal([]byte("token"), []byte("aad"))
	relabelled := bytes.Clone(sealed)
	relabelled[3] = 'b'
	if _, err := kr.Open(relabelled, []byte("aad")); !errors.Is(err, ErrAuth) {
		t.Fatalf("relabelled value: %v, want ErrAuth", err)
	}
}
