package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"

	"secondlook/store"
	"secondlook/store/storetest"
)

// The fuzz targets below drive the SMART client with what a browser or an authorization server sends it: callback
// parameters, token endpoint responses, id_token claims, smart-configuration and JWKS documents, EHR launch
// parameters and granted scopes. Most run the real flow against the fake SMART server on loopback, with the state
// in an embedded Redis. Besides not panicking, they check that only a genuine callback completes, and that no
// error or log line carries what the other side sent.

// errVocabularyAuth is every error text the client may return to a callback or token response, with the server's
// and the browser's values reduced to the codes it allows.
var errVocabularyAuth = regexp.MustCompile(`^auth: (` +
	`invalid or replayed state|state bound to another browser|callback for another source|` +
	`authorization response from another issuer|callback without authorization code|` +
	`authorization denied by the source: [a-z_]+|` +
	`(token exchange failed|token refresh failed|grant needs re-authorization): status \d+, error [a-z_]+|` +
	`token refresh failed: malformed token response|grant needs re-authorization: no refresh token|` +
	`incomplete token response: (no access_token|no valid patient context)|` +
	`invalid id_token: (missing|wrong audience|wrong issuer|expired|not yet valid|unsupported signing algorithm|` +
	`not signed|bad signature|malformed|verification failed|nonce mismatch|claims))$`)

func checkAuthErr(t *testing.T, err error) {
	t.Helper()
	if !errVocabularyAuth.MatchString(err.Error()) {
		t.Fatalf("error outside the vocabulary (could echo input): %q", err)
	}
	var ae *AuthorizationError
	if errors.As(err, &ae) && ae.Code != "other" && ae.Code != "none" && !oauthErrorCodes[ae.Code] {
		t.Fatalf("authorization error code %q is not an RFC 6749 code", ae.Code)
	}
}

// logProbe keeps every attribute value logged since the last reset, so a target can check that none of them
// carries a fuzzed value.
type logProbe struct {
	mu     sync.Mutex
	values []string
}

func (p *logProbe) Enabled(context.Context, slog.Level) bool { return true }
func (p *logProbe) Handle(_ context.Context, r slog.Record) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.values = append(p.values, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		p.values = append(p.values, a.Value.String())
		return true
	})
	return nil
}
func (p *logProbe) WithAttrs([]slog.Attr) slog.Handler { return p }
func (p *logProbe) WithGroup(string) slog.Handler      { return p }

func (p *logProbe) reset() {
	p.mu.Lock()
	p.values = p.values[:0]
	p.mu.Unlock()
}

// check fails if a logged value contains one of the fuzzed values (those long enough not to occur by chance).
func (p *logProbe) check(t *testing.T, fuzzed ...string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, v := range p.values {
		for _, s := range fuzzed {
			if len(s) >= 8 && !oauthErrorCodes[s] && strings.Contains(v, s) {
				t.Fatalf("a log line carries the fuzzed value %q", s)
			}
		}
	}
}

// fuzzEnv is newEnv for a fuzz target: the store is an embedded Redis, and the logs go to a probe.
func fuzzEnv(f *testing.F, fake func(*fakeOptions)) (*env, *logProbe) {
	client, mr, err := store.Embedded()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = client.Close(); mr.Close() })
	probe := &logProbe{}
	e := newEnv(f, envOptions{
		store:  store.New(client, storetest.UniquePrefix()),
		fake:   fake,
		config: func(c *Config) { c.Logger = slog.New(probe) },
	})
	// Discover once, so that each input costs the flow and not the metadata.
	if _, err := e.client.Discover(context.Background(), "h1"); err != nil {
		f.Fatal(err)
	}
	return e, probe
}

// callback begins an authorization and returns the fake server's callback parameters, as the browser brings them.
func (e *env) callback(t *testing.T) url.Values {
	t.Helper()
	authURL, err := e.client.Begin(context.Background(), BeginRequest{SourceID: "h1", ReviewID: "rev-1", Binding: testBinding})
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: status %d", resp.StatusCode)
	}
	return loc.Query()
}

