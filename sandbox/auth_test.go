package sandbox

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
)

// getJSON fetches a JSON document without a token.
func (e *authEnv) getJSON(t testing.TB, rawURL string) map[string]any {
	t.Helper()
	r := e.get(t, rawURL)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: status %d: %.300s", rawURL, r.status, r.body)
	}
	var out map[string]any
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	return out
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func scopeSet(v any) []string {
	s, _ := v.(string)
	return sorted(strings.Fields(s))
}

func TestAuthDiscovery(t *testing.T) {
	for _, version := range []int{1, 2} {
		t.Run("v"+strconv.Itoa(version), func(t *testing.T) {
			e := newAuthEnv(t, func(o *AuthOptions) { o.ScopeVersion = version })
			iss := e.issuer()
			sc := e.getJSON(t, e.fhirBase()+"/.well-known/smart-configuration")
			for k, want := range map[string]string{
				"issuer": iss, "jwks_uri": iss + "/jwks", "authorization_endpoint": iss + "/authorize",
				"token_endpoint": iss + "/token", "introspection_endpoint": iss + "/introspect",
				"revocation_endpoint": iss + "/revoke",
			} {
				if sc[k] != want {
					t.Errorf("smart-configuration %s = %v, want %s", k, sc[k], want)
				}
			}
			for k, want := range map[string][]string{
				"token_endpoint_auth_methods_supported":            {"client_secret_basic", "private_key_jwt"},
				"token_endpoint_auth_signing_alg_values_supported": {"ES384", "RS384"},
				"grant_types_supported":                            {"authorization_code", "client_credentials", "refresh_token"},
				"response_types_supported":                         {"code"},
				"code_challenge_methods_supported":                 {"S256"},
			} {
				if diff := cmp.Diff(want, sorted(strs(sc[k]))); diff != "" {
					t.Errorf("smart-configuration %s (-want +got):\n%s", k, diff)
				}
			}
			perm, other := "permission-v2", "permission-v1"
			scope, system := "patient/Observation.rs", "system/*.rs"
			if version == 1 {
				perm, other, scope, system = other, perm, "patient/Observation.read", "system/*.read"
			}
			caps := strs(sc["capabilities"])
			for _, c := range []string{"launch-standalone", "launch-ehr", "client-confidential-symmetric",
				"client-confidential-asymmetric", "context-standalone-patient", "context-ehr-patient",
				"permission-offline", "permission-patient", perm, "sso-openid-connect"} {
				if !slices.Contains(caps, c) {
					t.Errorf("capabilities %v lack %s", caps, c)
				}
			}
			for _, c := range []string{other, "client-public", "authorize-post"} {
				if slices.Contains(caps, c) {
					t.Errorf("capabilities %v include %s", caps, c)
				}
			}
			for _, want := range []string{scope, system} {
				if !slices.Contains(strs(sc["scopes_supported"]), want) {
					t.Errorf("scopes_supported %v lack %s", sc["scopes_supported"], want)
				}
			}

			oidcDoc := e.getJSON(t, iss+"/.well-known/openid-configuration")
			if oidcDoc["issuer"] != iss || oidcDoc["token_endpoint"] != iss+"/token" || oidcDoc["jwks_uri"] != iss+"/jwks" {
				t.Errorf("OpenID discovery: %v", oidcDoc)
			}
			if !slices.Contains(strs(oidcDoc["grant_types_supported"]), "client_credentials") {
				t.Errorf("OpenID grant_types_supported %v lack client_credentials", oidcDoc["grant_types_supported"])
			}
			if !slices.Contains(strs(oidcDoc["scopes_supported"]), system) {
				t.Errorf("OpenID scopes_supported %v lack %s", oidcDoc["scopes_supported"], system)
			}
			if diff := cmp.Diff([]string{"S256"}, strs(oidcDoc["code_challenge_methods_supported"])); diff != "" {
				t.Errorf("OpenID code_challenge_methods_supported (-want +got):\n%s", diff)
			}
			if oidcDoc["authorization_response_iss_parameter_supported"] != true {
				t.Errorf("OpenID discovery does not announce RFC 9207 iss")
			}
			keys := e.getJSON(t, iss+"/jwks")
			if ks, _ := keys["keys"].([]any); len(ks) != 1 {
				t.Errorf("jwks: %v", keys)
			}

			// The CapabilityStatement stays public and names the OAuth endpoints.
			cs := e.fhirGet(t, "/metadata", "")
			if cs.status != http.StatusOK || !bytes.Contains(cs.body, []byte(`"SMART-on-FHIR"`)) ||
				!bytes.Contains(cs.body, []byte(`"valueUri":"`+iss+`/token"`)) {
				t.Errorf("metadata: status %d, no SMART security: %.500s", cs.status, cs.body)
			}
		})
	}
}

func TestAuthDiscoveryAbsentWithoutAuth(t *testing.T) {
	ts := newTestServer(t, Options{})
	if r := ts.get(t, ts.base("hospital")+"/.well-known/smart-configuration"); r.status != http.StatusNotFound {
		t.Errorf("smart-configuration on an open site: status %d, want 404", r.status)
	}
	if r := ts.get(t, ts.http.URL+"/hospital/auth/.well-known/openid-configuration"); r.status != http.StatusNotFound {
		t.Errorf("OpenID discovery on an open site: status %d, want 404", r.status)
	}
	r := ts.get(t, ts.base("hospital")+"/metadata")
	if bytes.Contains(r.body, []byte("security")) {
		t.Errorf("open site advertises security: %.300s", r.body)
	}
}

