package sandbox

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/net/html"
)

// Test clients of every auth-enabled test site.
const (
	secretClientID = "secret-client"
	secretValue    = "s3cret-for-tests"
	jwtClientID    = "jwt-client"
	testRedirect   = "http://127.0.0.1:1/callback"
	otherRedirect  = "http://127.0.0.1:1/other"
)

// clientKeys are the private_key_jwt client's keys (generated once per test binary).
type clientKeys struct {
	rsa *rsa.PrivateKey
	ec  *ecdsa.PrivateKey
}

var testKeys = func() clientKeys {
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	e, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return clientKeys{rsa: r, ec: e}
}()

func (k clientKeys) jwks(t testing.TB) []byte {
	t.Helper()
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &k.rsa.PublicKey, KeyID: "rsa-1", Use: "sig"}, // no alg: the server alone must refuse RS256
		{Key: &k.ec.PublicKey, KeyID: "ec-1", Algorithm: string(jose.ES384), Use: "sig"},
	}}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatalf("marshal JWKS: %v", err)
	}
	return b
}

// authEnv is a sandbox with auth-enabled sites on 127.0.0.1.
type authEnv struct {
	*testServer
	site string
}

func testAuthOptions(t testing.TB) *AuthOptions {
	t.Helper()
	return &AuthOptions{
		ScopeVersion: 2,
		Clients: []Client{
			{ID: secretClientID, Secret: secretValue, RedirectURIs: []string{testRedirect, otherRedirect}},
			{ID: jwtClientID, JWKS: testKeys.jwks(t), RedirectURIs: []string{testRedirect}},
		},
	}
}

// newAuthEnv starts a server whose "hospital" site (the embedded seed) has auth; update adjusts its options.
// A second site, "clinic", has the same data and clients, for cross-site checks.
func newAuthEnv(t testing.TB, update func(*AuthOptions)) *authEnv {
	t.Helper()
	bundles, err := DefaultBundles()
	if err != nil {
		t.Fatal(err)
	}
	o := testAuthOptions(t)
	if update != nil {
		update(o)
	}
	ts := newTestServer(t, Options{Sites: []SiteOptions{
		{Name: "hospital", Bundles: bundles, Auth: o},
		{Name: "clinic", Bundles: bundles, Auth: testAuthOptions(t)},
	}})
	return &authEnv{testServer: ts, site: "hospital"}
}

func (e *authEnv) fhirBase() string { return e.base(e.site) }
func (e *authEnv) issuer() string   { return e.http.URL + "/" + e.site + "/auth" }
func (e *authEnv) siteObj() *Site   { return e.srv.Site(e.site) }

