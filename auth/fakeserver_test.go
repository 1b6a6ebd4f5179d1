package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// fakeSMART is a small SMART App Launch authorization server written for these tests: it speaks the standard
// (smart-configuration, authorize with auto-approval, token with PKCE and client authentication, refresh,
// revocation) and lets a test bend one thing at a time, such as the id_token's claims or algorithm.
type fakeSMART struct {
	t   testing.TB
	srv *httptest.Server
	opt fakeOptions

	mu       sync.Mutex
	codes    map[string]*fakeCode
	access   map[string]bool // live access tokens
	refresh  map[string]*fakeCode
	jtis     map[string]bool
	urls     []string // every request URL seen, query included
	lastAuth url.Values
	revoked  []string

	requests   atomic.Int32
	tokenCalls atomic.Int32
	refreshes  atomic.Int32
	revokes    atomic.Int32
}

type fakeCode struct {
	clientID, redirect, challenge, nonce, scope, patient string
	used                                                 bool
}

type fakeClient struct {
	secret    string
	publicKey crypto.PublicKey // for private_key_jwt
	redirects []string
}

type fakeOptions struct {
	capabilities    []string
	noRevocation    bool
	issParamPromise bool
	clients         map[string]fakeClient
	patient         string
	// grant narrows the requested scope; default: grant what was asked.
	grant func(requested string) string
	// idToken lets a test change the id_token claims before signing; alg picks the algorithm ("none" for unsigned).
	idToken func(claims map[string]any)
	alg     string
	// accessTTL is the expires_in of access tokens.
	accessTTL time.Duration
	// rotateRefresh issues a new refresh token on every refresh and invalidates the old one.
	rotateRefresh bool
	// refreshDelay slows refreshes down, so concurrent callers pile up.
	refreshDelay time.Duration
	// omitIss leaves the RFC 9207 iss out of the authorization response; badIss puts another one in.
	omitIss bool
	badIss  string
	// inferno mimics the Inferno reference server's quirks: issuer = FHIR base, JWKS with padded base64url and a
	// leading zero byte in n and no kid, id_tokens without kid or nonce, token_type "bearer".
	inferno bool
	// noOIDC publishes no issuer or jwks_uri and no sso-openid-connect: a plain OAuth server.
	noOIDC bool
	// noIDToken leaves the id_token out of the token response.
	noIDToken bool
	// now is the server's clock (the test's clock, so that advancing time moves both sides).
	now func() time.Time
	// tokenBody, when set, is the whole answer of the token endpoint to any grant it accepts (content type and
	// body, status 200), for fuzzing the client's parsing of token responses.
	tokenBody func() (contentType string, body []byte)
	// idTokenPayload, when set, gives the exact bytes the id_token signs instead of the JSON of its claims.
	idTokenPayload func(claims map[string]any) []byte
}

func (f *fakeSMART) base() string { return f.srv.URL + "/site/fhir" }
func (f *fakeSMART) issuer() string {
	if f.opt.inferno {
		return f.base()
	}
	return f.srv.URL + "/site/auth"
}

func (f *fakeSMART) endpoint(name string) string { return f.srv.URL + "/site/auth/" + name }

var (
	rsaSigningKey, _ = rsa.GenerateKey(rand.Reader, 2048)
	ecSigningKey, _  = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
)

func newFakeSMART(t testing.TB, update func(*fakeOptions)) *fakeSMART {
	t.Helper()
	f := &fakeSMART{
		t:       t,
		codes:   map[string]*fakeCode{},
		access:  map[string]bool{},
		refresh: map[string]*fakeCode{},
		jtis:    map[string]bool{},
		opt: fakeOptions{
			capabilities: []string{"launch-standalone", "launch-ehr", "client-confidential-symmetric",
				"client-confidential-asymmetric", "permission-offline", "permission-patient", "permission-v2",
				"sso-openid-connect", "context-standalone-patient", "context-ehr-patient"},
			patient:   "pat-123",
			alg:       "RS256",
			accessTTL: time.Hour,
		},
	}
	if update != nil {
		update(&f.opt)
	}
	if f.opt.now == nil {
		f.opt.now = time.Now
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /site/fhir/.well-known/smart-configuration", f.discovery)
	mux.HandleFunc("GET /site/auth/jwks", f.jwks)
	mux.HandleFunc("GET /site/auth/authorize", f.authorize)
	mux.HandleFunc("POST /site/auth/token", f.token)
	mux.HandleFunc("POST /site/auth/revoke", f.revoke)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		f.mu.Lock()
		f.urls = append(f.urls, r.URL.String())
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSMART) discovery(w http.ResponseWriter, _ *http.Request) {
	caps := make([]any, 0, len(f.opt.capabilities)+1)
	for _, c := range f.opt.capabilities {
		caps = append(caps, c)
	}
	doc := map[string]any{
		"issuer":                           f.issuer(),
		"jwks_uri":                         f.endpoint("jwks"),
		"authorization_endpoint":           f.endpoint("authorize"),
		"token_endpoint":                   f.endpoint("token"),
		"introspection_endpoint":           f.endpoint("introspect"),
		"grant_types_supported":            []string{"authorization_code", "refresh_token"},
		"code_challenge_methods_supported": []string{"S256"},
		"capabilities":                     caps,
		"authorization_response_iss_parameter_supported": f.opt.issParamPromise,
	}
	if !f.opt.noRevocation {
		doc["revocation_endpoint"] = f.endpoint("revoke")
	}
	if f.opt.noOIDC {
		delete(doc, "issuer")
		delete(doc, "jwks_uri")
		doc["capabilities"] = slices.DeleteFunc(caps, func(c any) bool { return c == "sso-openid-connect" })
	}
	writeJSON(w, http.StatusOK, doc)
}

func (f *fakeSMART) jwks(w http.ResponseWriter, _ *http.Request) {
	if f.opt.inferno {
		n := append([]byte{0}, rsaSigningKey.N.Bytes()...) // Java BigInteger.toByteArray: a sign byte
		writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]string{{
			"alg": "RS256", "kty": "RSA", "use": "sig",
			"n": base64.URLEncoding.EncodeToString(n), "e": base64.URLEncoding.EncodeToString([]byte{1, 0, 1}),
		}}})
		return
	}
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: rsaSigningKey.Public(), KeyID: "rsa1", Use: "sig"},
		{Key: ecSigningKey.Public(), KeyID: "ec1", Algorithm: "ES384", Use: "sig"},
	}})
}

