package auth

import (
	"crypto"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"secondlook/fhir"
)

var (
	_ fhir.TokenSource = (*Tokens)(nil)
	_ fhir.Refresher   = (*Tokens)(nil)
)

func usePrivateKeyJWT(clientID, alg string, key crypto.Signer) func(*Config) {
	return func(c *Config) {
		s := &c.Sources[0]
		s.ClientID, s.Method, s.Secret, s.Key, s.KeyID, s.Alg = clientID, MethodPrivateKeyJWT, nil, key, "gw-"+alg, alg
	}
}

func TestStandaloneLaunch(t *testing.T) {
	tests := []struct {
		name   string
		config func(*Config)
	}{
		{"client_secret_basic", nil},
		{"private_key_jwt RS384", usePrivateKeyJWT("gw-rsa", AlgRS384, clientRSAKey)},
		{"private_key_jwt ES384", usePrivateKeyJWT("gw-ec", AlgES384, clientECKey)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOptions{config: tt.config})
			cb, authURL := e.begin(BeginRequest{})
			u, _ := url.Parse(authURL)
			q := u.Query()
			if got, want := u.Scheme+"://"+u.Host+u.Path, e.fake.endpoint("authorize"); got != want {
				t.Fatalf("authorize endpoint %s, want %s", got, want)
			}
			wantParams := map[string]string{
				"response_type":         "code",
				"client_id":             e.cfg.Sources[0].ClientID,
				"redirect_uri":          testPublicURL + "/auth/callback/h1",
				"aud":                   e.fake.base(),
				"code_challenge_method": "S256",
				"scope": "launch/patient openid fhirUser offline_access patient/Patient.rs patient/DiagnosticReport.rs " +
					"patient/Observation.rs patient/ImagingStudy.rs patient/Condition.rs",
			}
			for k, v := range wantParams {
				if q.Get(k) != v {
					t.Errorf("authorize %s = %q, want %q", k, q.Get(k), v)
				}
			}
			for _, k := range []string{"state", "nonce", "code_challenge"} {
				if len(q.Get(k)) < 43 {
					t.Errorf("authorize %s = %q: want at least 256 bits", k, q.Get(k))
				}
			}
			if q.Has("code_verifier") || q.Has("client_secret") {
				t.Error("verifier or secret in the authorize URL")
			}

			g, err := e.client.Complete(t.Context(), "h1", cb, testBinding)
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			want := &Grant{
				Key: "rev-1/h1", SourceID: "h1", ReviewID: "rev-1", Patient: "pat-123", FHIRUser: "Patient/pat-123",
				Scopes:       parseScope(wantParams["scope"]),
				GrantedTypes: DefaultResourceTypes(), Refreshable: true,
			}
			if diff := cmp.Diff(want, g, cmpopts.IgnoreFields(Grant{}, "AccessExpiry", "GrantedAt", "ExpiresAt")); diff != "" {
				t.Errorf("grant (-want +got):\n%s", diff)
			}
			if d := g.AccessExpiry.Sub(e.clock.Now()); d < 59*time.Minute || d > time.Hour {
				t.Errorf("access expiry in %v", d)
			}
			tok, err := e.client.Tokens(g.Key).Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(tok, "AT-") || !e.fake.accessLive(tok) {
				t.Fatalf("Token returned %q, not a live access token", tok)
			}
			if e.fake.refreshes.Load() != 0 {
				t.Fatal("a fresh token was refreshed")
			}
		})
	}
}

func TestJWKS(t *testing.T) {
	e := newEnv(t, envOptions{config: func(c *Config) {
		usePrivateKeyJWT("gw-rsa", AlgRS384, clientRSAKey)(c)
		c.Sources = append(c.Sources,
			Source{ID: "h2", FHIRBaseURL: "https://h2.example/fhir", ClientID: "x", Method: MethodPrivateKeyJWT,
				Key: clientECKey, KeyID: "gw-ES384", Alg: AlgES384},
			Source{ID: "h3", FHIRBaseURL: "https://h3.example/fhir", ClientID: "x", Method: MethodPrivateKeyJWT,
				Key: clientECKey, KeyID: "gw-ES384", Alg: AlgES384}, // same key at two sources: published once
			Source{ID: "h4", FHIRBaseURL: "https://h4.example/fhir", ClientID: "x", Method: MethodClientSecretBasic,
				Secret: []byte("other-secret")})
	}})
	raw, err := e.client.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Fatalf("JWKS publishes a private key (%s)", k.KeyID)
		}
		got = append(got, k.KeyID+"/"+k.Algorithm+"/"+k.Use)
	}
	if diff := cmp.Diff([]string{"gw-RS384/RS384/sig", "gw-ES384/ES384/sig"}, got); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
	for _, s := range []string{`"d"`, `"p"`, `"q"`, "other-secret", testSecret} {
		if strings.Contains(string(raw), s) {
			t.Errorf("JWKS contains %s", s)
		}
	}
}