// idTokenClaims verifies an id_token with the site's JWKS and returns its claims.
func (e *authEnv) idTokenClaims(t testing.TB, raw string) map[string]any {
	t.Helper()
	r := e.get(t, e.issuer()+"/jwks")
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(r.body, &set); err != nil {
		t.Fatalf("jwks: %v", err)
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("parse id_token: %v", err)
	}
	var claims map[string]any
	if err := tok.Claims(set.Keys[0].Key, &claims); err != nil {
		t.Fatalf("id_token signature: %v", err)
	}
	return claims
}

func TestAuthStandaloneLaunchClientSecretBasic(t *testing.T) {
	e := newAuthEnv(t, nil)
	p1, _ := e.twoPatients(t)
	b := e.browser(t)
	verifier := newVerifier()
	f := e.openLogin(t, b, e.authorizeURL(authRequestParams{state: "xyz-state", nonce: "n-123"}, verifier))
	if diff := cmp.Diff(e.siteObj().Patients(), f.patients); diff != "" {
		t.Errorf("patients on the sign-in page (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"Patient", "DiagnosticReport", "Observation"}, f.types); diff != "" {
		t.Errorf("types on the sign-in page (-want +got):\n%s", diff)
	}
	cb := e.submit(t, b, f, "approve", p1, nil)
	if cb.Query().Get("state") != "xyz-state" || cb.Query().Get("iss") != e.issuer() {
		t.Errorf("callback %s: want state xyz-state and iss %s", cb, e.issuer())
	}
	status, tok := e.exchange(t, cb.Query().Get("code"), verifier, basicAuth(secretClientID, secretValue))
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, tok)
	}
	if tok["token_type"] != "Bearer" || tok["patient"] != p1 || tok["access_token"] == "" {
		t.Errorf("token response %v", tok)
	}
	if exp, _ := tok["expires_in"].(float64); exp < 200 || exp > 300 {
		t.Errorf("expires_in %v, want about 300", tok["expires_in"])
	}
	if diff := cmp.Diff(sorted(strings.Fields(defaultScope)), scopeSet(tok["scope"])); diff != "" {
		t.Errorf("granted scope (-want +got):\n%s", diff)
	}
	if _, ok := tok["refresh_token"]; ok {
		t.Errorf("refresh_token without offline_access")
	}
	claims := e.idTokenClaims(t, tok["id_token"].(string))
	if claims["nonce"] != "n-123" || claims["fhirUser"] != e.fhirBase()+"/Patient/"+p1 || claims["iss"] != e.issuer() {
		t.Errorf("id_token claims %v", claims)
	}
	if aud := claims["aud"]; !slices.Contains(strs(aud), secretClientID) {
		t.Errorf("id_token aud %v", aud)
	}

	// The code is single use.
	if status, body := e.exchange(t, cb.Query().Get("code"), verifier, basicAuth(secretClientID, secretValue)); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("second exchange: %d %v, want invalid_grant", status, body)
	}

	access := tok["access_token"].(string)
	if r := e.fhirGet(t, "/Patient/"+p1, access); r.status != http.StatusOK {
		t.Errorf("read own Patient: %d %.200s", r.status, r.body)
	}
	for _, path := range []string{"/DiagnosticReport?patient=" + p1, "/Observation?_count=50", "/Patient"} {
		r := e.fhirGet(t, path, access)
		es := entries(t, decodeSearchset(t, r))
		if len(es) == 0 {
			t.Errorf("%s: no entries", path)
		}
		for _, en := range es {
			if en.typ == "Patient" && en.id != p1 {
				t.Errorf("%s returned Patient/%s", path, en.id)
			}
			if subj, _ := en.resource["subject"].(map[string]any); subj != nil && subj["reference"] != "Patient/"+p1 {
				t.Errorf("%s returned a resource of %v", path, subj["reference"])
			}
		}
	}
	// A type outside the granted scopes is refused, for search and read.
	r := e.fhirGet(t, "/Condition?patient="+p1, access)
	if r.status != http.StatusForbidden || operationOutcomeCode(t, r) != "forbidden" {
		t.Errorf("Condition search without a Condition scope: %d %.200s", r.status, r.body)
	}
	conditions := e.siteObj().store.types["Condition"].byPatient[p1]
	if len(conditions) == 0 {
		t.Fatal("the patient has no Condition")
	}
	if r := e.fhirGet(t, "/Condition/"+conditions[0].id, access); r.status != http.StatusForbidden {
		t.Errorf("Condition read without a Condition scope: %d", r.status)
	}
}

func TestAuthNoIDTokenWithoutOpenID(t *testing.T) {
	e := newAuthEnv(t, nil)
	p1, _ := e.twoPatients(t)
	g := e.launch(t, authRequestParams{scope: "launch/patient patient/Patient.rs"}, p1)
	if _, ok := g.token["id_token"]; ok {
		t.Errorf("id_token without openid: %v", g.token)
	}
	if g.token["patient"] != p1 {
		t.Errorf("token response %v", g.token)
	}
}

