package caller_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	jsonv2 "github.com/go-json-experiment/json"

	"secondlook/caller"
	"secondlook/caller/callertest"
)

// The verifier's clock in the fuzz targets, and the placeholders their seeds use for values known only at run time.
var fuzzNow = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

const (
	fuzzMaxLifetime = time.Hour
	fuzzLeeway      = time.Minute
	fuzzAudience    = "https://gateway.example"
	issPlaceholder  = "$ISS"
)

var fuzzClients = map[string]caller.Kind{"ehr-st-mary": caller.EHR, "onco": caller.Provider}

func fuzzVerifier(f *testing.F) (*callertest.Issuer, *caller.Verifier) {
	is := callertest.NewIssuer(f)
	v, err := caller.New([]caller.Issuer{{URL: is.URL, Audience: fuzzAudience, Clients: []caller.Client{
		{ID: "ehr-st-mary", Kind: caller.EHR}, {ID: "onco", Kind: caller.Provider},
	}}}, caller.Options{Now: func() time.Time { return fuzzNow }, MaxLifetime: fuzzMaxLifetime, Leeway: fuzzLeeway})
	if err != nil {
		f.Fatal(err)
	}
	// Discover the issuer now, so each fuzz input costs a signature check and no HTTP.
	if _, err := v.Verify(context.Background(), fuzzToken(f, is, nil)); err != nil {
		f.Fatalf("verify a valid token: %v", err)
	}
	return is, v
}

func fuzzToken(t testing.TB, is *callertest.Issuer, edit func(*callertest.Claims)) string {
	return is.Token(t, "ehr-st-mary", fuzzAudience, func(c *callertest.Claims) {
		c.IssuedAt = jwt.NewNumericDate(fuzzNow)
		c.Expiry = jwt.NewNumericDate(fuzzNow.Add(5 * time.Minute))
		if edit != nil {
			edit(c)
		}
	})
}

// strictClaims are the claims a verified token must carry, read with a strict decoder: member names matched exactly,
// duplicates refused.
type strictClaims struct {
	Iss      string   `json:"iss"`
	Aud      audience `json:"aud"`
	Exp      *float64 `json:"exp"`
	Iat      *float64 `json:"iat"`
	Nbf      *float64 `json:"nbf"`
	ClientID string   `json:"client_id"`
	AZP      string   `json:"azp"`
	Sub      string   `json:"sub"`
}

// audience is aud as a string or an array of strings.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := jsonv2.Unmarshal(b, &one); err == nil {
		*a = []string{one}
		return nil
	}
	var many []string
	if err := jsonv2.Unmarshal(b, &many); err != nil {
		return err
	}
	*a = many
	return nil
}

// checkAccepted asserts the rules on a token Verify accepted: issuer, audience, expiry, lifetime, and the client it
// names. A payload the strict decoder refuses (duplicate or differently cased members) is reported only if it is
// not JSON at all: the issuer signed it, and the verifier's reading of it is then the only one.
func checkAccepted(t *testing.T, issuer, raw string, c *caller.Client) {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("accepted a token in %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("accepted a token whose payload is not base64url")
	}
	var cl strictClaims
	if err := jsonv2.Unmarshal(payload, &cl); err != nil {
		if !json.Valid(payload) {
			t.Fatalf("accepted a token whose payload is not JSON")
		}
		return
	}
	if strings.TrimRight(cl.Iss, "/") != issuer {
		t.Fatalf("accepted iss %q", cl.Iss)
	}
	if !strings.Contains(strings.Join(cl.Aud, "\x00")+"\x00", fuzzAudience+"\x00") {
		t.Fatalf("accepted aud %q", cl.Aud)
	}
	at := func(n *float64) time.Time { return time.Unix(int64(*n), 0) }
	switch {
	case cl.Exp == nil:
		t.Fatal("accepted a token without exp")
	case at(cl.Exp).Add(fuzzLeeway).Before(fuzzNow.Add(-time.Second)):
		t.Fatalf("accepted a token expired at %v", at(cl.Exp))
	case at(cl.Exp).Sub(fuzzNow) > fuzzMaxLifetime+fuzzLeeway+time.Second:
		t.Fatalf("accepted a token valid until %v, beyond the maximum lifetime from now", at(cl.Exp))
	case cl.Iat != nil && at(cl.Iat).After(fuzzNow.Add(fuzzLeeway+time.Second)):
		t.Fatal("accepted a token issued in the future")
	case cl.Iat != nil && at(cl.Exp).Sub(at(cl.Iat)) > fuzzMaxLifetime+time.Second:
		t.Fatal("accepted a token living longer than the maximum lifetime")
	case cl.Nbf != nil && at(cl.Nbf).After(fuzzNow.Add(fuzzLeeway+time.Second)):
		t.Fatal("accepted a token before its nbf")
	}
	id := cl.ClientID
	if id == "" {
		id = cl.AZP
	}
	if id == "" {
		id = cl.Sub
	}
	if kind, ok := fuzzClients[id]; !ok || c.ID != id || c.Kind != kind {
		t.Fatalf("accepted client %q as %+v", id, c)
	}
}