func TestScopeDialect(t *testing.T) {
	v2 := []string{"permission-v2"}
	v1 := []string{"permission-v1"}
	both := []string{"Permission-V1 ", " permission-v2"} // lenient: case and spaces
	tests := []struct {
		name       string
		caps       []string
		configured string
		ehr        bool
		wantSuffix string
		wantLaunch string
	}{
		{"auto v2", v2, "", false, ".rs", "launch/patient"},
		{"auto v1", v1, "", false, ".read", "launch/patient"},
		{"auto both prefers v2", both, DialectAuto, false, ".rs", "launch/patient"},
		{"auto neither falls back to v1", nil, "", false, ".read", "launch/patient"},
		{"forced v1 on v2 server", v2, DialectV1, false, ".read", "launch/patient"},
		{"forced v2 on v1 server", v1, DialectV2, false, ".rs", "launch/patient"},
		{"ehr launch", v2, "", true, ".rs", "launch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOptions{
				fake:   func(o *fakeOptions) { o.capabilities = append(slices.Clone(tt.caps), "sso-openid-connect") },
				config: func(c *Config) { c.Sources[0].ScopeDialect = tt.configured },
			})
			req := BeginRequest{SourceID: "h1", ReviewID: "rev-1", Binding: testBinding}
			if tt.ehr {
				req.Launch = "launch-for-pat-9"
			}
			authURL, err := e.client.Begin(t.Context(), req)
			if err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(authURL)
			scopes := strings.Fields(u.Query().Get("scope"))
			if scopes[0] != tt.wantLaunch || slices.Contains(scopes[1:], "launch") || slices.Contains(scopes[1:], "launch/patient") {
				t.Errorf("launch scope: %q", scopes)
			}
			for _, typ := range DefaultResourceTypes() {
				if !slices.Contains(scopes, "patient/"+typ+tt.wantSuffix) {
					t.Errorf("scope lacks patient/%s%s: %q", typ, tt.wantSuffix, scopes)
				}
			}
			if tt.ehr != u.Query().Has("launch") {
				t.Errorf("launch parameter present = %v", u.Query().Has("launch"))
			}
		})
	}
}

