package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/html"

	"secondlook/fhir"
	"secondlook/sandbox"
	"secondlook/seal"
	"secondlook/store/storetest"
)

// sbEnv is the gateway's SMART client against a real sandbox site ("hospital", with a SMART authorization server
// built on zitadel/oidc) on loopback.
type sbEnv struct {
	t         *testing.T
	hs        *httptest.Server
	srv       *sandbox.Server
	client    *Client
	cfg       Config
	keys      *seal.Keyring
	logs      *syncBuffer
	clock     *testClock
	refreshes atomic.Int32 // refresh_token grants received by the sandbox
	tokenURLs sync.Map     // every URL the sandbox received
}

type sbOptions struct {
	scopeVersion int
	method       string // client_secret_basic (default), RS384, ES384
	accessTTL    time.Duration
}

const sbSecret = "sandbox-client-secret-XYZ"

func newSandboxEnv(t *testing.T, o sbOptions) *sbEnv {
	t.Helper()
	e := &sbEnv{t: t, logs: &syncBuffer{}, clock: &testClock{}}
	var handler atomic.Pointer[http.Handler]
	e.hs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.tokenURLs.Store(r.URL.String(), true)
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/auth/token") {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			if q, _ := url.ParseQuery(string(body)); q.Get("grant_type") == "refresh_token" {
				e.refreshes.Add(1)
			}
		}
		(*handler.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(e.hs.Close)

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	e.keys, _ = seal.NewKeyring(map[string][]byte{"k1": key}, "k1")
	src := Source{ID: "hospital", FHIRBaseURL: e.hs.URL + "/hospital/fhir", ClientID: "gw", Method: MethodClientSecretBasic,
		Secret: []byte(sbSecret)}
	switch o.method {
	case AlgRS384:
		src.Method, src.Secret, src.Key, src.KeyID, src.Alg = MethodPrivateKeyJWT, nil, clientRSAKey, "gw-rsa", AlgRS384
	case AlgES384:
		src.Method, src.Secret, src.Key, src.KeyID, src.Alg = MethodPrivateKeyJWT, nil, clientECKey, "gw-ec", AlgES384
	}
	st, _ := storetest.EmbeddedRedis(t)
	e.cfg = Config{
		PublicURL:  testPublicURL,
		Sources:    []Source{src},
		Keys:       e.keys,
		HTTPClient: &http.Client{Timeout: 10 * time.Second},
		Now:        e.clock.Now,
		Logger:     slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	var err error
	e.client, err = New(e.cfg, st, st)
	if err != nil {
		t.Fatal(err)
	}
	// The sandbox registers the gateway with the public keys the gateway itself publishes.
	jwks, err := e.client.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	reg := sandbox.Client{ID: "gw", RedirectURIs: []string{testPublicURL + "/auth/callback/hospital"}}
	if src.Method == MethodPrivateKeyJWT {
		reg.JWKS = jwks
	} else {
		reg.Secret = sbSecret
	}
	bundles, err := sandbox.DefaultBundles()
	if err != nil {
		t.Fatal(err)
	}
	e.srv, err = sandbox.New(sandbox.Options{Sites: []sandbox.SiteOptions{{Name: "hospital", Bundles: bundles,
		Auth: &sandbox.AuthOptions{ScopeVersion: o.scopeVersion, Clients: []sandbox.Client{reg}, AccessTokenTTL: o.accessTTL}}}})
	if err != nil {
		t.Fatal(err)
	}
	h := e.srv.Handler()
	handler.Store(&h)
	return e
}

func (e *sbEnv) patients() []string { return e.srv.Site("hospital").Patients() }

// browser is a patient's user agent: cookies, follows redirects inside the sandbox, stops at the gateway.
func (e *sbEnv) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	host := strings.TrimPrefix(e.hs.URL, "http://")
	return &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Host != host || len(via) > 5 {
				return http.ErrUseLastResponse
			}
			return nil
		}}
}