// Bits of FuzzCallback's mask: which callback parameters the fuzzer's values replace or add.
const (
	cbState   = 1 << iota // the fuzzed state replaces the real one
	cbCode                // the fuzzed code replaces the real one
	cbIss                 // the fuzzed iss replaces the real one
	cbError               // error (and error_description) are added
	cbNoCode              // code is dropped
	cbNoIss               // iss is dropped
	cbBinding             // another browser's binding presents the callback
)

// FuzzCallback completes an authorization from a callback whose parameters the fuzzer picks: the real state and
// code of an authorization just begun, or fuzzed ones, with a fuzzed iss, error and error_description. Properties:
// only the genuine callback (its state, code and iss, no error, the same browser) yields a grant, and no error or
// log line carries a fuzzed value.
func FuzzCallback(f *testing.F) {
	e, probe := fuzzEnv(f, func(o *fakeOptions) { o.issParamPromise = true })
	f.Add("", "", "", "", "", uint8(0))
	f.Add("Zm9vYmFyYmF6cXV1eA-forged-state-value", "", "", "", "", uint8(cbState))
	f.Add("", "SplxlOBeZQQYbYS6WxSbIA-stolen-code", "", "", "", uint8(cbCode))
	f.Add("", "", "https://evil.example/auth", "", "", uint8(cbIss))
	f.Add("", "", "", "access_denied", "Patient Todd315 Stamm704 said no", uint8(cbError))
	f.Add("", "", "", "<script>alert(1)</script>", "see https://evil.example/?pid=0ce18c7d", uint8(cbError|cbNoCode))
	f.Add("", "", "", "", "", uint8(cbNoIss))
	f.Add("", "", "", "", "", uint8(cbBinding))
	f.Fuzz(func(t *testing.T, state, code, iss, errCode, errDesc string, mask uint8) {
		issued := e.callback(t)
		q := url.Values{}
		for k, v := range issued {
			q[k] = slices.Clone(v)
		}
		if mask&cbState != 0 {
			q.Set("state", state)
		}
		if mask&cbCode != 0 {
			q.Set("code", code)
		}
		if mask&cbIss != 0 {
			q.Set("iss", iss)
		}
		if mask&cbError != 0 {
			q.Set("error", errCode)
			q.Set("error_description", errDesc)
		}
		if mask&cbNoCode != 0 {
			q.Del("code")
		}
		if mask&cbNoIss != 0 {
			q.Del("iss")
		}
		binding := testBinding
		if mask&cbBinding != 0 {
			binding = "binding-hash-of-browser-B-cookie"
		}
		probe.reset()
		g, err := e.client.Complete(context.Background(), "h1", q, binding)
		probe.check(t, state, code, iss, errCode, errDesc)
		genuine := q.Get("state") == issued.Get("state") && q.Get("code") == issued.Get("code") && q.Get("iss") == issued.Get("iss") &&
			!q.Has("error") && binding == testBinding
		if err != nil {
			checkAuthErr(t, err)
			for _, s := range []string{state, code, iss, errCode, errDesc} {
				if len(s) >= 8 && !oauthErrorCodes[s] && strings.Contains(err.Error(), s) {
					t.Fatalf("error %q carries the fuzzed value %q", err, s)
				}
			}
			if genuine {
				t.Fatalf("the genuine callback failed: %v", err)
			}
			return
		}
		if !genuine {
			t.Fatalf("a callback that is not the genuine one completed (mask %#x)", mask)
		}
		if g.Patient != "pat-123" || g.SourceID != "h1" || g.ReviewID != "rev-1" {
			t.Fatalf("grant %+v", g)
		}
	})
}

// tokenBody is what the fake token endpoint answers with in FuzzTokenResponse.
type tokenBody struct {
	mu          sync.Mutex
	contentType string
	body        []byte
}

func (b *tokenBody) set(ct string, body []byte) {
	b.mu.Lock()
	b.contentType, b.body = ct, body
	b.mu.Unlock()
}

func (b *tokenBody) get() (string, []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.contentType, b.body
}

