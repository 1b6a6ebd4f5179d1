package caller_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"secondlook/caller"
)

// issuer is a minimal OpenID issuer on loopback: discovery and a JWKS whose keys the test can rotate.
type issuer struct {
	srv  *httptest.Server
	mu   sync.Mutex
	keys map[string]*ecdsa.PrivateKey
	kid  string
}

func newIssuer(t *testing.T) *issuer {
	is := &issuer{keys: map[string]*ecdsa.PrivateKey{}}
	is.rotate("k1")
	mux := http.NewServeMux()
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": is.srv.URL, "jwks_uri": is.srv.URL + "/jwks", "token_endpoint": is.srv.URL + "/token",
			"authorization_endpoint": is.srv.URL + "/authorize", "id_token_signing_alg_values_supported": []string{"ES256"},
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
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

func (is *issuer) rotate(kid string) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	is.mu.Lock()
	is.keys[kid] = k
	is.kid = kid
	is.mu.Unlock()
}

type claims struct {
	jwt.Claims
	ClientID string `json:"client_id,omitempty"`
}

func (is *issuer) token(t *testing.T, edit func(*claims)) string {
	is.mu.Lock()
	key, kid := is.keys[is.kid], is.kid
	is.mu.Unlock()
	now := time.Now()
	c := claims{Claims: jwt.Claims{Issuer: is.srv.URL, Subject: "ehr-st-mary", Audience: jwt.Audience{"https://gateway.example"},
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute)), ID: "j1"}, ClientID: "ehr-st-mary"}
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

func newVerifier(t *testing.T, is *issuer) *caller.Verifier {
	v, err := caller.New([]caller.Issuer{{URL: is.srv.URL, Audience: "https://gateway.example", Clients: []caller.Client{
		{ID: "ehr-st-mary", Name: "St. Mary's EHR", Kind: caller.EHR},
		{ID: "onco", Name: "Oncology Second Opinions", Kind: caller.Provider},
	}}}, caller.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerify(t *testing.T) {
	is := newIssuer(t)
	other := newIssuer(t)
	v := newVerifier(t, is)
	ctx := context.Background()

	c, err := v.Verify(ctx, is.token(t, nil))
	if err != nil || c.Kind != caller.EHR || c.ID != "ehr-st-mary" {
		t.Fatalf("EHR token: %+v %v", c, err)
	}
	c, err = v.Verify(ctx, is.token(t, func(c *claims) { c.ClientID = "onco"; c.Subject = "onco" }))
	if err != nil || c.Kind != caller.Provider {
		t.Fatalf("provider token: %+v %v", c, err)
	}
	unsigned := func() string {
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`))
		p := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"` + is.srv.URL + `","aud":"https://gateway.example","client_id":"ehr-st-mary","exp":9999999999}`))
		return h + "." + p + "."
	}()
	for name, tc := range map[string]struct {
		raw  string
		want error
	}{
		"wrong audience":      {is.token(t, func(c *claims) { c.Audience = jwt.Audience{"https://other.example"} }), caller.ErrUnauthenticated},
		"expired":             {is.token(t, func(c *claims) { c.Expiry = jwt.NewNumericDate(time.Now().Add(-time.Minute)) }), caller.ErrUnauthenticated},
		"untrusted issuer":    {other.token(t, nil), caller.ErrUnauthenticated},
		"issuer claim forged": {other.token(t, func(c *claims) { c.Issuer = is.srv.URL }), caller.ErrUnauthenticated},
		"alg none":            {unsigned, caller.ErrUnauthenticated},
		"tampered":            {tamper(is.token(t, nil)), caller.ErrUnauthenticated},
		"unregistered client": {is.token(t, func(c *claims) { c.ClientID = "stranger"; c.Subject = "stranger" }), caller.ErrForbidden},
		"long-lived":          {is.token(t, func(c *claims) { c.Expiry = jwt.NewNumericDate(time.Now().Add(48 * time.Hour)) }), caller.ErrUnauthenticated},
		"issued in future":    {is.token(t, func(c *claims) { c.IssuedAt = jwt.NewNumericDate(time.Now().Add(10 * time.Minute)) }), caller.ErrUnauthenticated},
		"empty":               {"", caller.ErrUnauthenticated},
		"garbage":             {"not.a.jwt", caller.ErrUnauthenticated},
	} {
		if _, err := v.Verify(ctx, tc.raw); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", name, err, tc.want)
		} else if strings.Contains(err.Error(), tc.raw) && tc.raw != "" {
			t.Errorf("%s: error echoes the token", name)
		}
	}

	// The issuer rotates its key: tokens under the new kid verify (keys are re-fetched).
	is.rotate("k2")
	if _, err := v.Verify(ctx, is.token(t, nil)); err != nil {
		t.Errorf("after key rotation: %v", err)
	}
}

func tamper(raw string) string {
	parts := strings.Split(raw, ".")
	p, _ := base64.RawURLEncoding.DecodeString(parts[1])
	p = []byte(strings.Replace(string(p), "ehr-st-mary", "onco\"\u0020,\"x\":\"", 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(p)
	return strings.Join(parts, ".")
}