func TestAuthPrivateKeyJWT(t *testing.T) {
	e := newAuthEnv(t, nil)
	p1, _ := e.twoPatients(t)
	codeFor := func(t *testing.T) (string, string) {
		verifier := newVerifier()
		b := e.browser(t)
		f := e.openLogin(t, b, e.authorizeURL(authRequestParams{clientID: jwtClientID}, verifier))
		return e.submit(t, b, f, "approve", p1, nil).Query().Get("code"), verifier
	}
	for _, alg := range []jose.SignatureAlgorithm{jose.RS384, jose.ES384} {
		t.Run(string(alg), func(t *testing.T) {
			code, verifier := codeFor(t)
			status, tok := e.exchange(t, code, verifier, assertionAuth(e.assertion(t, assertionClaims{alg: alg})))
			if status != http.StatusOK || tok["patient"] != p1 {
				t.Fatalf("token with %s assertion: %d %v", alg, status, tok)
			}
			if r := e.fhirGet(t, "/Patient/"+p1, tok["access_token"].(string)); r.status != http.StatusOK {
				t.Errorf("read with the token: %d", r.status)
			}
		})
	}
	t.Run("reused jti", func(t *testing.T) {
		a := e.assertion(t, assertionClaims{jti: "once-only"})
		code, verifier := codeFor(t)
		if status, tok := e.exchange(t, code, verifier, assertionAuth(a)); status != http.StatusOK {
			t.Fatalf("first use: %d %v", status, tok)
		}
		code, verifier = codeFor(t)
		if status, tok := e.exchange(t, code, verifier, assertionAuth(a)); status == http.StatusOK || tok["error"] != "invalid_client" {
			t.Errorf("replayed assertion: %d %v, want invalid_client", status, tok)
		}
	})
	bad := map[string]assertionClaims{
		"RS256":          {alg: jose.RS256},
		"aud is issuer":  {aud: e.issuer()},
		"exp too far":    {exp: 10 * time.Minute},
		"expired":        {exp: -2 * time.Minute},
		"unknown kid":    {kid: "nope"},
		"other issuer":   {iss: secretClientID},
		"unknown client": {iss: "nobody"},
	}
	for name, c := range bad {
		t.Run(name, func(t *testing.T) {
			code, verifier := codeFor(t)
			if status, tok := e.exchange(t, code, verifier, assertionAuth(e.assertion(t, c))); status == http.StatusOK || tok["error"] != "invalid_client" {
				t.Errorf("%s: %d %v, want invalid_client", name, status, tok)
			}
		})
	}
	t.Run("client_secret_post refused", func(t *testing.T) {
		verifier := newVerifier()
		b := e.browser(t)
		f := e.openLogin(t, b, e.authorizeURL(authRequestParams{}, verifier))
		code := e.submit(t, b, f, "approve", p1, nil).Query().Get("code")
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {testRedirect},
			"code_verifier": {verifier}, "client_id": {secretClientID}, "client_secret": {secretValue}}
		if status, tok := e.post(t, "/token", form, nil); status == http.StatusOK || tok["error"] != "invalid_client" {
			t.Errorf("client_secret_post: %d %v", status, tok)
		}
	})
	t.Run("client_id of another client", func(t *testing.T) {
		code, verifier := codeFor(t)
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {testRedirect},
			"code_verifier": {verifier}, "client_id": {secretClientID}}
		if status, tok := e.post(t, "/token", form, assertionAuth(e.assertion(t, assertionClaims{}))); status == http.StatusOK || tok["error"] != "invalid_client" {
			t.Errorf("assertion with another client_id: %d %v", status, tok)
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		code, verifier := codeFor(t)
		if status, tok := e.exchange(t, code, verifier, basicAuth(secretClientID, "wrong")); status == http.StatusOK || tok["error"] != "invalid_client" {
			t.Errorf("wrong secret: %d %v", status, tok)
		}
	})
}

// authorizeError sends the browser to /authorize and returns the error redirect to the client.
func (e *authEnv) authorizeError(t *testing.T, authURL string) url.Values {
	t.Helper()
	resp, err := e.browser(t).Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc.String(), testRedirect) {
		t.Fatalf("authorize: status %d Location %q, want an error redirect to the client", resp.StatusCode, resp.Header.Get("Location"))
	}
	q := loc.Query()
	if q.Get("iss") != e.issuer() {
		t.Errorf("error redirect without RFC 9207 iss: %s", loc)
	}
	if q.Get("code") != "" {
		t.Errorf("error redirect carries a code")
	}
	return q
}

func TestAuthRejectsBadAuthorizationRequests(t *testing.T) {
	e := newAuthEnv(t, nil)
	v := newVerifier()
	cases := map[string]struct {
		p    authRequestParams
		want string
	}{
		"PKCE missing":         {authRequestParams{omitChallenge: true}, "invalid_request"},
		"PKCE plain":           {authRequestParams{challenge: v, method: "plain"}, "invalid_request"},
		"PKCE method missing":  {authRequestParams{method: "-"}, "invalid_request"},
		"aud wrong":            {authRequestParams{aud: "http://evil.example/fhir"}, "invalid_request"},
		"aud other site":       {authRequestParams{aud: e.base("clinic")}, "invalid_request"},
		"aud missing":          {authRequestParams{aud: "-"}, "invalid_request"},
		"launch unknown":       {authRequestParams{scope: "launch openid patient/Patient.rs", launch: "nope"}, "invalid_request"},
		"launch without param": {authRequestParams{scope: "launch openid patient/Patient.rs"}, "invalid_request"},
		"launch without scope": {authRequestParams{launch: e.siteObj().NewEHRLaunch(e.siteObj().Patients()[0])}, "invalid_scope"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			c.p.state = "s-" + name
			q := e.authorizeError(t, e.authorizeURL(c.p, v))
			if q.Get("error") != c.want || q.Get("state") != c.p.state {
				t.Errorf("got %v, want error %s and the state", q, c.want)
			}
		})
	}
}