// FuzzTokenResponse answers the code exchange, and then the refresh, with a fuzzed token response of a fuzzed
// content type (the source is plain OAuth, so no id_token is needed). Properties: a grant needs an access token and
// a valid patient id; its scopes are distinct, without blanks; every requested type is granted or denied,
// and granted only if a scope allows reading and searching it; a refresh stores an access token or fails with an
// error of the vocabulary.
func FuzzTokenResponse(f *testing.F) {
	tb := &tokenBody{}
	e, probe := fuzzEnv(f, func(o *fakeOptions) { o.noOIDC = true; o.tokenBody = tb.get })
	f.Add([]byte(`{"access_token":"AT-1","token_type":"Bearer","expires_in":3600,"scope":"launch/patient offline_access patient/Patient.rs patient/DiagnosticReport.rs patient/Observation.read","patient":"pat-123","refresh_token":"RT-1"}`), "application/json")
	f.Add([]byte(`{"access_token":"AT-2","token_type":"bearer","expires_in":"3600","patient":"../../etc","scope":"patient/*.cruds?category=laboratory"}`), "application/json;charset=UTF-8")
	f.Add([]byte(`{"access_token":"","patient":"p"}`), "application/json")
	f.Add([]byte(`access_token=AT-3&token_type=bearer&patient=pat-1&scope=patient%2FCondition.rs&refresh_token=RT-3`), "application/x-www-form-urlencoded")
	f.Add([]byte(`{"access_token":"AT-4","patient":"pat-1","expires_in":-5,"scope":null,"refresh_token":"RT-4"}`), "application/json")
	f.Add([]byte(`{"error":"invalid_grant","error_description":"code 0ce18c7d expired"}`), "application/json")
	types := DefaultResourceTypes()
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		tb.set(contentType, body)
		cb := e.callback(t)
		probe.reset()
		ctx := context.Background()
		g, err := e.client.Complete(ctx, "h1", cb, testBinding)
		probe.check(t, string(body))
		if err != nil {
			checkAuthErr(t, err)
			return
		}
		if !patientIDPattern.MatchString(g.Patient) {
			t.Fatalf("grant for patient %q", g.Patient)
		}
		if sorted := slices.Sorted(slices.Values(g.Scopes)); len(slices.Compact(sorted)) != len(g.Scopes) {
			t.Fatalf("scopes %q not distinct", g.Scopes)
		}
		for _, s := range g.Scopes {
			if s == "" || strings.ContainsAny(s, " \t\r\n\f\v") {
				t.Fatalf("scope %q is blank or has a space", s)
			}
		}
		if len(g.GrantedTypes)+len(g.DeniedTypes) != len(types) {
			t.Fatalf("types granted %q and denied %q are not the %d requested", g.GrantedTypes, g.DeniedTypes, len(types))
		}
		for _, typ := range g.GrantedTypes {
			if !slices.Contains(types, typ) || !slices.ContainsFunc(g.Scopes, func(s string) bool { return allowsReadSearch(s, typ) }) {
				t.Fatalf("type %s granted by scopes %q", typ, g.Scopes)
			}
		}
		rec, err := e.client.loadRecord(ctx, g.Key)
		if err != nil {
			t.Fatalf("load the stored grant: %v", err)
		}
		if rec.AccessToken == "" {
			t.Fatal("grant stored without an access token")
		}
		if !g.Refreshable {
			return
		}
		probe.reset()
		_, err = e.client.Tokens(g.Key).Refresh(ctx, rec.AccessToken)
		probe.check(t, string(body))
		if err != nil {
			checkAuthErr(t, err)
			return
		}
		if rec, err = e.client.loadRecord(ctx, g.Key); err != nil || rec.AccessToken == "" {
			t.Fatalf("refresh stored no access token (%v)", err)
		}
	})
}

// allowsReadSearch is the rule splitTypes implements, written out again: a clinical scope for the type (or *)
// whose permissions are v1 read or *, or v2 letters of cruds that include r and s.
func allowsReadSearch(scope, typ string) bool {
	ctx, rest, ok := strings.Cut(scope, "/")
	if !ok || (ctx != "patient" && ctx != "user") {
		return false
	}
	rest, _, _ = strings.Cut(rest, "?")
	t, perm, ok := strings.Cut(rest, ".")
	if !ok || (t != typ && t != "*") || strings.Contains(perm, ".") {
		return false
	}
	if perm == "read" || perm == "*" {
		return true
	}
	return perm != "" && strings.Trim(perm, "cruds") == "" && strings.Contains(perm, "r") && strings.Contains(perm, "s")
}

