package sandbox

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
)

// Backend services clients of newBackendEnv: a hospital EHR integration and a second-opinion provider, both
// callers of the gateway's API. The provider also has a secret, which client_credentials must not accept.
const (
	backendAudience  = "https://gateway.test/api"
	backendEHRID     = "ehr-integration"
	backendProvID    = "second-opinion"
	backendProvValue = "provider-s3cret"
)

// newBackendEnv is newAuthEnv with the two backend clients added; update adjusts the options further.
func newBackendEnv(t testing.TB, update func(*AuthOptions)) *authEnv {
	t.Helper()
	return newAuthEnv(t, func(o *AuthOptions) {
		o.Clients = append(o.Clients,
			Client{ID: backendEHRID, JWKS: testKeys.jwks(t), BackendAudience: backendAudience},
			Client{ID: backendProvID, JWKS: testKeys.jwks(t), Secret: backendProvValue, BackendAudience: backendAudience},
		)
		if update != nil {
			update(o)
		}
	})
}

// clientCredentials asks the token endpoint for a client_credentials token.
func (e *authEnv) clientCredentials(t testing.TB, scope string, auth clientAuth) (int, map[string]any) {
	t.Helper()
	return e.post(t, "/token", url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}, auth)
}

// backendAssertion is a valid client assertion of a backend client, adjusted by c.
func (e *authEnv) backendAssertion(t testing.TB, clientID string, c assertionClaims) clientAuth {
	t.Helper()
	if c.iss == "" {
		c.iss = clientID
	}
	return assertionAuth(e.assertion(t, c))
}

// verifyBackendToken verifies a backend access token the way the gateway does (go-oidc after discovery at the issuer,
// aud = the backend audience) and returns its claims.
func (e *authEnv) verifyBackendToken(t testing.TB, raw, audience string) (map[string]any, error) {
	t.Helper()
	ctx := oidc.ClientContext(t.Context(), e.client)
	provider, err := oidc.NewProvider(ctx, e.issuer())
	if err != nil {
		t.Fatalf("discovery at %s: %v", e.issuer(), err)
	}
	tok, err := provider.Verifier(&oidc.Config{ClientID: audience}).Verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		t.Fatalf("claims: %v", err)
	}
	return claims, nil
}

func TestBackendServicesClientCredentials(t *testing.T) {
	e := newBackendEnv(t, nil)
	asked := "system/Patient.rs system/Observation.read patient/Patient.rs openid offline_access " +
		"system/Condition.cruds system/DiagnosticReport.rs?category=LAB user/Patient.rs system/*.rs system/Patient.rs"
	want := []string{"system/Patient.rs", "system/Observation.read", "system/*.rs"}
	jtis := map[string]bool{}
	for _, tc := range []struct {
		client string
		alg    jose.SignatureAlgorithm
	}{{backendEHRID, jose.RS384}, {backendProvID, jose.ES384}} {
		t.Run(tc.client+" "+string(tc.alg), func(t *testing.T) {
			status, tok := e.clientCredentials(t, asked, e.backendAssertion(t, tc.client, assertionClaims{alg: tc.alg}))
			if status != http.StatusOK {
				t.Fatalf("client_credentials: %d %v", status, tok)
			}
			if diff := cmp.Diff(want, strings.Fields(tok["scope"].(string))); diff != "" {
				t.Errorf("granted scope (-want +got):\n%s", diff)
			}
			if tok["token_type"] != "bearer" || tok["expires_in"] != float64(300) {
				t.Errorf("token_type %v expires_in %v, want bearer and 300", tok["token_type"], tok["expires_in"])
			}
			for _, k := range []string{"refresh_token", "id_token", "patient"} {
				if _, ok := tok[k]; ok {
					t.Errorf("token response has %s", k)
				}
			}
			raw, _ := tok["access_token"].(string)
			claims, err := e.verifyBackendToken(t, raw, backendAudience)
			if err != nil {
				t.Fatalf("verify the access token with go-oidc: %v", err)
			}
			if claims["iss"] != e.issuer() || claims["sub"] != tc.client || claims["client_id"] != tc.client ||
				claims["aud"] != backendAudience {
				t.Errorf("claims iss %v sub %v client_id %v aud %v", claims["iss"], claims["sub"], claims["client_id"], claims["aud"])
			}
			if diff := cmp.Diff(want, strings.Fields(claims["scope"].(string))); diff != "" {
				t.Errorf("scope claim (-want +got):\n%s", diff)
			}
			iat, _ := claims["iat"].(float64)
			exp, _ := claims["exp"].(float64)
			if iat == 0 || exp-iat <= 0 || exp-iat > 300 {
				t.Errorf("iat %v exp %v: want a lifetime of at most 300 s", iat, exp)
			}
			jti, _ := claims["jti"].(string)
			if jti == "" || jtis[jti] {
				t.Errorf("jti %q missing or reused", jti)
			}
			jtis[jti] = true
			// The audience is the backend's: the token is no id_token for the client, nor for anyone else.
			for _, aud := range []string{tc.client, e.fhirBase()} {
				if _, err := e.verifyBackendToken(t, raw, aud); err == nil {
					t.Errorf("the token verifies for audience %q", aud)
				}
			}
			parsed, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
			if err != nil || parsed.Headers[0].ExtraHeaders["typ"] != "at+jwt" {
				t.Errorf("token header: %v %v, want RS256 with typ at+jwt", err, parsed)
			}
		})
	}
}