// signIn opens the sign-in page at authURL and submits it; patient "" keeps the launch's patient; types nil keeps
// the defaults. It returns the callback query at the gateway.
func (e *sbEnv) signIn(authURL, decision, patient string, untick []string) url.Values {
	e.t.Helper()
	b := e.browser()
	resp, err := b.Get(authURL)
	if err != nil {
		e.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("authorize: status %d: %.300s", resp.StatusCode, body)
	}
	action, form := parseForm(e.t, body)
	form.Set("decision", decision)
	if patient != "" {
		form.Set("patient", patient)
	}
	var types []string
	for _, ty := range form["type"] {
		if !slices.Contains(untick, ty) {
			types = append(types, ty)
		}
	}
	form["type"] = types
	target := resp.Request.URL.ResolveReference(&url.URL{Path: action})
	if action == "" {
		target = resp.Request.URL
	} else if u, err := url.Parse(action); err == nil {
		target = resp.Request.URL.ResolveReference(u)
	}
	resp, err = b.PostForm(target.String(), form)
	if err != nil {
		e.t.Fatal(err)
	}
	_ = resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), testPublicURL+"/auth/callback/hospital?") {
		e.t.Fatalf("sign-in: status %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return loc.Query()
}

// parseForm returns the sign-in form's action and its default values (hidden inputs, checked boxes).
func parseForm(t *testing.T, body []byte) (string, url.Values) {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	action, v := "", url.Values{}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			a := map[string]string{}
			_, checked := "", false
			for _, at := range n.Attr {
				a[at.Key] = at.Val
				checked = checked || at.Key == "checked"
			}
			switch {
			case n.Data == "form":
				action = a["action"]
			case n.Data == "input" && a["type"] == "hidden":
				v.Add(a["name"], a["value"])
			case n.Data == "input" && a["type"] == "checkbox" && checked:
				v.Add(a["name"], a["value"])
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return action, v
}

// fhirGet reads a resource with a bearer token and returns the status.
func (e *sbEnv) fhirGet(path, token string) int {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.hs.URL+"/hospital/fhir/"+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

func (e *sbEnv) standalone(review, patient string, untick []string) (*Grant, url.Values) {
	e.t.Helper()
	authURL, err := e.client.Begin(e.t.Context(), BeginRequest{SourceID: "hospital", ReviewID: review, Binding: testBinding})
	if err != nil {
		e.t.Fatal(err)
	}
	cb := e.signIn(authURL, "approve", patient, untick)
	g, err := e.client.Complete(e.t.Context(), "hospital", cb, testBinding)
	if err != nil {
		e.t.Fatalf("Complete: %v", err)
	}
	return g, cb
}

func TestSandboxStandaloneLaunch(t *testing.T) {
	for _, tt := range []struct {
		name string
		o    sbOptions
	}{
		{"client_secret_basic v2", sbOptions{scopeVersion: 2}},
		{"client_secret_basic v1", sbOptions{scopeVersion: 1}},
		{"private_key_jwt RS384", sbOptions{scopeVersion: 2, method: AlgRS384}},
		{"private_key_jwt ES384", sbOptions{scopeVersion: 2, method: AlgES384}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newSandboxEnv(t, tt.o)
			pat := e.patients()[0]
			g, cb := e.standalone("rev-1", pat, nil)
			if cb.Get("iss") == "" {
				t.Error("sandbox sent no RFC 9207 iss (the check was not exercised)")
			}
			if g.Patient != pat || !g.Refreshable || len(g.DeniedTypes) != 0 {
				t.Fatalf("grant: patient ok=%v refreshable=%v denied=%v", g.Patient == pat, g.Refreshable, g.DeniedTypes)
			}
			if !strings.HasSuffix(g.FHIRUser, "Patient/"+pat) {
				t.Errorf("fhirUser %q", g.FHIRUser)
			}
			wantSuffix := ".rs"
			if tt.o.scopeVersion == 1 {
				wantSuffix = ".read"
			}
			if !slices.Contains(g.Scopes, "patient/Condition"+wantSuffix) {
				t.Errorf("granted scopes %q lack the %s form", g.Scopes, wantSuffix)
			}
			ts := e.client.Tokens(g.Key)
			tok, err := ts.Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if st := e.fhirGet("Patient/"+pat, tok); st != http.StatusOK {
				t.Fatalf("FHIR read with the token: %d", st)
			}
			// Refresh (as after a 401): a new working token.
			tok2, err := ts.Refresh(t.Context(), tok)
			if err != nil {
				t.Fatal(err)
			}
			if tok2 == tok || e.refreshes.Load() != 1 {
				t.Fatalf("refresh: same token %v, refreshes %d", tok2 == tok, e.refreshes.Load())
			}
			if st := e.fhirGet("Patient/"+pat, tok2); st != http.StatusOK {
				t.Fatalf("FHIR read with the refreshed token: %d", st)
			}
			// Withdrawal: revoked at the source, deleted here.
			if err := e.client.Revoke(t.Context(), g.Key); err != nil {
				t.Fatal(err)
			}
			if st := e.fhirGet("Patient/"+pat, tok2); st != http.StatusUnauthorized {
				t.Fatalf("FHIR read after revocation: %d, want 401", st)
			}
			if _, err := ts.Token(t.Context()); !errors.Is(err, ErrNoGrant) {
				t.Fatalf("Token after revocation: %v", err)
			}
		})
	}
}

func TestSandboxEHRLaunch(t *testing.T) {
	e := newSandboxEnv(t, sbOptions{})
	pat := e.patients()[1]
	launch := e.srv.Site("hospital").NewEHRLaunch(pat)
	authURL, err := e.client.BeginEHRLaunch(t.Context(), e.hs.URL+"/hospital/fhir", launch, testBinding, "rev-ehr")
	if err != nil {
		t.Fatal(err)
	}
	cb := e.signIn(authURL, "approve", "", nil)
	g, err := e.client.Complete(t.Context(), "hospital", cb, testBinding)
	if err != nil {
		t.Fatal(err)
	}
	if g.Patient != pat {
		t.Fatal("EHR launch patient context not honoured")
	}
	tok, _ := e.client.Tokens(g.Key).Token(t.Context())
	if st := e.fhirGet("Patient/"+pat, tok); st != http.StatusOK {
		t.Fatalf("FHIR read: %d", st)
	}
	// Another site's iss is refused before any request.
	before := e.srv.Site("hospital").Requests()
	if _, err := e.client.BeginEHRLaunch(t.Context(), e.hs.URL+"/clinic/fhir", launch, testBinding, "rev-ehr"); !errors.Is(err, ErrUntrustedIssuer) {
		t.Fatalf("foreign iss: %v", err)
	}
	if e.srv.Site("hospital").Requests() != before {
		t.Fatal("request made for an untrusted iss")
	}
}

func TestSandboxNarrowerGrantAndDenial(t *testing.T) {
	e := newSandboxEnv(t, sbOptions{})
	pat := e.patients()[0]
	g, _ := e.standalone("rev-1", pat, []string{"ImagingStudy", "Condition"})
	if !slices.Equal(g.DeniedTypes, []string{"ImagingStudy", "Condition"}) {
		t.Fatalf("denied types %q (granted scopes %q)", g.DeniedTypes, g.Scopes)
	}
	tok, _ := e.client.Tokens(g.Key).Token(t.Context())
	if st := e.fhirGet("Patient/"+pat, tok); st != http.StatusOK {
		t.Errorf("read of a granted type: %d", st)
	}

	authURL, err := e.client.Begin(t.Context(), BeginRequest{SourceID: "hospital", ReviewID: "rev-2", Binding: testBinding})
	if err != nil {
		t.Fatal(err)
	}
	cb := e.signIn(authURL, "deny", "", nil)
	_, err = e.client.Complete(t.Context(), "hospital", cb, testBinding)
	var ae *AuthorizationError
	if !errors.As(err, &ae) {
		t.Fatalf("denied: %v", err)
	}
	if !ae.Denied() {
		t.Fatalf("denial mapped to %q, want access_denied", ae.Code)
	}
}

// The sandbox rejects a wrong PKCE verifier: Complete reports invalid_grant.
func TestSandboxWrongPKCEVerifier(t *testing.T) {
	e := newSandboxEnv(t, sbOptions{})
	st, _ := storetest.EmbeddedRedis(t)
	c, err := New(e.cfg, st, st)
	if err != nil {
		t.Fatal(err)
	}
	authURL, err := c.Begin(t.Context(), BeginRequest{SourceID: "hospital", ReviewID: "rev-1", Binding: testBinding})
	if err != nil {
		t.Fatal(err)
	}
	cb := e.signIn(authURL, "approve", e.patients()[0], nil)
	key := stateKey(cb.Get("state"))
	sealed, _ := st.TakeState(t.Context(), key)
	plain, _ := e.keys.Open(sealed, []byte("state:"+key))
	var p pending
	_ = json.Unmarshal(plain, &p)
	p.Verifier = "a-wrong-verifier-a-wrong-verifier-a-wrong-verifier"
	plain, _ = json.Marshal(p)
	sealed, _ = e.keys.Seal(plain, []byte("state:"+key))
	_ = st.PutState(t.Context(), key, sealed, time.Minute)
	_, err = c.Complete(t.Context(), "hospital", cb, testBinding)
	var te *TokenError
	if !errors.As(err, &te) || te.Code != "invalid_grant" {
		t.Fatalf("wrong verifier: %v", err)
	}
}

func TestSandboxConcurrentRefresh(t *testing.T) {
	e := newSandboxEnv(t, sbOptions{})
	pat := e.patients()[0]
	g, _ := e.standalone("rev-1", pat, nil)
	e.clock.Advance(time.Hour) // the access token (5 minutes) has expired for the gateway
	replica, err := New(e.cfg, e.client.states, e.client.grants)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	tokens := make([]string, 20)
	for i := range 20 {
		c := e.client
		if i%2 == 1 {
			c = replica
		}
		wg.Go(func() {
			tok, err := c.Tokens(g.Key).Token(context.Background())
			if err != nil {
				t.Error(err)
			}
			tokens[i] = tok
		})
	}
	wg.Wait()
	if n := e.refreshes.Load(); n != 1 {
		t.Fatalf("%d refreshes at the sandbox, want 1", n)
	}
	if slices.Compact(slices.Sorted(slices.Values(tokens)))[0] != tokens[0] || len(slices.Compact(slices.Sorted(slices.Values(tokens)))) != 1 {
		t.Fatal("callers got different tokens")
	}
	if st := e.fhirGet("Patient/"+pat, tokens[0]); st != http.StatusOK {
		t.Fatalf("FHIR read with the refreshed token: %d", st)
	}
	// No token in any URL the sandbox saw, nor in the logs.
	rec := e.recordOf(g.Key)
	e.tokenURLs.Range(func(k, _ any) bool {
		if s := containsAny(k.(string), rec.AccessToken, rec.RefreshToken, tokens[0], sbSecret); s != "" {
			t.Errorf("URL carries a token: %s", k)
		}
		return true
	})
	if s := containsAny(e.logs.String(), rec.AccessToken, rec.RefreshToken, tokens[0], sbSecret, pat); s != "" {
		t.Error("logs carry a token or the patient id")
	}
}

func (e *sbEnv) recordOf(key string) *record {
	e.t.Helper()
	rec, err := e.client.loadRecord(e.t.Context(), key)
	if err != nil {
		e.t.Fatal(err)
	}
	return rec
}

// The FHIR client retrieves with the grant's token source; when the source rejects the access token (revoked behind
// the gateway's back), the FHIR client's one Refresh on 401 gets a new token and the retrieval completes.
func TestSandboxRetrieveWithRefreshOn401(t *testing.T) {
	e := newSandboxEnv(t, sbOptions{})
	pat := e.patients()[0]
	g, _ := e.standalone("rev-1", pat, nil)
	fc, err := fhir.NewClient(fhir.Options{BaseURL: e.hs.URL + "/hospital/fhir"})
	if err != nil {
		t.Fatal(err)
	}
	ts := e.client.Tokens(g.Key)
	rec, err := fc.Retrieve(t.Context(), fhir.Query{PatientID: pat, Tokens: ts})
	if err != nil {
		t.Fatalf("retrieve: %v", err)
	}
	if rec.Patient.ID != pat || e.refreshes.Load() != 0 {
		t.Fatalf("first retrieval: patient ok=%v, refreshes %d", rec.Patient.ID == pat, e.refreshes.Load())
	}

	old, _ := ts.Token(t.Context())
	form := url.Values{"token": {old}, "token_type_hint": {"access_token"}}
	req, _ := http.NewRequest(http.MethodPost, e.hs.URL+"/hospital/auth/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("gw", sbSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if st := e.fhirGet("Patient/"+pat, old); st != http.StatusUnauthorized {
		t.Fatalf("revoked access token still accepted: %d", st)
	}

	rec, err = fc.Retrieve(t.Context(), fhir.Query{PatientID: pat, Tokens: ts})
	if err != nil {
		t.Fatalf("retrieve after the token was revoked: %v", err)
	}
	if rec.Patient.ID != pat {
		t.Fatal("wrong patient")
	}
	if n := e.refreshes.Load(); n != 1 {
		t.Fatalf("%d refreshes, want exactly 1 for the whole retrieval", n)
	}
}