func TestAuthRedirectURIExact(t *testing.T) {
	e := newAuthEnv(t, nil)
	v := newVerifier()
	for _, uri := range []string{testRedirect + "/x", testRedirect + "?a=b", "http://127.0.0.1:2/callback", "https://evil.example/cb"} {
		resp, err := e.browser(t).Get(e.authorizeURL(authRequestParams{redirectURI: uri}, v))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("redirect_uri %s: status %d Location %q, want 400 without a redirect", uri, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// The code is bound to the redirect URI it was issued for.
	p1, _ := e.twoPatients(t)
	b := e.browser(t)
	f := e.openLogin(t, b, e.authorizeURL(authRequestParams{redirectURI: otherRedirect}, v))
	code := e.submit(t, b, f, "approve", p1, nil).Query().Get("code")
	if status, tok := e.exchange(t, code, v, basicAuth(secretClientID, secretValue)); status == http.StatusOK || tok["error"] != "invalid_grant" {
		t.Errorf("exchange with another redirect_uri: %d %v, want invalid_grant", status, tok)
	}
}

func TestAuthPKCEVerifierChecked(t *testing.T) {
	e := newAuthEnv(t, nil)
	p1, _ := e.twoPatients(t)
	for name, verifier := range map[string]string{"missing": "", "wrong": newVerifier()} {
		t.Run(name, func(t *testing.T) {
			v := newVerifier()
			b := e.browser(t)
			f := e.openLogin(t, b, e.authorizeURL(authRequestParams{}, v))
			code := e.submit(t, b, f, "approve", p1, nil).Query().Get("code")
			if status, tok := e.exchange(t, code, verifier, basicAuth(secretClientID, secretValue)); status == http.StatusOK || tok["error"] != "invalid_grant" {
				t.Errorf("verifier %s: %d %v, want invalid_grant", name, status, tok)
			}
		})
	}
}

func TestAuthDeny(t *testing.T) {
	e := newAuthEnv(t, nil)
	b := e.browser(t)
	f := e.openLogin(t, b, e.authorizeURL(authRequestParams{state: "deny-state"}, newVerifier()))
	cb := e.submit(t, b, f, "deny", "", nil)
	q := cb.Query()
	if q.Get("error") != "access_denied" || q.Get("state") != "deny-state" || q.Get("iss") != e.issuer() || q.Get("code") != "" {
		t.Errorf("deny redirect %s", cb)
	}
}

func TestAuthSignInFormNeedsItsBrowser(t *testing.T) {
	e := newAuthEnv(t, nil)
	p1, _ := e.twoPatients(t)
	f := e.openLogin(t, e.browser(t), e.authorizeURL(authRequestParams{}, newVerifier()))
	form := url.Values{"decision": {"approve"}, "patient": {p1}}
	for k, vs := range f.hidden {
		form[k] = vs
	}
	// Another browser (no cookie) posting the same form, and the right browser with a forged token, are refused.
	status := func(resp *http.Response, err error) int {
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if st := status(e.browser(t).PostForm(e.http.URL+f.action, form)); st != http.StatusForbidden { //nolint:bodyclose // status closes it
		t.Errorf("form from another browser: %d", st)
	}
	b := e.browser(t)
	f = e.openLogin(t, b, e.authorizeURL(authRequestParams{}, newVerifier()))
	forged := url.Values{"decision": {"approve"}, "patient": {p1}, "id": {f.hidden.Get("id")}, "csrf": {"forged"}}
	if st := status(b.PostForm(e.http.URL+f.action, forged)); st != http.StatusForbidden { //nolint:bodyclose // status closes it
		t.Errorf("forged CSRF token: %d", st)
	}
	// A forged token sent as both cookie and field does not match the request's.
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"},
		"Cookie": {csrfCookie(f.hidden.Get("id")) + "=forged"}}
	if r := e.do(t, http.MethodPost, e.http.URL+f.action, h, strings.NewReader(forged.Encode())); r.status != http.StatusForbidden {
		t.Errorf("forged cookie and field: %d", r.status)
	}
}

func TestAuthUntickedTypeNarrowsScope(t *testing.T) {
	e := newAuthEnv(t, nil)
	p1, _ := e.twoPatients(t)
	v := newVerifier()
	b := e.browser(t)
	f := e.openLogin(t, b, e.authorizeURL(authRequestParams{}, v))
	code := e.submit(t, b, f, "approve", p1, []string{"Patient", "Observation"}).Query().Get("code")
	status, tok := e.exchange(t, code, v, basicAuth(secretClientID, secretValue))
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, tok)
	}
	want := sorted([]string{"launch/patient", "openid", "fhirUser", "patient/Patient.rs", "patient/Observation.rs"})
	if diff := cmp.Diff(want, scopeSet(tok["scope"])); diff != "" {
		t.Errorf("granted scope (-want +got):\n%s", diff)
	}
	access := tok["access_token"].(string)
	r := e.fhirGet(t, "/DiagnosticReport?patient="+p1, access)
	if r.status != http.StatusForbidden || operationOutcomeCode(t, r) != "forbidden" {
		t.Errorf("DiagnosticReport search after untick: %d %.200s", r.status, r.body)
	}
	if !strings.Contains(r.header.Get("WWW-Authenticate"), "insufficient_scope") {
		t.Errorf("403 WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
	}
	if r := e.fhirGet(t, "/Observation?patient="+p1, access); r.status != http.StatusOK {
		t.Errorf("Observation search: %d", r.status)
	}
}

func TestAuthIncludeNeedsObservationScope(t *testing.T) {
	e := newAuthEnv(t, nil)
	p1, _ := e.twoPatients(t)
	count := func(scope string) (matches, included int) {
		g := e.launch(t, authRequestParams{scope: scope}, p1)
		for _, en := range entries(t, decodeSearchset(t, e.fhirGet(t, "/DiagnosticReport?patient="+p1+"&_include=DiagnosticReport:result&_count=200", g.access()))) {
			if en.mode == "include" {
				included++
			} else {
				matches++
			}
		}
		return
	}
	m1, inc1 := count("launch/patient patient/DiagnosticReport.rs patient/Observation.rs")
	m2, inc2 := count("launch/patient patient/DiagnosticReport.rs")
	if m1 == 0 || inc1 == 0 {
		t.Fatalf("with an Observation scope: %d reports, %d included, want some of each", m1, inc1)
	}
	if m2 != m1 || inc2 != 0 {
		t.Errorf("without an Observation scope: %d reports and %d included, want %d and 0", m2, inc2, m1)
	}
}

func TestAuthRefreshRotates(t *testing.T) {
	e := newAuthEnv(t, nil)
	p1, _ := e.twoPatients(t)
	g := e.launch(t, authRequestParams{scope: defaultScope + " offline_access"}, p1)
	rt := g.refresh()
	if rt == "" || !slices.Contains(scopeSet(g.token["scope"]), "offline_access") {
		t.Fatalf("no refresh token with offline_access: %v", g.token)
	}
	refresh := func(token string) (int, map[string]any) {
		return e.post(t, "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}}, basicAuth(secretClientID, secretValue))
	}
	status, tok := refresh(rt)
	if status != http.StatusOK || tok["patient"] != p1 || tok["access_token"] == "" {
		t.Fatalf("refresh: %d %v", status, tok)
	}
	rt2, _ := tok["refresh_token"].(string)
	if rt2 == "" || rt2 == rt {
		t.Errorf("refresh token not rotated: %q", rt2)
	}
	if diff := cmp.Diff(scopeSet(g.token["scope"]), scopeSet(tok["scope"])); diff != "" {
		t.Errorf("refreshed scope (-want +got):\n%s", diff)
	}
	if r := e.fhirGet(t, "/Patient/"+p1, tok["access_token"].(string)); r.status != http.StatusOK {
		t.Errorf("refreshed access token: %d", r.status)
	}
	if status, body := refresh(rt); status == http.StatusOK || body["error"] != "invalid_grant" {
		t.Errorf("old refresh token after rotation: %d %v, want invalid_grant", status, body)
	}
	// Another client cannot use the refresh token.
	other := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt2}}
	if status, _ := e.post(t, "/token", other, assertionAuth(e.assertion(t, assertionClaims{}))); status == http.StatusOK {
		t.Errorf("refresh by another client succeeded")
	}
	if status, _ := refresh(rt2); status != http.StatusOK {
		t.Errorf("rotated refresh token: %d", status)
	}
}