// FuzzIDToken completes an authorization whose id_token signs fuzzed claims with the source's real key; "$ISS",
// "$AUD", "$NONCE" and "$NOW" in the claims stand for the values a genuine token carries. Properties: a grant
// comes only from an id_token for this client, unexpired, from the advertised issuer (or one on its origin that
// echoes the nonce), with no other nonce; the grant's fhirUser is the token's.
func FuzzIDToken(f *testing.F) {
	var mu sync.Mutex
	var payload []byte
	fuzzed := []byte("{}")
	e, probe := fuzzEnv(f, func(o *fakeOptions) {
		o.idTokenPayload = func(claims map[string]any) []byte {
			mu.Lock()
			defer mu.Unlock()
			r := strings.NewReplacer("$ISS", claims["iss"].(string), "$AUD", claims["aud"].(string), "$NONCE", claims["nonce"].(string),
				"$NOW", strconv.FormatInt(time.Now().Unix(), 10))
			payload = []byte(r.Replace(string(fuzzed)))
			return payload
		}
	})
	f.Add([]byte(`{"iss":"$ISS","sub":"user-1","aud":"$AUD","exp":$NOW000,"iat":$NOW,"nonce":"$NONCE","fhirUser":"Patient/pat-123"}`))
	f.Add([]byte(`{"iss":"$ISS","sub":"user-1","aud":["x","$AUD"],"azp":"$AUD","exp":$NOW000,"fhirUser":"Practitioner/1"}`))
	f.Add([]byte(`{"iss":"$ISS","aud":"$AUD","exp":$NOW,"nonce":"$NONCE"}`))
	f.Add([]byte(`{"iss":"$ISS","aud":"$AUD","exp":$NOW000,"nonce":"another-nonce"}`))
	f.Add([]byte(`{"iss":"$ISS/../other","aud":"$AUD","exp":$NOW000}`))
	f.Add([]byte(`{"iss":"https://evil.example/auth","aud":"$AUD","exp":$NOW000,"nonce":"$NONCE"}`))
	f.Add([]byte(`{"iss":"$ISS","aud":"$AUD","exp":$NOW000,"nbf":$NOW000,"nonce":"$NONCE"}`))
	f.Fuzz(func(t *testing.T, claims []byte) {
		mu.Lock()
		fuzzed = claims
		mu.Unlock()
		cb := e.callback(t)
		probe.reset()
		g, err := e.client.Complete(context.Background(), "h1", cb, testBinding)
		if err != nil {
			checkAuthErr(t, err)
			return
		}
		mu.Lock()
		signed := payload
		mu.Unlock()
		// iss, aud, exp and nonce as go-oidc reads them (encoding/json), to check the decisions made on them;
		// fhirUser as the gateway must read it, strictly.
		var c struct {
			Iss   string    `json:"iss"`
			Aud   audiences `json:"aud"`
			Exp   float64   `json:"exp"`
			Nonce *string   `json:"nonce"`
		}
		if err := json.Unmarshal(signed, &c); err != nil {
			t.Fatalf("accepted an id_token whose claims do not decode: %v", err)
		}
		var strict struct {
			FHIRUser string `json:"fhirUser"`
		}
		if err := jsonv2.Unmarshal(signed, &strict); err != nil {
			t.Fatalf("accepted an id_token whose claims a strict parser refuses: %v", err)
		}
		issuer := e.fake.issuer()
		if !slices.Contains(c.Aud, "gw-basic") {
			t.Fatalf("accepted an id_token for %q", c.Aud)
		}
		if time.Unix(int64(c.Exp), 0).Before(time.Now().Add(-time.Minute)) {
			t.Fatalf("accepted an expired id_token")
		}
		switch {
		case c.Iss == issuer:
		case sameOrigin(c.Iss, issuer) && c.Nonce != nil && *c.Nonce != "":
		default:
			t.Fatalf("accepted an id_token from %q", c.Iss)
		}
		if c.Nonce != nil && *c.Nonce != "" && !bytes.Contains(signed, []byte(`"nonce":"`+*c.Nonce+`"`)) {
			t.Fatal("nonce check bypassed")
		}
		if g.FHIRUser != strict.FHIRUser {
			t.Fatalf("grant's fhirUser %q, token's %q", g.FHIRUser, strict.FHIRUser)
		}
	})
}

