// Package callertest runs a minimal OpenID issuer on loopback for tests: discovery, a JWKS whose keys rotate on
// demand, and ES256 access tokens for any client. It is a test peer, imported only by tests.
package callertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Issuer is an OpenID issuer on loopback.
type Issuer struct {
	URL string

	srv  *httptest.Server
	mu   sync.Mutex
	keys map[string]*ecdsa.PrivateKey
	kid  string
}

// Claims are an access token's claims.
type Claims struct {
	jwt.Claims
	ClientID string `json:"client_id,omitempty"`
}

// NewIssuer starts an issuer that stops with the test.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	is := &Issuer{keys: map[string]*ecdsa.PrivateKey{}}
	is.Rotate("k1")
	mux := http.NewServeMux()
	is.srv = httptest.NewServer(mux)
	is.URL = is.srv.URL
	t.Cleanup(is.srv.Close)
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": is.URL, "jwks_uri": is.URL + "/jwks", "token_endpoint": is.URL + "/token",
			"authorization_endpoint": is.URL + "/authorize", "id_token_signing_alg_values_supported": []string{"ES256"},
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, _ *http.Request) {
		is.mu.Lock()
		defer is.mu.Unlock()
		var set jose.JSONWebKeySet
		for kid, k := range is.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Public(), KeyID: kid, Algorithm: "ES256", Use: "sig"})
		}
		_ = json.NewEncoder(w).Encode(set)
	})
	return is
}

// Rotate adds a new signing key under kid and signs with it from now on.
func (is *Issuer) Rotate(kid string) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	is.mu.Lock()
	is.keys[kid] = k
	is.kid = kid
	is.mu.Unlock()
}

// Token returns an access token for clientID and audience, valid for five minutes, after edit changes its claims.
func (is *Issuer) Token(t testing.TB, clientID, audience string, edit func(*Claims)) string {
	t.Helper()
	is.mu.Lock()
	key, kid := is.keys[is.kid], is.kid
	is.mu.Unlock()
	now := time.Now()
	c := Claims{Claims: jwt.Claims{Issuer: is.URL, Subject: clientID, Audience: jwt.Audience{audience},
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute)), ID: rand.Text()}, ClientID: clientID}
	if edit != nil {
		edit(&c)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// SignRaw signs header and payload exactly as given with the issuer's current key (an ES256 signature, whatever the
// header says), for tests that need tokens the Claims struct cannot express: any header, duplicate, missing or oddly
// typed members, bytes that are not JSON at all.
func (is *Issuer) SignRaw(header, payload []byte) string {
	is.mu.Lock()
	key := is.keys[is.kid]
	is.mu.Unlock()
	signing := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
	h := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, key, h[:])
	if err != nil {
		panic("callertest: sign: " + err.Error()) // crypto/rand failed: nothing a test can do
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}