func TestBackendServicesTokenLifetime(t *testing.T) {
	for _, tc := range []struct {
		ttl  time.Duration
		want float64
	}{{time.Hour, 300}, {2 * time.Minute, 120}} {
		e := newBackendEnv(t, func(o *AuthOptions) { o.AccessTokenTTL = tc.ttl })
		status, tok := e.clientCredentials(t, "system/*.rs", e.backendAssertion(t, backendEHRID, assertionClaims{}))
		if status != http.StatusOK {
			t.Fatalf("client_credentials: %d %v", status, tok)
		}
		claims, err := e.verifyBackendToken(t, tok["access_token"].(string), backendAudience)
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		if exp, iat := claims["exp"].(float64), claims["iat"].(float64); tok["expires_in"] != tc.want || exp-iat != tc.want {
			t.Errorf("AccessTokenTTL %v: expires_in %v, exp-iat %v, want %v", tc.ttl, tok["expires_in"], exp-iat, tc.want)
		}
	}
}

func TestBackendServicesReusedJTIRejected(t *testing.T) {
	e := newBackendEnv(t, nil)
	auth := e.backendAssertion(t, backendEHRID, assertionClaims{jti: "backend-once"})
	if status, tok := e.clientCredentials(t, "system/*.rs", auth); status != http.StatusOK {
		t.Fatalf("first use: %d %v", status, tok)
	}
	if status, tok := e.clientCredentials(t, "system/*.rs", auth); status == http.StatusOK || tok["error"] != "invalid_client" {
		t.Errorf("replayed assertion: %d %v, want invalid_client", status, tok)
	}
}

func TestBackendServicesNeedsABackendAudience(t *testing.T) {
	e := newBackendEnv(t, nil)
	cases := map[string]clientAuth{
		"private_key_jwt client": e.backendAssertion(t, jwtClientID, assertionClaims{}),
		"secret client":          basicAuth(secretClientID, secretValue),
	}
	for name, auth := range cases {
		if status, tok := e.clientCredentials(t, "system/*.rs", auth); status == http.StatusOK || tok["error"] != "unauthorized_client" {
			t.Errorf("%s: %d %v, want unauthorized_client", name, status, tok)
		}
	}
}

func TestBackendServicesRefusesClientSecret(t *testing.T) {
	e := newBackendEnv(t, nil)
	cases := map[string]struct {
		form url.Values
		auth clientAuth
	}{
		"client_secret_basic": {auth: basicAuth(backendProvID, backendProvValue)},
		"client_secret_post":  {form: url.Values{"client_id": {backendProvID}, "client_secret": {backendProvValue}}},
	}
	for name, c := range cases {
		form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}
		for k, v := range c.form {
			form[k] = v
		}
		if status, tok := e.post(t, "/token", form, c.auth); status == http.StatusOK || tok["error"] != "invalid_client" {
			t.Errorf("%s: %d %v, want invalid_client", name, status, tok)
		}
	}
}

func TestBackendServicesRejectsBadAssertions(t *testing.T) {
	e := newBackendEnv(t, nil)
	bad := map[string]assertionClaims{
		"aud is the issuer":    {aud: e.issuer()},
		"aud is the FHIR base": {aud: e.fhirBase()},
		"aud is the audience":  {aud: backendAudience},
		"expired":              {exp: -2 * time.Minute},
		"exp too far":          {exp: 10 * time.Minute},
		"no jti":               {jti: "-"},
		"RS256":                {alg: jose.RS256},
		"unknown kid":          {kid: "nope"},
		"unknown client":       {iss: "nobody"},
	}
	for name, c := range bad {
		t.Run(name, func(t *testing.T) {
			if status, tok := e.clientCredentials(t, "system/*.rs", e.backendAssertion(t, backendEHRID, c)); status == http.StatusOK || tok["error"] != "invalid_client" {
				t.Errorf("%d %v, want invalid_client", status, tok)
			}
		})
	}
}