func TestAuthRevocation(t *testing.T) {
	e := newAuthEnv(t, nil)
	p1, _ := e.twoPatients(t)
	g := e.launch(t, authRequestParams{scope: defaultScope + " offline_access"}, p1)
	if r := e.fhirGet(t, "/Patient/"+p1, g.access()); r.status != http.StatusOK {
		t.Fatalf("before revocation: %d", r.status)
	}
	// Another client cannot revoke it.
	if status, _ := e.post(t, "/revoke", url.Values{"token": {g.access()}}, assertionAuth(e.assertion(t, assertionClaims{}))); status == http.StatusOK {
		t.Errorf("revocation by another client succeeded")
	}
	if r := e.fhirGet(t, "/Patient/"+p1, g.access()); r.status != http.StatusOK {
		t.Fatalf("after a foreign revocation attempt: %d", r.status)
	}
	if status, body := e.post(t, "/revoke", url.Values{"token": {g.access()}, "token_type_hint": {"access_token"}}, basicAuth(secretClientID, secretValue)); status != http.StatusOK {
		t.Fatalf("revoke: %d %v", status, body)
	}
	r := e.fhirGet(t, "/Patient/"+p1, g.access())
	if r.status != http.StatusUnauthorized || operationOutcomeCode(t, r) != "login" {
		t.Errorf("revoked token: %d %.200s", r.status, r.body)
	}
	// Another client cannot revoke the refresh token either.
	e.post(t, "/revoke", url.Values{"token": {g.refresh()}}, assertionAuth(e.assertion(t, assertionClaims{})))
	if status, body := e.post(t, "/introspect", url.Values{"token": {g.refresh()}}, basicAuth(secretClientID, secretValue)); status != http.StatusOK || body["active"] != true {
		t.Errorf("refresh token after a foreign revocation attempt: %d %v", status, body)
	}
	// Revoking the refresh token ends the grant.
	if status, _ := e.post(t, "/revoke", url.Values{"token": {g.refresh()}}, basicAuth(secretClientID, secretValue)); status != http.StatusOK {
		t.Fatalf("revoke refresh token: %d", status)
	}
	if status, _ := e.post(t, "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {g.refresh()}}, basicAuth(secretClientID, secretValue)); status == http.StatusOK {
		t.Errorf("revoked refresh token still works")
	}
}