// browser is a user agent with cookies that follows redirects inside the sandbox and stops at the client.
func (e *authEnv) browser(t testing.TB) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(e.http.URL, "http://")
	return &http.Client{
		Jar:     jar,
		Timeout: 10 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Host != host || len(via) > 5 {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
}

// authRequestParams is an authorization request; zero fields get working defaults from params.
type authRequestParams struct {
	clientID, redirectURI, scope, aud, state, nonce, launch string
	challenge, method                                       string
	omitChallenge                                           bool
}

const defaultScope = "launch/patient openid fhirUser patient/Patient.rs patient/DiagnosticReport.rs patient/Observation.rs"

func (e *authEnv) authorizeURL(p authRequestParams, verifier string) string {
	v := url.Values{"response_type": {"code"}}
	set := func(k, val, def string) {
		if val == "" {
			val = def
		}
		if val != "-" {
			v.Set(k, val)
		}
	}
	set("client_id", p.clientID, secretClientID)
	set("redirect_uri", p.redirectURI, testRedirect)
	set("scope", p.scope, defaultScope)
	set("aud", p.aud, e.fhirBase())
	set("state", p.state, "state-"+randomID(4))
	set("nonce", p.nonce, "nonce-"+randomID(4))
	if p.launch != "" {
		v.Set("launch", p.launch)
	}
	if !p.omitChallenge {
		set("code_challenge", p.challenge, s256(verifier))
		set("code_challenge_method", p.method, "S256")
	}
	return e.issuer() + "/authorize?" + v.Encode()
}

func s256(verifier string) string {
	h := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

func newVerifier() string { return randomID(32) }

// loginForm is the sign-in form as a browser sees it.
type loginForm struct {
	action   string
	hidden   url.Values
	patients []string // radio values of name=patient, each with id patient-<value>
	types    []string // checkboxes of name=type, checked, each with id type-<value>
	buttons  map[string]string
}

func parseLoginForm(t testing.TB, body []byte) *loginForm {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse sign-in page: %v", err)
	}
	f := &loginForm{hidden: url.Values{}, buttons: map[string]string{}}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			a := map[string]string{}
			checked := false
			for _, at := range n.Attr {
				a[at.Key] = at.Val
				if at.Key == "checked" {
					checked = true
				}
			}
			switch n.Data {
			case "form":
				f.action = a["action"]
			case "input":
				switch {
				case a["type"] == "hidden":
					f.hidden.Set(a["name"], a["value"])
				case a["type"] == "radio" && a["name"] == "patient":
					if a["id"] != "patient-"+a["value"] {
						t.Errorf("patient radio %q has id %q", a["value"], a["id"])
					}
					f.patients = append(f.patients, a["value"])
				case a["type"] == "checkbox" && a["name"] == "type":
					if a["id"] != "type-"+a["value"] {
						t.Errorf("type checkbox %q has id %q", a["value"], a["id"])
					}
					if checked {
						f.types = append(f.types, a["value"])
					}
				}
			case "button":
				if a["name"] == "decision" {
					f.buttons[a["id"]] = a["value"]
				}
			case "script", "link", "img", "iframe":
				t.Errorf("sign-in page has a <%s> element", n.Data)
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if f.buttons["approve"] != "approve" || f.buttons["deny"] != "deny" {
		t.Fatalf("sign-in page lacks the approve/deny buttons: %v", f.buttons)
	}
	return f
}

// openLogin sends the browser to the authorization endpoint and returns the sign-in form it lands on.
func (e *authEnv) openLogin(t testing.TB, b *http.Client, authURL string) *loginForm {
	t.Helper()
	resp, err := b.Get(authURL)
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Request.URL.Path, "/auth/login") {
		t.Fatalf("authorize: status %d at %s (Location %q), want the sign-in page: %.300s",
			resp.StatusCode, resp.Request.URL.Path, resp.Header.Get("Location"), body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("sign-in page CSP %q", csp)
	}
	return parseLoginForm(t, body)
}

// submit posts the form with a decision, a patient ("" for none) and the types to leave ticked (nil keeps the
// defaults), and returns the redirect to the client.
func (e *authEnv) submit(t testing.TB, b *http.Client, f *loginForm, decision, patient string, types []string) *url.URL {
	t.Helper()
	form := url.Values{}
	for k, vs := range f.hidden {
		form[k] = vs
	}
	form.Set("decision", decision)
	if patient != "" {
		form.Set("patient", patient)
	}
	if types == nil {
		types = f.types
	}
	for _, ty := range types {
		form.Add("type", ty)
	}
	resp, err := b.PostForm(e.http.URL+f.action, form)
	if err != nil {
		t.Fatalf("submit sign-in form: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, testRedirect) && !strings.HasPrefix(loc, otherRedirect) {
		t.Fatalf("sign-in: status %d Location %q, want a redirect to the client: %.300s", resp.StatusCode, loc, body)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// clientAuth authenticates a token, introspection or revocation request by editing its headers or form.
type clientAuth func(h http.Header, form url.Values)

func basicAuth(id, secret string) clientAuth {
	return func(h http.Header, _ url.Values) {
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret))))
	}
}

// assertionClaims describes a client assertion; zero fields get valid defaults, and jti "-" leaves the jti out.
type assertionClaims struct {
	alg      jose.SignatureAlgorithm
	kid      string
	iss, aud string
	jti      string
	exp      time.Duration
}

func (e *authEnv) assertion(t testing.TB, c assertionClaims) string {
	t.Helper()
	if c.alg == "" {
		c.alg = jose.RS384
	}
	var key any = testKeys.rsa
	if c.kid == "" {
		c.kid = "rsa-1"
	}
	if c.alg == jose.ES384 {
		key = testKeys.ec
		if c.kid == "rsa-1" {
			c.kid = "ec-1"
		}
	}
	if c.iss == "" {
		c.iss = jwtClientID
	}
	if c.aud == "" {
		c.aud = e.issuer() + "/token"
	}
	switch c.jti {
	case "":
		c.jti = randomID(12)
	case "-":
		c.jti = ""
	}
	if c.exp == 0 {
		c.exp = 4 * time.Minute
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: c.alg, Key: jose.JSONWebKey{Key: key, KeyID: c.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatalf("signer: %v", err)
	}
	now := time.Now()
	iat := now
	if c.exp < 0 { // an expired assertion was issued before it expired, so only its exp is wrong
		iat = now.Add(c.exp - time.Minute)
	}
	tok, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer: c.iss, Subject: c.iss, Audience: jwt.Audience{c.aud}, ID: c.jti,
		IssuedAt: jwt.NewNumericDate(iat), Expiry: jwt.NewNumericDate(now.Add(c.exp)),
	}).Serialize()
	if err != nil {
		t.Fatalf("sign assertion: %v", err)
	}
	return tok
}