func (f *fakeSMART) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f.mu.Lock()
	f.lastAuth = q
	f.mu.Unlock()
	cl, ok := f.opt.clients[q.Get("client_id")]
	if !ok || !slices.Contains(cl.redirects, q.Get("redirect_uri")) {
		http.Error(w, "unknown client or redirect_uri", http.StatusBadRequest) // never redirect to an unknown URI
		return
	}
	redirect, _ := url.Parse(q.Get("redirect_uri"))
	fail := func(code string) {
		v := url.Values{"error": {code}, "state": {q.Get("state")}, "error_description": {"<script>alert(1)</script> server text"}}
		redirect.RawQuery = v.Encode()
		http.Redirect(w, r, redirect.String(), http.StatusFound)
	}
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type")
		return
	case q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "":
		fail("invalid_request")
		return
	case q.Get("aud") != f.base():
		fail("invalid_request")
		return
	case q.Get("state") == "":
		fail("invalid_request")
		return
	}
	scope := q.Get("scope")
	if f.opt.grant != nil {
		scope = f.opt.grant(scope)
	}
	patient := f.opt.patient
	if l := q.Get("launch"); l != "" {
		patient = strings.TrimPrefix(l, "launch-for-")
	}
	code := fakeRandom()
	f.mu.Lock()
	f.codes[code] = &fakeCode{clientID: q.Get("client_id"), redirect: q.Get("redirect_uri"),
		challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), scope: scope, patient: patient}
	f.mu.Unlock()
	v := url.Values{"code": {code}, "state": {q.Get("state")}}
	if f.opt.badIss != "" {
		v.Set("iss", f.opt.badIss)
	} else if !f.opt.omitIss && !f.opt.noOIDC {
		v.Set("iss", f.issuer())
	}
	redirect.RawQuery = v.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func oauthErr(w http.ResponseWriter, status int, code string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": "detail the client must not echo: SERVER-TEXT"})
}

// authenticate checks client_secret_basic or private_key_jwt and returns the client id.
func (f *fakeSMART) authenticate(r *http.Request) (string, bool) {
	if id, secret, ok := r.BasicAuth(); ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
		cl, known := f.opt.clients[id]
		return id, known && cl.secret != "" && cl.secret == secret
	}
	if r.PostForm.Get("client_assertion_type") != clientAssertionType {
		return "", false
	}
	tok, err := jwt.ParseSigned(r.PostForm.Get("client_assertion"), []jose.SignatureAlgorithm{jose.RS384, jose.ES384})
	if err != nil || len(tok.Headers) != 1 || tok.Headers[0].KeyID == "" {
		return "", false
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return "", false
	}
	cl, known := f.opt.clients[unverified.Issuer]
	if !known || cl.publicKey == nil {
		return "", false
	}
	var c jwt.Claims
	if err := tok.Claims(cl.publicKey, &c); err != nil {
		return "", false
	}
	now := f.opt.now()
	if c.Subject != c.Issuer || c.ID == "" || c.Expiry == nil || c.Expiry.Time().After(now.Add(5*time.Minute)) {
		return "", false
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: c.Issuer, AnyAudience: jwt.Audience{f.endpoint("token")}, Time: now}, 0); err != nil {
		return "", false
	}
	if id := r.PostForm.Get("client_id"); id != "" && id != c.Issuer {
		return "", false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.jtis[c.ID] {
		return "", false // a reused jti
	}
	f.jtis[c.ID] = true
	return c.Issuer, true
}

