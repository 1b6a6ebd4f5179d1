package caller_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"secondlook/caller"
	"secondlook/caller/callertest"
)

type claims = callertest.Claims

type issuer struct{ *callertest.Issuer }

func newIssuer(t *testing.T) *issuer { return &issuer{callertest.NewIssuer(t)} }

func (is *issuer) token(t *testing.T, edit func(*claims)) string {
	return is.Token(t, "ehr-st-mary", "https://gateway.example", edit)
}

func newVerifier(t *testing.T, is *issuer) *caller.Verifier {
	v, err := caller.New([]caller.Issuer{{URL: is.URL, Audience: "https://gateway.example", Clients: []caller.Client{
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
		p := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"` + is.URL + `","aud":"https://gateway.example","client_id":"ehr-st-mary","exp":9999999999}`))
		return h + "." + p + "."
	}()
	for name, tc := range map[string]struct {
		raw  string
		want error
	}{
		"wrong audience":      {is.token(t, func(c *claims) { c.Audience = jwt.Audience{"https://other.example"} }), caller.ErrUnauthenticated},
		"expired":             {is.token(t, func(c *claims) { c.Expiry = jwt.NewNumericDate(time.Now().Add(-10 * time.Minute)) }), caller.ErrUnauthenticated},
		"untrusted issuer":    {other.token(t, nil), caller.ErrUnauthenticated},
		"issuer claim forged": {other.token(t, func(c *claims) { c.Issuer = is.URL }), caller.ErrUnauthenticated},
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
	is.Rotate("k2")
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

// A verified token is remembered, but never past its expiry. The leeway is short, so the token expires (30 s plus
// 5 s) well before the cache's own one-minute bound would drop it: a cache that ignored the expiry fails here.
func TestVerifiedTokensExpire(t *testing.T) {
	is := newIssuer(t)
	now := time.Now()
	const leeway = 5 * time.Second
	v, err := caller.New([]caller.Issuer{{URL: is.URL, Audience: "https://gateway.example", Clients: []caller.Client{
		{ID: "ehr-st-mary", Name: "St. Mary's EHR", Kind: caller.EHR}}}}, caller.Options{Now: func() time.Time { return now }, Leeway: leeway})
	if err != nil {
		t.Fatal(err)
	}
	tok := is.token(t, func(c *claims) { c.Expiry = jwt.NewNumericDate(time.Now().Add(30 * time.Second)) })
	for range 3 {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(31*time.Second + leeway)
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, caller.ErrUnauthenticated) {
		t.Errorf("expired token still accepted from the cache: %v", err)
	}
}

// TestTokenTimes: the validity window with the leeway for clock skew, both directions, and the maximum lifetime.
// A bearer access token is reusable until it expires (RFC 6750), so the gateway keeps no jti replay cache; what
// bounds a stolen token is that every token must expire, soon.
func TestTokenTimes(t *testing.T) {
	is := newIssuer(t)
	const leeway = 2 * time.Minute
	// The gateway's clock is fixed; each token is made relative to it.
	now := time.Now().Truncate(time.Second)
	v, err := caller.New([]caller.Issuer{{URL: is.URL, Audience: "https://gateway.example", Clients: []caller.Client{
		{ID: "ehr-st-mary", Kind: caller.EHR}}}}, caller.Options{Now: func() time.Time { return now }, Leeway: leeway, MaxLifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	at := func(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(now.Add(d)) }
	valid := func(c *claims) {
		c.IssuedAt, c.NotBefore, c.Expiry = at(-time.Minute), at(-time.Minute), at(4*time.Minute)
	}
	for _, tc := range []struct {
		name string
		edit func(*claims)
		ok   bool
	}{
		{"valid", valid, true},
		// The issuer's clock is behind the gateway's: the token looks expired.
		{"expired within the leeway", func(c *claims) { valid(c); c.Expiry = at(-leeway + 5*time.Second) }, true},
		{"expired beyond the leeway", func(c *claims) { valid(c); c.Expiry = at(-leeway - 5*time.Second) }, false},
		// The issuer's clock is ahead: the token looks issued in the future.
		{"iat and nbf ahead within the leeway", func(c *claims) {
			valid(c)
			c.IssuedAt, c.NotBefore = at(leeway-5*time.Second), at(leeway-5*time.Second)
		}, true},
		{"iat ahead beyond the leeway", func(c *claims) { valid(c); c.IssuedAt = at(leeway + 5*time.Second) }, false},
		{"nbf ahead beyond the leeway", func(c *claims) { valid(c); c.NotBefore = at(leeway + 5*time.Second) }, false},
		{"no exp", func(c *claims) { valid(c); c.Expiry = nil }, false},
		{"no iat or nbf", func(c *claims) { valid(c); c.IssuedAt, c.NotBefore = nil, nil }, true},
		{"lifetime over the maximum", func(c *claims) { valid(c); c.IssuedAt, c.Expiry = at(-time.Minute), at(time.Hour) }, false},
		{"exp beyond the maximum, without iat", func(c *claims) {
			valid(c)
			c.IssuedAt, c.NotBefore = nil, nil
			c.Expiry = at(10 * 365 * 24 * time.Hour)
		}, false},
		{"exp beyond the maximum, with nbf only", func(c *claims) { valid(c); c.IssuedAt = nil; c.Expiry = at(2 * time.Hour) }, false},
	} {
		raw := is.token(t, tc.edit)
		_, err := v.Verify(context.Background(), raw)
		if tc.ok && err != nil {
			t.Errorf("%s: refused: %v", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, caller.ErrUnauthenticated) {
			t.Errorf("%s: err = %v, want ErrUnauthenticated", tc.name, err)
		}
	}
	// A token presented again, and another token with the same jti, are accepted: the policy is documented on Verify.
	first := is.token(t, func(c *claims) { valid(c); c.ID = "one-jti" })
	for _, raw := range []string{first, first, is.token(t, func(c *claims) { valid(c); c.ID = "one-jti" })} {
		if _, err := v.Verify(context.Background(), raw); err != nil {
			t.Errorf("a reused jti: %v", err)
		}
	}
}

// A token naming an issuer the gateway does not trust is refused without a request to that issuer: the iss claim
// is the caller's input, and fetching its discovery document would let any caller make the gateway call any URL.
func TestUntrustedIssuerIsNeverContacted(t *testing.T) {
	is := newIssuer(t)
	v := newVerifier(t, is)
	var hits atomic.Int32
	evil := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer evil.Close()
	for _, raw := range []string{
		is.token(t, func(c *claims) { c.Issuer = evil.URL }),
		is.token(t, func(c *claims) { c.Issuer = evil.URL + "/" + is.URL }),
		is.token(t, func(c *claims) { c.Issuer = is.URL + "/../" + strings.TrimPrefix(evil.URL, "http://") }),
	} {
		if _, err := v.Verify(context.Background(), raw); !errors.Is(err, caller.ErrUnauthenticated) {
			t.Errorf("err = %v, want ErrUnauthenticated", err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the untrusted issuer was contacted %d times", n)
	}
}