func TestAuthIntrospection(t *testing.T) {
	e := newAuthEnv(t, nil)
	p1, _ := e.twoPatients(t)
	g := e.launch(t, authRequestParams{}, p1)
	introspect := func(token string, auth clientAuth) map[string]any {
		status, body := e.post(t, "/introspect", url.Values{"token": {token}}, auth)
		if status != http.StatusOK {
			t.Fatalf("introspect: %d %v", status, body)
		}
		return body
	}
	mine := basicAuth(secretClientID, secretValue)
	got := introspect(g.access(), mine)
	if got["active"] != true || got["patient"] != p1 || got["client_id"] != secretClientID {
		t.Errorf("introspection %v", got)
	}
	if exp, _ := got["exp"].(float64); exp < float64(time.Now().Unix()) {
		t.Errorf("introspection exp %v", got["exp"])
	}
	if diff := cmp.Diff(scopeSet(g.token["scope"]), scopeSet(got["scope"])); diff != "" {
		t.Errorf("introspection scope (-want +got):\n%s", diff)
	}
	if got := introspect("garbage", mine); got["active"] != false {
		t.Errorf("garbage token: %v", got)
	}
	if got := introspect(g.access(), assertionAuth(e.assertion(t, assertionClaims{aud: e.issuer() + "/introspect"}))); got["active"] != false {
		t.Errorf("another client's token: %v", got)
	}
	if status, _ := e.post(t, "/introspect", url.Values{"token": {g.access()}}, basicAuth(secretClientID, "wrong")); status == http.StatusOK {
		t.Errorf("introspection with a wrong secret succeeded")
	}
	e.post(t, "/revoke", url.Values{"token": {g.access()}}, mine)
	if got := introspect(g.access(), mine); got["active"] != false {
		t.Errorf("revoked token: %v", got)
	}
}

func TestAuthEHRLaunch(t *testing.T) {
	e := newAuthEnv(t, nil)
	_, p2 := e.twoPatients(t)
	lv := e.siteObj().NewEHRLaunch(p2)
	if lv == "" {
		t.Fatal("NewEHRLaunch returned nothing")
	}
	if e.siteObj().NewEHRLaunch("no-such-patient") != "" {
		t.Errorf("NewEHRLaunch accepted an unknown patient")
	}
	v := newVerifier()
	b := e.browser(t)
	f := e.openLogin(t, b, e.authorizeURL(authRequestParams{scope: "launch openid fhirUser patient/Patient.rs", launch: lv}, v))
	if len(f.patients) != 0 {
		t.Errorf("EHR launch shows a patient picker: %v", f.patients)
	}
	// A patient sent anyway does not override the launch's patient.
	code := e.submit(t, b, f, "approve", e.siteObj().Patients()[0], nil).Query().Get("code")
	status, tok := e.exchange(t, code, v, basicAuth(secretClientID, secretValue))
	if status != http.StatusOK || tok["patient"] != p2 {
		t.Fatalf("EHR launch token: %d %v, want patient %s", status, tok, p2)
	}
	if claims := e.idTokenClaims(t, tok["id_token"].(string)); claims["fhirUser"] != e.fhirBase()+"/Patient/"+p2 {
		t.Errorf("fhirUser %v", claims["fhirUser"])
	}
	if r := e.fhirGet(t, "/Patient/"+p2, tok["access_token"].(string)); r.status != http.StatusOK {
		t.Errorf("read launched patient: %d", r.status)
	}
}

func TestAuthScopeDialects(t *testing.T) {
	p := func(version int, scope string) (granted []string, obs int) {
		e := newAuthEnv(t, func(o *AuthOptions) { o.ScopeVersion = version })
		p1, _ := e.twoPatients(t)
		g := e.launch(t, authRequestParams{scope: scope}, p1)
		return scopeSet(g.token["scope"]), e.fhirGet(t, "/Observation?patient="+p1, g.access()).status
	}
	mixed := "launch/patient patient/Patient.read patient/Observation.rs patient/Condition.rs?category=x patient/Encounter.cruds"
	granted, obs := p(1, mixed)
	if diff := cmp.Diff([]string{"launch/patient", "patient/Patient.read"}, granted); diff != "" {
		t.Errorf("v1 site granted (-want +got):\n%s", diff)
	}
	if obs != http.StatusForbidden {
		t.Errorf("v1 site, Observation with a v2 scope only: %d, want 403", obs)
	}
	granted, obs = p(2, mixed)
	if diff := cmp.Diff(sorted([]string{"launch/patient", "patient/Patient.read", "patient/Observation.rs", "patient/Encounter.rs"}), granted); diff != "" {
		t.Errorf("v2 site granted (-want +got):\n%s", diff)
	}
	if obs != http.StatusOK {
		t.Errorf("v2 site, Observation.rs: %d, want 200", obs)
	}
	if _, obs = p(1, "launch/patient patient/Observation.read"); obs != http.StatusOK {
		t.Errorf("v1 site, Observation.read: %d, want 200", obs)
	}
}