func (f *fakeSMART) token(w http.ResponseWriter, r *http.Request) {
	f.tokenCalls.Add(1)
	if err := r.ParseForm(); err != nil || len(r.URL.RawQuery) > 0 {
		oauthErr(w, http.StatusBadRequest, "invalid_request")
		return
	}
	clientID, ok := f.authenticate(r)
	if !ok {
		oauthErr(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		f.mu.Lock()
		c := f.codes[r.PostForm.Get("code")]
		valid := c != nil && !c.used && c.clientID == clientID && c.redirect == r.PostForm.Get("redirect_uri")
		if c != nil {
			c.used = true
		}
		f.mu.Unlock()
		if !valid {
			oauthErr(w, http.StatusBadRequest, "invalid_grant")
			return
		}
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if r.PostForm.Get("code_verifier") == "" || base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
			oauthErr(w, http.StatusBadRequest, "invalid_grant") // PKCE
			return
		}
		f.issue(w, clientID, c, true)
	case "refresh_token":
		f.refreshes.Add(1)
		if f.opt.refreshDelay > 0 {
			time.Sleep(f.opt.refreshDelay)
		}
		f.mu.Lock()
		c := f.refresh[r.PostForm.Get("refresh_token")]
		if c != nil && f.opt.rotateRefresh {
			delete(f.refresh, r.PostForm.Get("refresh_token"))
		}
		f.mu.Unlock()
		if c == nil || c.clientID != clientID {
			oauthErr(w, http.StatusBadRequest, "invalid_grant")
			return
		}
		f.issue(w, clientID, c, false)
	default:
		oauthErr(w, http.StatusBadRequest, "unsupported_grant_type")
	}
}

func (f *fakeSMART) issue(w http.ResponseWriter, clientID string, c *fakeCode, withIDToken bool) {
	at := "AT-" + fakeRandom()
	tokenType := "Bearer"
	if f.opt.inferno {
		tokenType = "bearer"
	}
	resp := map[string]any{
		"access_token": at,
		"token_type":   tokenType,
		"expires_in":   int(f.opt.accessTTL / time.Second),
		"scope":        c.scope,
		"patient":      c.patient,
	}
	f.mu.Lock()
	f.access[at] = true
	if strings.Contains(c.scope, "offline_access") {
		if withIDToken || f.opt.rotateRefresh {
			rt := "RT-" + fakeRandom()
			f.refresh[rt] = c
			resp["refresh_token"] = rt
		}
	}
	f.mu.Unlock()
	if withIDToken && strings.Contains(c.scope, "openid") && !f.opt.noIDToken {
		resp["id_token"] = f.idToken(clientID, c)
	}
	w.Header().Set("Cache-Control", "no-store")
	if f.opt.tokenBody != nil {
		ct, body := f.opt.tokenBody()
		w.Header().Set("Content-Type", ct)
		_, _ = w.Write(body)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (f *fakeSMART) idToken(clientID string, c *fakeCode) string {
	now := f.opt.now()
	claims := map[string]any{
		"iss":      f.issuer(),
		"sub":      "user-1",
		"aud":      clientID,
		"exp":      now.Add(5 * time.Minute).Unix(),
		"iat":      now.Unix(),
		"nonce":    c.nonce,
		"fhirUser": "Patient/" + c.patient,
	}
	if f.opt.inferno {
		delete(claims, "nonce")
	}
	if f.opt.idToken != nil {
		f.opt.idToken(claims)
	}
	payload, _ := json.Marshal(claims)
	if f.opt.idTokenPayload != nil {
		payload = f.opt.idTokenPayload(claims)
	}
	if f.opt.alg == "none" {
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
		return h + "." + base64.RawURLEncoding.EncodeToString(payload) + "."
	}
	var key jose.SigningKey
	kid := "rsa1"
	switch f.opt.alg {
	case "RS256", "RS384", "RS512":
		key = jose.SigningKey{Algorithm: jose.SignatureAlgorithm(f.opt.alg), Key: rsaSigningKey}
	case "ES384":
		key = jose.SigningKey{Algorithm: jose.ES384, Key: ecSigningKey}
		kid = "ec1"
	case "RS256-unknown-key":
		other, _ := rsa.GenerateKey(rand.Reader, 2048)
		key = jose.SigningKey{Algorithm: jose.RS256, Key: other}
	default:
		f.t.Fatalf("fake: unknown alg %q", f.opt.alg)
	}
	so := (&jose.SignerOptions{}).WithType("JWT")
	if !f.opt.inferno {
		so = so.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(key, so)
	if err != nil {
		f.t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		f.t.Fatal(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

func (f *fakeSMART) revoke(w http.ResponseWriter, r *http.Request) {
	f.revokes.Add(1)
	if err := r.ParseForm(); err != nil {
		oauthErr(w, http.StatusBadRequest, "invalid_request")
		return
	}
	if _, ok := f.authenticate(r); !ok {
		oauthErr(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	tok := r.PostForm.Get("token")
	f.mu.Lock()
	delete(f.access, tok)
	delete(f.refresh, tok)
	f.revoked = append(f.revoked, tok)
	f.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (f *fakeSMART) seenURLs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.urls)
}

func (f *fakeSMART) accessLive(tok string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.access[tok]
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fakeRandom() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x", b)
}