func checkRefused(t *testing.T, raw string, err error) {
	t.Helper()
	if !errors.Is(err, caller.ErrUnauthenticated) && !errors.Is(err, caller.ErrForbidden) {
		t.Fatalf("unexpected error %v", err)
	}
	for _, part := range strings.Split(raw, ".") {
		if len(part) >= 8 && strings.Contains(err.Error(), part) {
			t.Fatalf("error %q echoes the token", err)
		}
	}
}

// FuzzVerify verifies arbitrary bearer token strings, seeded with real tokens of the test issuer (valid, expired,
// for another audience, unsigned, tampered): never a panic, refusals are ErrUnauthenticated or ErrForbidden without
// the token's text, and an accepted token satisfies every rule.
func FuzzVerify(f *testing.F) {
	is, v := fuzzVerifier(f)
	other := callertest.NewIssuer(f)
	f.Add(fuzzToken(f, is, nil))
	f.Add(fuzzToken(f, is, func(c *callertest.Claims) { c.Expiry = jwt.NewNumericDate(fuzzNow.Add(-time.Minute)) }))
	f.Add(fuzzToken(f, is, func(c *callertest.Claims) { c.Audience = jwt.Audience{"https://other.example"} }))
	f.Add(fuzzToken(f, is, func(c *callertest.Claims) { c.ClientID = "onco"; c.Subject = "onco" }))
	f.Add(fuzzToken(f, other, func(c *callertest.Claims) { c.Issuer = is.URL }))
	unsigned := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"`+is.URL+`","aud":"`+fuzzAudience+`","client_id":"ehr-st-mary","exp":9999999999}`)) + "."
	f.Add(unsigned)
	f.Add("not.a.jwt")
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := v.Verify(context.Background(), raw)
		if err != nil {
			checkRefused(t, raw, err)
			return
		}
		checkAccepted(t, is.URL, raw, c)
	})
}

// FuzzVerifySigned verifies tokens whose header and payload are arbitrary bytes signed by the trusted issuer's key,
// so that the claim checks after the signature are reached. "$ISS" in a seed stands for the issuer's URL.
func FuzzVerifySigned(f *testing.F) {
	is, v := fuzzVerifier(f)
	now := fuzzNow.Unix()
	num := func(d time.Duration) string { return strconv.FormatInt(now+int64(d/time.Second), 10) }
	header := []byte(`{"alg":"ES256","kid":"k1","typ":"JWT"}`)
	for _, p := range []string{
		`{"iss":"$ISS","aud":"` + fuzzAudience + `","client_id":"ehr-st-mary","sub":"ehr-st-mary","iat":` + num(0) + `,"exp":` + num(5*time.Minute) + `}`,
		`{"iss":"$ISS/","aud":["x","` + fuzzAudience + `"],"azp":"onco","exp":` + num(time.Minute) + `}`,
		`{"iss":"$ISS","aud":"` + fuzzAudience + `","sub":"onco","exp":` + num(-2*time.Minute) + `}`,
		`{"iss":"$ISS","aud":"` + fuzzAudience + `","sub":"onco","nbf":` + num(10*time.Minute) + `,"exp":` + num(30*time.Minute) + `}`,
		`{"iss":"$ISS","aud":"` + fuzzAudience + `","client_id":"stranger","exp":` + num(time.Minute) + `}`,
		`{"iss":"$ISS","aud":"` + fuzzAudience + `","client_id":"ehr-st-mary","iat":` + num(-47*time.Hour) + `,"exp":` + num(time.Hour) + `}`,
		`{"iss":"$ISS","aud":"` + fuzzAudience + `","client_id":"ehr-st-mary","exp":1e30}`,
		`{"iss":"$ISS","ISS":"https://evil.example","aud":"` + fuzzAudience + `","client_id":"ehr-st-mary","exp":` + num(time.Minute) + `}`,
	} {
		f.Add(header, []byte(p))
	}
	f.Add([]byte(`{"alg":"RS256","kid":"k1"}`), []byte(`{}`))
	f.Add([]byte(`{"alg":"ES256","crit":["exp"],"exp":1}`), []byte(`null`))
	f.Fuzz(func(t *testing.T, header, payload []byte) {
		raw := is.SignRaw(header, bytes.ReplaceAll(payload, []byte(issPlaceholder), []byte(is.URL)))
		c, err := v.Verify(context.Background(), raw)
		if err != nil {
			checkRefused(t, raw, err)
			return
		}
		checkAccepted(t, is.URL, raw, c)
	})
}
