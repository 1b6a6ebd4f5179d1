package caller_test

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
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
		"expired":             {is.token(t, func(c *claims) { c.Expiry = jwt.NewNumericDate(time.Now().Add(-time.Minute)) }), caller.ErrUnauthenticated},
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

// A verified token is remembered, but never past its expiry.
func TestVerifiedTokensExpire(t *testing.T) {
	is := newIssuer(t)
	now := time.Now()
	v, err := caller.New([]caller.Issuer{{URL: is.URL, Audience: "https://gateway.example", Clients: []caller.Client{
		{ID: "ehr-st-mary", Name: "St. Mary's EHR", Kind: caller.EHR}}}}, caller.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	tok := is.token(t, func(c *claims) { c.Expiry = jwt.NewNumericDate(time.Now().Add(30 * time.Second)) })
	for range 3 {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(31 * time.Second)
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, caller.ErrUnauthenticated) {
		t.Errorf("expired token still accepted from the cache: %v", err)
	}
}