func TestAuthFHIRRequiresAValidToken(t *testing.T) {
	e := newAuthEnv(t, func(o *AuthOptions) { o.AccessTokenTTL = 300 * time.Millisecond })
	p1, _ := e.twoPatients(t)
	g := e.launch(t, authRequestParams{}, p1)
	clinic := &authEnv{testServer: e.testServer, site: "clinic"}
	cases := map[string]func() httpResult{
		"no token":      func() httpResult { return e.fhirGet(t, "/Patient/"+p1, "") },
		"garbage token": func() httpResult { return e.fhirGet(t, "/Patient/"+p1, "garbage") },
		"basic scheme": func() httpResult {
			return e.do(t, http.MethodGet, e.fhirBase()+"/Patient/"+p1, http.Header{"Authorization": {"Basic " + g.access()}}, nil)
		},
		"other site's token": func() httpResult { return clinic.fhirGet(t, "/Patient/"+p1, g.access()) },
		"search no token":    func() httpResult { return e.fhirGet(t, "/Observation?patient="+p1, "") },
	}
	// The same site addressed by another name is another audience.
	localhost := strings.Replace(e.fhirBase(), "127.0.0.1", "localhost", 1)
	cases["other audience"] = func() httpResult {
		return e.do(t, http.MethodGet, localhost+"/Patient/"+p1, http.Header{"Authorization": {"Bearer " + g.access()}}, nil)
	}
	for name, do := range cases {
		r := do()
		if r.status != http.StatusUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") ||
			operationOutcomeCode(t, r) != "login" {
			t.Errorf("%s: status %d WWW-Authenticate %q", name, r.status, r.header.Get("WWW-Authenticate"))
		}
		// RFC 6750 section 3.1: no error code when the request had no authentication at all.
		if hasErr := strings.Contains(r.header.Get("WWW-Authenticate"), "error="); hasErr == strings.Contains(name, "no token") {
			t.Errorf("%s: WWW-Authenticate %q", name, r.header.Get("WWW-Authenticate"))
		}
	}
	if r := e.fhirGet(t, "/Patient/"+p1, g.access()); r.status != http.StatusOK {
		t.Fatalf("fresh token: %d", r.status)
	}
	time.Sleep(400 * time.Millisecond)
	if r := e.fhirGet(t, "/Patient/"+p1, g.access()); r.status != http.StatusUnauthorized {
		t.Errorf("expired token: %d, want 401", r.status)
	}
	if r := e.fhirGet(t, "/metadata", ""); r.status != http.StatusOK {
		t.Errorf("metadata without a token: %d", r.status)
	}
}

func TestAuthPatientCompartment(t *testing.T) {
	e := newAuthEnv(t, nil)
	p1, p2 := e.twoPatients(t)
	g := e.launch(t, authRequestParams{scope: "launch/patient patient/*.rs"}, p1)
	// An Observation of the other patient.
	others := e.siteObj().store.types["Observation"].byPatient[p2]
	if len(others) == 0 {
		t.Fatal("the other patient has no Observations")
	}
	if r := e.fhirGet(t, "/Observation/"+others[0].id, g.access()); r.status != http.StatusNotFound {
		t.Errorf("read another patient's Observation: %d, want 404", r.status)
	}
	if own := e.siteObj().store.types["Observation"].byPatient[p1]; len(own) == 0 {
		t.Fatal("the patient has no Observations")
	} else if r := e.fhirGet(t, "/Observation/"+own[0].id, g.access()); r.status != http.StatusOK {
		t.Errorf("read own Observation: %d", r.status)
	}
	// A search without a patient parameter is restricted to the token's patient.
	for _, en := range entries(t, decodeSearchset(t, e.fhirGet(t, "/Observation?_count=200", g.access()))) {
		if subj, _ := en.resource["subject"].(map[string]any); subj["reference"] != "Patient/"+p1 {
			t.Errorf("unrestricted search returned a resource of %v", subj["reference"])
		}
	}
	forbidden := []string{
		"/Observation?patient=" + p2,
		"/Observation?subject=Patient/" + p2,
		"/Observation?subject:Patient=" + p2,
		"/Observation?patient=" + p1 + "," + p2,
		"/Patient?_id=" + p2,
		"/Observation?subject=Group/" + p1,
		"/DiagnosticReport?patient=" + e.fhirBase() + "/Patient/" + p2,
	}
	for _, path := range forbidden {
		if r := e.fhirGet(t, path, g.access()); r.status != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", path, r.status)
		}
	}
	if r := e.fhirGet(t, "/Patient/"+p2, g.access()); r.status != http.StatusNotFound {
		t.Errorf("read another Patient: %d, want 404", r.status)
	}
	if r := e.fhirGet(t, "/Patient/"+p1, g.access()); r.status != http.StatusOK {
		t.Errorf("read own Patient: %d", r.status)
	}
}

func TestAuthFaultsStillApply(t *testing.T) {
	e := newAuthEnv(t, nil)
	p1, _ := e.twoPatients(t)
	g := e.launch(t, authRequestParams{}, p1)
	e.siteObj().Faults().Add(Fault{Path: "Patient", Status: http.StatusServiceUnavailable, Times: 1})
	if r := e.fhirGet(t, "/Patient/"+p1, g.access()); r.status != http.StatusServiceUnavailable {
		t.Errorf("injected fault: %d, want 503", r.status)
	}
	if r := e.fhirGet(t, "/Patient/"+p1, g.access()); r.status != http.StatusOK {
		t.Errorf("after the fault: %d", r.status)
	}
}