// TestIdentityOnlyScopes: a sign-in only to learn who the patient is asks for the patient context and, where the
// server speaks OIDC, openid fhirUser; no resource scope and no offline access.
func TestIdentityOnlyScopes(t *testing.T) {
	e := newEnv(t, envOptions{fake: func(o *fakeOptions) { o.capabilities = append(o.capabilities, "sso-openid-connect") }})
	authURL, err := e.client.Begin(t.Context(), BeginRequest{SourceID: "h1", ReviewID: "rev-1", Binding: testBinding, IdentityOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(authURL)
	if got := strings.Fields(u.Query().Get("scope")); !slices.Equal(got, []string{"launch/patient", "openid", "fhirUser"}) {
		t.Errorf("identity-only scopes: %q", got)
	}
}

func TestNarrowerGrant(t *testing.T) {
	e := newEnv(t, envOptions{fake: func(o *fakeOptions) {
		o.grant = func(string) string {
			// The patient unticked ImagingStudy and Condition; the server grants Observation for lab results only,
			// and DiagnosticReport read without search.
			return "launch/patient openid fhirUser offline_access patient/Patient.rs " +
				"patient/Observation.rs?category=laboratory patient/DiagnosticReport.r"
		}
	}})
	g := e.authorize()
	if diff := cmp.Diff([]string{"Patient", "Observation"}, g.GrantedTypes); diff != "" {
		t.Errorf("granted (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"DiagnosticReport", "ImagingStudy", "Condition"}, g.DeniedTypes); diff != "" {
		t.Errorf("denied (-want +got):\n%s", diff)
	}
	if stored, err := e.client.LoadGrant(t.Context(), g.Key); err != nil || !cmp.Equal(stored.DeniedTypes, g.DeniedTypes) {
		t.Fatalf("stored grant: %+v, %v", stored, err)
	}
}

func TestSplitTypes(t *testing.T) {
	types := []string{"Patient", "Observation", "Condition"}
	tests := []struct {
		scope  string
		denied []string
	}{
		{"patient/*.read", nil},
		{"patient/*.rs", nil},
		{"user/Patient.read patient/Observation.cruds patient/Condition.*", nil},
		{"patient/Patient.rs patient/Observation.s patient/Condition.r", []string{"Observation", "Condition"}},
		{"patient/Patient.write patient/Observation.c", []string{"Patient", "Observation", "Condition"}},
		{"system/Patient.rs patient/Observation.rsx patient/Condition.rs", []string{"Patient", "Observation"}},
		{"", types},
	}
	for _, tt := range tests {
		_, denied := splitTypes(parseScope(tt.scope), types)
		if diff := cmp.Diff(tt.denied, denied); diff != "" {
			t.Errorf("%q: denied (-want +got):\n%s", tt.scope, diff)
		}
	}
}

func TestEHRLaunch(t *testing.T) {
	e := newEnv(t, envOptions{})
	authURL, err := e.client.BeginEHRLaunch(t.Context(), e.fake.base()+"/", "launch-for-pat-777", testBinding, "rev-9")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(authURL)
	if u.Query().Get("launch") != "launch-for-pat-777" {
		t.Fatalf("launch param %q", u.Query().Get("launch"))
	}
	g, err := e.client.Complete(t.Context(), "h1", e.follow(authURL, "h1"), testBinding)
	if err != nil {
		t.Fatal(err)
	}
	if g.Patient != "pat-777" || g.Key != "rev-9/h1" {
		t.Fatalf("grant %+v", g)
	}
}

func TestDiscovery(t *testing.T) {
	e := newEnv(t, envOptions{fake: func(o *fakeOptions) {
		o.capabilities = []string{" Launch-Standalone", "permission-v2", "sso-openid-connect"}
	}})
	conf, err := e.client.Discover(t.Context(), "h1")
	if err != nil {
		t.Fatal(err)
	}
	if !conf.Has("launch-standalone") || !conf.Has("PERMISSION-V2") || conf.Has("permission-v1") {
		t.Errorf("capabilities %q", conf.Capabilities)
	}
	if _, err := e.client.Discover(t.Context(), "h1"); err != nil {
		t.Fatal(err)
	}
	// The document is read at <base>/.well-known/smart-configuration, once (cached).
	if diff := cmp.Diff([]string{"/site/fhir/.well-known/smart-configuration"}, e.fake.seenURLs()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	e.clock.Advance(2 * time.Hour) // past DiscoveryTTL
	if _, err := e.client.Discover(t.Context(), "h1"); err != nil {
		t.Fatal(err)
	}
	if n := len(e.fake.seenURLs()); n != 2 {
		t.Errorf("%d requests after the cache expired, want 2", n)
	}
	if _, err := e.client.Discover(t.Context(), "nope"); !errors.Is(err, ErrUnknownSource) {
		t.Errorf("unknown source: %v", err)
	}
}

func TestParseSMARTConfiguration(t *testing.T) {
	good := map[string]any{
		"issuer": "https://as.example/auth", "jwks_uri": "https://as.example/jwks",
		"authorization_endpoint": "https://as.example/authorize", "token_endpoint": "https://as.example/token",
		"grant_types_supported": []string{"authorization_code"}, "code_challenge_methods_supported": []string{"S256"},
		"capabilities": []any{"launch-standalone", 42, nil, "  Permission-V2  ", "sso-openid-connect"},
	}
	mutate := func(f func(m map[string]any)) []byte {
		m := map[string]any{}
		for k, v := range good {
			m[k] = v
		}
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	conf, err := parseSMARTConfiguration(mutate(func(map[string]any) {}), "https://fhir.example/r4")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"launch-standalone", "permission-v2", "sso-openid-connect"}, conf.Capabilities); diff != "" {
		t.Errorf("capabilities (-want +got):\n%s", diff)
	}
	plain, err := parseSMARTConfiguration(mutate(func(m map[string]any) {
		delete(m, "issuer")
		delete(m, "jwks_uri")
		m["capabilities"] = []string{"launch-standalone"}
	}), "https://fhir.example/r4")
	if err != nil || plain.OIDC() {
		t.Fatalf("a plain OAuth server: %v, OIDC %v", err, plain != nil && plain.OIDC())
	}
	bad := []struct {
		name string
		f    func(m map[string]any)
		want string
	}{
		{"plain PKCE only", func(m map[string]any) { m["code_challenge_methods_supported"] = []string{"plain"} }, "S256"},
		{"no PKCE", func(m map[string]any) { delete(m, "code_challenge_methods_supported") }, "S256"},
		{"no token endpoint", func(m map[string]any) { delete(m, "token_endpoint") }, "token_endpoint missing"},
		{"no authorize endpoint", func(m map[string]any) { delete(m, "authorization_endpoint") }, "authorization_endpoint missing"},
		{"no issuer", func(m map[string]any) { delete(m, "issuer") }, "issuer missing"},
		{"no jwks", func(m map[string]any) { delete(m, "jwks_uri") }, "jwks_uri missing"},
		{"no capabilities", func(m map[string]any) { delete(m, "capabilities") }, "capabilities"},
		{"http endpoint for https base", func(m map[string]any) { m["token_endpoint"] = "http://as.example/token" }, "https"},
		{"relative endpoint", func(m map[string]any) { m["token_endpoint"] = "/token" }, "absolute"},
		{"issuer without jwks_uri", func(m map[string]any) {
			delete(m, "jwks_uri")
			m["capabilities"] = []string{"launch-standalone"}
		}, "must come together"},
		{"no code grant", func(m map[string]any) { m["grant_types_supported"] = []string{"client_credentials"} }, "authorization_code"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseSMARTConfiguration(mutate(tt.f), "https://fhir.example/r4")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	_, err := New(Config{
		PublicURL: "http://gateway.example", // plain http off loopback
		Sources: []Source{
			{ID: "A", FHIRBaseURL: "https://a.example/fhir", ClientID: "x", Method: MethodClientSecretBasic},
			{ID: "b", FHIRBaseURL: "ftp://b.example", ClientID: "", Method: "magic"},
			{ID: "c", FHIRBaseURL: "https://c.example/fhir", ClientID: "x", Method: MethodPrivateKeyJWT, Key: clientECKey, Alg: AlgRS384},
			{ID: "c", FHIRBaseURL: "https://c.example/fhir/", ClientID: "x", Method: MethodNone, ScopeDialect: "v3",
				ResourceTypes: []string{"Patient", "Patient", "bad type"}},
		},
	}, nil, nil)
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{
		"stores are required", "keyring is required", "public URL: plain http",
		"sources[0]: id must match", "sources[0]: client_secret_basic needs a secret",
		"source b: FHIR base URL", "source b: method must be", "source b: client id is required",
		"source c: private_key_jwt needs a key id", "source c: RS384 needs an RSA private key",
		"source c: duplicate id", "same FHIR base URL as source c", "scope dialect must be",
		`resource type "Patient" is invalid or repeated`, `resource type "bad type"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q", want)
		}
	}
}

// A server shaped like the Inferno reference server: issuer = FHIR base, a JWKS without kid in padded base64url
// with a sign byte in n, id_tokens without kid or nonce, token_type "bearer". Standalone launch, refresh and
// revocation work with standard settings.
func TestReferenceServerQuirks(t *testing.T) {
	e := newEnv(t, envOptions{fake: func(o *fakeOptions) { o.inferno = true; o.rotateRefresh = true }})
	g := e.authorize()
	e.clock.Advance(2 * time.Hour)
	tok, err := e.client.Tokens(g.Key).Token(t.Context())
	if err != nil || !e.fake.accessLive(tok) || e.fake.refreshes.Load() != 1 {
		t.Fatalf("refresh: %v (refreshes %d)", err, e.fake.refreshes.Load())
	}
	if err := e.client.Revoke(t.Context(), g.Key); err != nil {
		t.Fatal(err)
	}
}

// A source that is not an OpenID provider: no openid/fhirUser scope and no nonce are asked, no id_token expected.
func TestSourceWithoutOpenIDConnect(t *testing.T) {
	e := newEnv(t, envOptions{fake: func(o *fakeOptions) { o.noOIDC = true }})
	cb, authURL := e.begin(BeginRequest{})
	q, _ := url.Parse(authURL)
	if s := q.Query().Get("scope"); strings.Contains(s, "openid") || strings.Contains(s, "fhirUser") || q.Query().Has("nonce") {
		t.Fatalf("OpenID asked of a plain OAuth server: %s", q.RawQuery)
	}
	g, err := e.client.Complete(t.Context(), "h1", cb, testBinding)
	if err != nil {
		t.Fatal(err)
	}
	if g.Patient != "pat-123" || g.FHIRUser != "" || len(g.DeniedTypes) != 0 {
		t.Fatalf("grant %+v", g)
	}
}