// audiences is aud as a string or an array of strings.
type audiences []string

func (a *audiences) UnmarshalJSON(b []byte) error {
	var one string
	if jsonv2.Unmarshal(b, &one) == nil {
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

// FuzzEHRLaunch begins an EHR launch with fuzzed iss and launch parameters. Properties: only the FHIR base of a
// configured source (a trailing slash aside) is trusted; the authorization request then goes to that source's
// authorization endpoint and carries the launch value unchanged; refusals never quote the parameters.
func FuzzEHRLaunch(f *testing.F) {
	e, probe := fuzzEnv(f, nil)
	base := e.fake.base()
	f.Add(base, "xyz123")
	f.Add(base+"/", "a b&c=d#e")
	f.Add(base+"/../other", "l")
	f.Add(strings.ToUpper(base), "l")
	f.Add("https://evil.example/fhir", "launch-token")
	f.Add(base, "")
	f.Add(base, strings.Repeat("x", 2049))
	authEndpoint := e.fake.endpoint("authorize")
	f.Fuzz(func(t *testing.T, iss, launch string) {
		probe.reset()
		to, err := e.client.BeginEHRLaunch(context.Background(), iss, launch, testBinding, "rev-1")
		probe.check(t, iss, launch)
		trusted := strings.TrimRight(iss, "/") == base
		if err != nil {
			if !trusted && !errors.Is(err, ErrUntrustedIssuer) {
				t.Fatalf("untrusted iss refused with %v", err)
			}
			for _, s := range []string{iss, launch} {
				if len(s) >= 8 && strings.Contains(err.Error(), s) {
					t.Fatalf("error quotes %q", s)
				}
			}
			if trusted && launch != "" && len(launch) <= maxLaunchLen {
				t.Fatalf("a launch from the source failed: %v", err)
			}
			return
		}
		if !trusted || launch == "" || len(launch) > maxLaunchLen {
			t.Fatalf("launch from iss %q (launch of %d bytes) begun", iss, len(launch))
		}
		u, err := url.Parse(to)
		if err != nil || u.Scheme+"://"+u.Host+u.Path != authEndpoint {
			t.Fatalf("authorization request sent to %q", to)
		}
		if q := u.Query(); q.Get("launch") != launch || q.Get("aud") != base || q.Get("state") == "" {
			t.Fatalf("authorization request carries launch %q aud %q", q.Get("launch"), q.Get("aud"))
		}
	})
}

// FuzzScope parses a granted scope string and decides the granted types. Properties: the scopes come out sorted,
// distinct and without blanks; every requested type is either granted or denied; a type is granted exactly when a
// scope allows reading and searching it.
func FuzzScope(f *testing.F) {
	for _, s := range []string{
		"launch/patient openid fhirUser offline_access patient/Patient.rs patient/DiagnosticReport.rs patient/Observation.rs",
		"patient/*.read user/Condition.cruds", "patient/Observation.rs?category=laboratory patient/Observation.r",
		"patient/ImagingStudy.sr  patient/Condition.read\tpatient/Condition.read", "patient/Patient.rs.x user/*.*",
	} {
		f.Add(s)
	}
	types := append(DefaultResourceTypes(), "DocumentReference")
	f.Fuzz(func(t *testing.T, scope string) {
		scopes := parseScope(scope)
		if !slices.IsSorted(scopes) || len(slices.Compact(slices.Clone(scopes))) != len(scopes) {
			t.Fatalf("scopes %q not sorted and distinct", scopes)
		}
		for _, s := range scopes {
			if s == "" || len(strings.Fields(s)) != 1 {
				t.Fatalf("scope %q is blank or has a space", s)
			}
		}
		ok, denied := splitTypes(scopes, types)
		if len(ok)+len(denied) != len(types) {
			t.Fatalf("granted %q and denied %q are not the %d requested", ok, denied, len(types))
		}
		for _, typ := range types {
			want := slices.ContainsFunc(scopes, func(s string) bool { return allowsReadSearch(s, typ) })
			if slices.Contains(ok, typ) != want {
				t.Fatalf("%s granted=%v by %q, want %v", typ, slices.Contains(ok, typ), scopes, want)
			}
		}
	})
}

// FuzzSMARTConfiguration parses a smart-configuration document for an https and an http FHIR base, and the
// JWKS fix-up for padded keys. Properties: an accepted document names absolute https (or, for an http base, http)
// endpoints without credentials or fragment, supports PKCE S256 and the code grant, has issuer and jwks_uri
// together, and its capabilities are trimmed, lower-case and non-empty; errors name fields, never values.
func FuzzSMARTConfiguration(f *testing.F) {
	f.Add([]byte(`{"issuer":"https://h.example/auth","jwks_uri":"https://h.example/auth/jwks","authorization_endpoint":"https://h.example/auth/authorize",`+
		`"token_endpoint":"https://h.example/auth/token","revocation_endpoint":"https://h.example/auth/revoke","code_challenge_methods_supported":["S256"],`+
		`"grant_types_supported":["authorization_code","refresh_token"],"capabilities":["launch-standalone"," SSO-OpenID-Connect ",1,null,"permission-v2"],`+
		`"authorization_response_iss_parameter_supported":true}`), false)
	f.Add([]byte(`{"authorization_endpoint":"http://127.0.0.1:9/authorize","token_endpoint":"http://127.0.0.1:9/token","code_challenge_methods_supported":["S256"],"capabilities":[]}`), true)
	f.Add([]byte(`{"authorization_endpoint":"https://u:p@h.example/a#f","token_endpoint":"/token","code_challenge_methods_supported":["plain"],"capabilities":["sso-openid-connect"]}`), false)
	f.Add([]byte(`{"authorization_endpoint":"http://h.example/authorize","token_endpoint":"https://h.example/token","code_challenge_methods_supported":["S256"],"capabilities":[]}`), false)
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB==","e":"AQAB=","kid":"k"}]}`), false)
	errShape := regexp.MustCompile(`^(document is not a valid smart-configuration|capabilities missing|((authorization_endpoint|token_endpoint|issuer|jwks_uri|revocation_endpoint|introspection_endpoint) (missing|is not an absolute URL|must use https)|issuer and jwks_uri must come together|PKCE S256 not supported|authorization_code grant not supported)(; .+)*)$`)
	f.Fuzz(func(t *testing.T, doc []byte, httpBase bool) {
		if fixed, ok := unpadJWKS(doc); ok && !jsonValid(fixed) {
			t.Fatal("unpadJWKS produced invalid JSON")
		}
		base := "https://h.example/fhir"
		if httpBase {
			base = "http://127.0.0.1:9/fhir"
		}
		conf, err := parseSMARTConfiguration(doc, base)
		if err != nil {
			if !errShape.MatchString(err.Error()) {
				t.Fatalf("error outside its shape: %q", err)
			}
			return
		}
		for name, v := range map[string]string{"authorization_endpoint": conf.AuthorizationEndpoint, "token_endpoint": conf.TokenEndpoint,
			"issuer": conf.Issuer, "jwks_uri": conf.JWKSURI, "revocation_endpoint": conf.RevocationEndpoint} {
			if v == "" && (name == "authorization_endpoint" || name == "token_endpoint") {
				t.Fatalf("accepted without %s", name)
			}
			if v == "" {
				continue
			}
			u, err := url.Parse(v)
			if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" || !(u.Scheme == "https" || httpBase && u.Scheme == "http") {
				t.Fatalf("accepted %s %q", name, v)
			}
		}
		if (conf.Issuer == "") != (conf.JWKSURI == "") || !slices.Contains(conf.CodeChallengeMethodsSupported, "S256") {
			t.Fatal("accepted without issuer and jwks_uri together, or without S256")
		}
		if conf.GrantTypesSupported != nil && !slices.Contains(conf.GrantTypesSupported, "authorization_code") {
			t.Fatal("accepted without the authorization_code grant")
		}
		for _, c := range conf.Capabilities {
			if c == "" || c != strings.ToLower(strings.TrimSpace(c)) {
				t.Fatalf("capability %q kept as is", c)
			}
		}
	})
}

func jsonValid(b []byte) bool {
	var v any
	return jsonv2.Unmarshal(b, &v) == nil
}