func TestAuthOptionsValidated(t *testing.T) {
	bad := []AuthOptions{
		{ScopeVersion: 3, Clients: []Client{{ID: "a", Secret: "s", RedirectURIs: []string{testRedirect}}}},
		{Clients: nil},
		{Clients: []Client{{ID: "a", RedirectURIs: []string{testRedirect}}}},
		{Clients: []Client{{ID: "a", Secret: "s"}}},
		{Clients: []Client{{ID: "a", Secret: "s", RedirectURIs: []string{"/relative"}}}},
		{Clients: []Client{{ID: "a", JWKS: []byte("{"), RedirectURIs: []string{testRedirect}}}},
		{Clients: []Client{{ID: "a", Secret: "s", RedirectURIs: []string{testRedirect}}, {ID: "a", Secret: "t", RedirectURIs: []string{testRedirect}}}},
	}
	for i, o := range bad {
		if _, err := New(Options{Sites: []SiteOptions{{Name: "x", Auth: &o}}}); err == nil {
			t.Errorf("options %d accepted", i)
		}
	}
}

// TestAuthLogsNoSecrets checks that a full flow never writes a token, code or secret to the sandbox log.
func TestAuthLogsNoSecrets(t *testing.T) {
	var buf syncWriter
	bundles, _ := DefaultBundles()
	ts := newTestServer(t, Options{Logger: newTextLogger(&buf), Sites: []SiteOptions{{Name: "hospital", Bundles: bundles, Auth: testAuthOptions(t)}}})
	e := &authEnv{testServer: ts, site: "hospital"}
	p1, _ := e.twoPatients(t)
	g := e.launch(t, authRequestParams{scope: defaultScope + " offline_access"}, p1)
	e.fhirGet(t, "/Patient/"+p1, g.access())
	log := buf.String()
	for _, secret := range []string{g.access(), g.refresh(), g.callback.Query().Get("code"), secretValue, g.verifier} {
		if strings.Contains(log, secret) {
			t.Errorf("log contains a secret value")
		}
	}
	if !strings.Contains(log, "sandbox auth request") {
		t.Errorf("no auth request lines logged: %s", log)
	}
}

func TestAuthBinaryFollowsItsReport(t *testing.T) {
	bundles, err := DefaultBundles()
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, Options{Sites: []SiteOptions{{Name: "hospital", Bundles: bundles, ExternalizeAttachments: true, Auth: testAuthOptions(t)}}})
	e := &authEnv{testServer: ts, site: "hospital"}
	p1, p2 := e.twoPatients(t)
	bins := e.siteObj().store.types["Binary"]
	if bins == nil || len(bins.byPatient[p1]) == 0 || len(bins.byPatient[p2]) == 0 {
		t.Fatal("the seed patients have no externalized attachments")
	}
	var own string
	for _, b := range bins.byPatient[p1] {
		if b.attachmentOf == "DiagnosticReport" {
			own = b.id
		}
	}
	if own == "" {
		t.Fatal("no report attachment")
	}
	withDR := e.launch(t, authRequestParams{scope: "launch/patient patient/DiagnosticReport.rs"}, p1)
	if r := e.fhirGet(t, "/Binary/"+own, withDR.access()); r.status != http.StatusOK {
		t.Errorf("Binary of an own report with a DiagnosticReport scope: %d", r.status)
	}
	if r := e.fhirGet(t, "/Binary/"+bins.byPatient[p2][0].id, withDR.access()); r.status != http.StatusNotFound && r.status != http.StatusForbidden {
		t.Errorf("Binary of another patient: %d, want 404 (or 403 when its type is not covered)", r.status)
	}
	patientOnly := e.launch(t, authRequestParams{scope: "launch/patient patient/Patient.rs"}, p1)
	if r := e.fhirGet(t, "/Binary/"+own, patientOnly.access()); r.status != http.StatusForbidden {
		t.Errorf("Binary without a scope for its report: %d, want 403", r.status)
	}
}

// TestAuthConcurrentRefreshOneWins checks that a refresh token is single use even under a race: of parallel
// refreshes with the same token exactly one succeeds (what a client's "one refresh in flight" must cope with).
func TestAuthConcurrentRefreshOneWins(t *testing.T) {
	e := newAuthEnv(t, nil)
	p1, _ := e.twoPatients(t)
	g := e.launch(t, authRequestParams{scope: defaultScope + " offline_access"}, p1)
	const n = 8
	results := make(chan int, n)
	for range n {
		go func() {
			status, _ := e.post(t, "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {g.refresh()}},
				basicAuth(secretClientID, secretValue))
			results <- status
		}()
	}
	ok := 0
	for range n {
		if <-results == http.StatusOK {
			ok++
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d concurrent refreshes succeeded, want 1", ok, n)
	}
}

func TestAuthUserinfo(t *testing.T) {
	e := newAuthEnv(t, nil)
	p1, _ := e.twoPatients(t)
	g := e.launch(t, authRequestParams{}, p1)
	r := e.do(t, http.MethodGet, e.issuer()+"/userinfo", http.Header{"Authorization": {"Bearer " + g.access()}}, nil)
	var info map[string]any
	if r.status != http.StatusOK || json.Unmarshal(r.body, &info) != nil || info["fhirUser"] != e.fhirBase()+"/Patient/"+p1 || info["sub"] != p1 {
		t.Errorf("userinfo: %d %s", r.status, r.body)
	}
}