func assertionAuth(token string) clientAuth {
	return func(_ http.Header, form url.Values) {
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		form.Set("client_assertion", token)
	}
}

// post sends a form to an authorization server endpoint and decodes the JSON answer.
func (e *authEnv) post(t testing.TB, endpoint string, form url.Values, auth clientAuth) (int, map[string]any) {
	t.Helper()
	h := http.Header{}
	if auth != nil {
		auth(h, form)
	}
	req, err := http.NewRequest(http.MethodPost, e.issuer()+endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", endpoint, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("POST %s: status %d, body is not JSON: %.300s", endpoint, resp.StatusCode, body)
		}
	}
	return resp.StatusCode, out
}

func (e *authEnv) exchange(t testing.TB, code, verifier string, auth clientAuth) (int, map[string]any) {
	t.Helper()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {testRedirect}}
	if verifier != "" {
		form.Set("code_verifier", verifier)
	}
	return e.post(t, "/token", form, auth)
}

// grant is a completed authorization.
type grant struct {
	verifier string
	state    string
	callback *url.URL
	token    map[string]any
	patient  string
}

func (g *grant) access() string {
	s, _ := g.token["access_token"].(string)
	return s
}

func (g *grant) refresh() string {
	s, _ := g.token["refresh_token"].(string)
	return s
}

// launch runs a standalone launch for patient with p's parameters (defaults otherwise), approving with the
// default types, and redeems the code with client_secret_basic.
func (e *authEnv) launch(t testing.TB, p authRequestParams, patient string) *grant {
	t.Helper()
	g := &grant{verifier: newVerifier(), state: "st-" + randomID(6), patient: patient}
	if p.state == "" {
		p.state = g.state
	}
	b := e.browser(t)
	f := e.openLogin(t, b, e.authorizeURL(p, g.verifier))
	g.callback = e.submit(t, b, f, "approve", patient, nil)
	code := g.callback.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in %s", g.callback)
	}
	status, tok := e.exchange(t, code, g.verifier, basicAuth(secretClientID, secretValue))
	if status != http.StatusOK {
		t.Fatalf("token: status %d: %v", status, tok)
	}
	g.token = tok
	return g
}

// fhirGet reads from the site's FHIR server with a bearer token ("" for none).
func (e *authEnv) fhirGet(t testing.TB, path, token string) httpResult {
	t.Helper()
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	return e.do(t, http.MethodGet, e.fhirBase()+path, h, nil)
}

// patientsOf returns two patient ids of the site: the first has data of every tested type.
func (e *authEnv) twoPatients(t testing.TB) (string, string) {
	t.Helper()
	ps := e.siteObj().Patients()
	if len(ps) < 2 {
		t.Fatalf("want two patients, have %v", ps)
	}
	return ps[0], ps[1]
}

// syncWriter is a goroutine-safe log sink.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func newTextLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