func TestBackendServicesScopes(t *testing.T) {
	for _, tc := range []struct {
		version      int
		asked        string
		want         []string // nil: invalid_scope
		wantErrScope bool
	}{
		{2, "system/Observation.r system/Observation.s system/Patient.read system/*.read", []string{"system/Observation.r", "system/Observation.s", "system/Patient.read", "system/*.read"}, false},
		{1, "system/Patient.rs system/Patient.read system/*.rs system/*.read", []string{"system/Patient.read", "system/*.read"}, false},
		{2, "patient/Patient.rs openid launch", nil, true},
		{2, "system/Patient.c system/patient.rs system/Patient.rs?x=1", nil, true},
		{2, "", nil, true},
	} {
		e := newBackendEnv(t, func(o *AuthOptions) { o.ScopeVersion = tc.version })
		status, tok := e.clientCredentials(t, tc.asked, e.backendAssertion(t, backendEHRID, assertionClaims{}))
		if tc.wantErrScope {
			if status == http.StatusOK || tok["error"] != "invalid_scope" {
				t.Errorf("v%d %q: %d %v, want invalid_scope", tc.version, tc.asked, status, tok)
			}
			continue
		}
		if status != http.StatusOK {
			t.Errorf("v%d %q: %d %v", tc.version, tc.asked, status, tok)
			continue
		}
		if diff := cmp.Diff(tc.want, strings.Fields(tok["scope"].(string))); diff != "" {
			t.Errorf("v%d %q: granted (-want +got):\n%s", tc.version, tc.asked, diff)
		}
	}
}

// TestBackendServicesTokenNotForTheFHIRServer checks that the site's FHIR server, userinfo and introspection
// refuse a backend token: it is for the gateway.
func TestBackendServicesTokenNotForTheFHIRServer(t *testing.T) {
	e := newBackendEnv(t, nil)
	p1, _ := e.twoPatients(t)
	status, tok := e.clientCredentials(t, "system/*.rs system/*.read", e.backendAssertion(t, backendEHRID, assertionClaims{}))
	if status != http.StatusOK {
		t.Fatalf("client_credentials: %d %v", status, tok)
	}
	raw := tok["access_token"].(string)
	for _, path := range []string{"/Patient/" + p1, "/Patient", "/Observation?patient=" + p1} {
		r := e.fhirGet(t, path, raw)
		if r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%s with a backend token: %d WWW-Authenticate %q, want 401 invalid_token", path, r.status, r.header.Get("WWW-Authenticate"))
		}
	}
	if r := e.do(t, http.MethodGet, e.issuer()+"/userinfo", http.Header{"Authorization": {"Bearer " + raw}}, nil); r.status == http.StatusOK {
		t.Errorf("userinfo with a backend token: %d %s", r.status, r.body)
	}
	_, intro := e.post(t, "/introspect", url.Values{"token": {raw}}, e.backendAssertion(t, backendEHRID, assertionClaims{}))
	if intro["active"] != false {
		t.Errorf("introspection of a backend token: %v", intro)
	}
	// The same site still serves its own tokens.
	g := e.launch(t, authRequestParams{}, p1)
	if r := e.fhirGet(t, "/Patient/"+p1, g.access()); r.status != http.StatusOK {
		t.Errorf("patient token: %d", r.status)
	}
}

func TestBackendServicesOptionsValidated(t *testing.T) {
	jwks := testKeys.jwks(t)
	bad := map[string]Client{
		"no JWKS":          {ID: "b", Secret: "s", BackendAudience: backendAudience},
		"blank audience":   {ID: "b", JWKS: jwks, BackendAudience: "  "},
		"control in aud":   {ID: "b", JWKS: jwks, BackendAudience: "aud\n"},
		"audience too big": {ID: "b", JWKS: jwks, BackendAudience: strings.Repeat("a", maxBackendAudienceLen+1)},
	}
	for name, c := range bad {
		if _, err := New(Options{Sites: []SiteOptions{{Name: "x", Auth: &AuthOptions{Clients: []Client{c}}}}}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A backend-only client needs no redirect URIs, and cannot use the code flow.
	good := Client{ID: "b", JWKS: jwks, BackendAudience: backendAudience}
	if _, err := New(Options{Sites: []SiteOptions{{Name: "x", Auth: &AuthOptions{Clients: []Client{good}}}}}); err != nil {
		t.Errorf("backend-only client refused: %v", err)
	}
	ac := &authClient{id: "b", backendAudience: backendAudience}
	if got := ac.GrantTypes(); len(got) != 1 || got[0] != "client_credentials" {
		t.Errorf("grant types of a backend-only client: %v", got)
	}
}
