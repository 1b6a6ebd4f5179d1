package auth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"secondlook/store/storetest"
)

// Each test here guards one defence; the comment names the code whose removal makes it fail.

// Guard: TakeState is single use (store GETDEL).
func TestGuardReplayedState(t *testing.T) {
	e := newEnv(t, envOptions{})
	cb, _ := e.begin(BeginRequest{})
	if _, err := e.client.Complete(t.Context(), "h1", cb, testBinding); err != nil {
		t.Fatal(err)
	}
	calls := e.fake.tokenCalls.Load()
	if _, err := e.client.Complete(t.Context(), "h1", cb, testBinding); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("replay: %v, want ErrInvalidState", err)
	}
	if e.fake.tokenCalls.Load() != calls {
		t.Fatal("a replayed state reached the token endpoint")
	}
	// A state that was never issued, and a state presented after its TTL.
	forged := url.Values{"state": {randomToken()}, "code": {"c"}}
	if _, err := e.client.Complete(t.Context(), "h1", forged, testBinding); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("forged state: %v", err)
	}
	if _, err := e.client.Complete(t.Context(), "h1", url.Values{"code": {"c"}}, testBinding); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("no state: %v", err)
	}
	cb2, _ := e.begin(BeginRequest{})
	e.clock.Advance(11 * time.Minute)
	if _, err := e.client.Complete(t.Context(), "h1", cb2, testBinding); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("state after 11 minutes: %v", err)
	}
}

// Guard: the binding comparison in complete.
func TestGuardStateWithAnotherBrowsersBinding(t *testing.T) {
	e := newEnv(t, envOptions{})
	cb, _ := e.begin(BeginRequest{Binding: testBinding})
	_, err := e.client.Complete(t.Context(), "h1", cb, "binding-hash-of-browser-B-cookie")
	if !errors.Is(err, ErrBindingMismatch) {
		t.Fatalf("other browser: %v, want ErrBindingMismatch", err)
	}
	if e.fake.tokenCalls.Load() != 0 {
		t.Fatal("the code was redeemed for another browser")
	}
	// The attempt burned the state: the legitimate browser must start again rather than race the attacker.
	if _, err := e.client.Complete(t.Context(), "h1", cb, testBinding); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("after a foreign attempt: %v", err)
	}
	cb2, _ := e.begin(BeginRequest{})
	if _, err := e.client.Complete(t.Context(), "h1", cb2, ""); !errors.Is(err, ErrBindingMismatch) {
		t.Fatalf("no cookie: %v", err)
	}
	if _, err := e.client.Begin(t.Context(), BeginRequest{SourceID: "h1", ReviewID: "rev-1"}); err == nil {
		t.Fatal("Begin without a binding accepted")
	}
}

// Guard: the source comparison (mix-up defence) and the RFC 9207 iss check in complete.
func TestGuardMixUp(t *testing.T) {
	other := newFakeSMART(t, nil)
	e := newEnv(t, envOptions{config: func(c *Config) {
		c.Sources = append(c.Sources, Source{ID: "h2", FHIRBaseURL: other.base(), ClientID: "gw-basic",
			Method: MethodClientSecretBasic, Secret: []byte(testSecret)})
	}})
	cb, _ := e.begin(BeginRequest{})
	if _, err := e.client.Complete(t.Context(), "h2", cb, testBinding); !errors.Is(err, ErrSourceMismatch) {
		t.Fatalf("callback at h2 for a state begun at h1: %v, want ErrSourceMismatch", err)
	}
	if e.fake.tokenCalls.Load()+other.tokenCalls.Load() != 0 {
		t.Fatal("a mixed-up code was redeemed")
	}

	cb, _ = e.begin(BeginRequest{})
	cb.Set("iss", other.issuer())
	if _, err := e.client.Complete(t.Context(), "h1", cb, testBinding); !errors.Is(err, ErrIssuerMismatch) {
		t.Fatalf("iss of another server: %v, want ErrIssuerMismatch", err)
	}
	if e.fake.tokenCalls.Load() != 0 {
		t.Fatal("a code from another issuer was redeemed")
	}
}

// Guard: a server that promises RFC 9207 iss must send it.
func TestGuardMissingPromisedIss(t *testing.T) {
	e := newEnv(t, envOptions{fake: func(o *fakeOptions) { o.issParamPromise = true; o.omitIss = true }})
	cb, _ := e.begin(BeginRequest{})
	if _, err := e.client.Complete(t.Context(), "h1", cb, testBinding); !errors.Is(err, ErrIssuerMismatch) {
		t.Fatalf("missing promised iss: %v", err)
	}
	// Without the promise, a missing iss is accepted (the redirect URI per source already separates sources).
	e2 := newEnv(t, envOptions{fake: func(o *fakeOptions) { o.omitIss = true }})
	e2.authorize()
}

// Guard: error responses are mapped to a typed error and the server's text is dropped; a missing code is refused.
func TestGuardErrorResponseAndMissingCode(t *testing.T) {
	e := newEnv(t, envOptions{})
	cb, _ := e.begin(BeginRequest{})
	cb.Del("code")
	cb.Set("error", "access_denied")
	cb.Set("error_description", "<script>alert(1)</script> SERVER-TEXT")
	_, err := e.client.Complete(t.Context(), "h1", cb, testBinding)
	var ae *AuthorizationError
	if !errors.As(err, &ae) || !ae.Denied() {
		t.Fatalf("error=access_denied: %v", err)
	}
	if strings.Contains(err.Error(), "SERVER-TEXT") || strings.Contains(err.Error(), "script") {
		t.Fatalf("error echoes server text: %v", err)
	}
	cb, _ = e.begin(BeginRequest{})
	cb.Del("code")
	cb.Set("error", "made_up_<b>code</b>")
	if _, err := e.client.Complete(t.Context(), "h1", cb, testBinding); !errors.As(err, &ae) || ae.Code != "other" {
		t.Fatalf("unknown error code: %v", err)
	}
	cb, _ = e.begin(BeginRequest{})
	cb.Del("code")
	if _, err := e.client.Complete(t.Context(), "h1", cb, testBinding); !errors.Is(err, ErrMissingCode) {
		t.Fatalf("missing code: %v", err)
	}
	if strings.Contains(e.logs.String(), "SERVER-TEXT") {
		t.Fatal("server text logged")
	}
}

// Guard: the client sends the PKCE verifier kept server-side (oauth2.VerifierOption in exchange), and a wrong or
// missing one is refused by the server. The state is rewritten in the store to simulate a wrong verifier.
func TestGuardPKCEVerifier(t *testing.T) {
	for _, tt := range []struct{ name, verifier string }{
		{"wrong verifier", "wrong-verifier-wrong-verifier-wrong-verifier-0123"},
		{"missing verifier", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			cb, _ := e.begin(BeginRequest{})
			key := stateKey(cb.Get("state"))
			sealed, err := e.store.TakeState(t.Context(), key)
			if err != nil {
				t.Fatal(err)
			}
			plain, err := e.keys.Open(sealed, []byte("state:"+key))
			if err != nil {
				t.Fatal(err)
			}
			var p pending
			if err := json.Unmarshal(plain, &p); err != nil {
				t.Fatal(err)
			}
			p.Verifier = tt.verifier
			plain, _ = json.Marshal(p)
			sealed, _ = e.keys.Seal(plain, []byte("state:"+key))
			if err := e.store.PutState(t.Context(), key, sealed, time.Minute); err != nil {
				t.Fatal(err)
			}
			_, err = e.client.Complete(t.Context(), "h1", cb, testBinding)
			var te *TokenError
			if !errors.As(err, &te) || !errors.Is(err, ErrTokenExchange) || te.Code != "invalid_grant" || te.Status != http.StatusBadRequest {
				t.Fatalf("Complete: %v, want a TokenError invalid_grant", err)
			}
			if strings.Contains(err.Error(), "SERVER-TEXT") {
				t.Fatalf("error echoes the server's description: %v", err)
			}
		})
	}
	// And the server does enforce it with the real verifier missing from a direct request.
	e := newEnv(t, envOptions{})
	cb, _ := e.begin(BeginRequest{})
	form := url.Values{"grant_type": {"authorization_code"}, "code": {cb.Get("code")},
		"redirect_uri": {testPublicURL + "/auth/callback/h1"}}
	req, _ := http.NewRequest(http.MethodPost, e.fake.endpoint("token"), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("gw-basic", testSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("code redeemed without verifier: %d", resp.StatusCode)
	}
}

// Guard: id_token verification (go-oidc verifier from smart-configuration) and the nonce comparison.
func TestGuardIDToken(t *testing.T) {
	tests := []struct {
		name string
		fake func(*fakeOptions)
		want string
	}{
		{"wrong nonce", func(o *fakeOptions) { o.idToken = func(c map[string]any) { c["nonce"] = "attacker-nonce" } }, "nonce mismatch"},
		{"nonce claim not a string", func(o *fakeOptions) { o.idToken = func(c map[string]any) { c["nonce"] = 42 } }, ""},
		{"wrong audience", func(o *fakeOptions) { o.idToken = func(c map[string]any) { c["aud"] = "another-client" } }, "wrong audience"},
		{"wrong issuer", func(o *fakeOptions) { o.idToken = func(c map[string]any) { c["iss"] = "https://evil.example/auth" } }, "wrong issuer"},
		{"same-origin issuer without nonce", func(o *fakeOptions) {
			o.idToken = func(c map[string]any) { c["iss"] = c["iss"].(string) + "/auth/fhir"; delete(c, "nonce") }
		}, "wrong issuer"},
		{"same-origin issuer with another nonce", func(o *fakeOptions) {
			o.idToken = func(c map[string]any) { c["iss"] = c["iss"].(string) + "/auth/fhir"; c["nonce"] = "attacker-nonce" }
		}, "nonce mismatch"},
		{"expired", func(o *fakeOptions) {
			o.idToken = func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() }
		}, "expired"},
		{"alg none", func(o *fakeOptions) { o.alg = "none" }, ""},
		{"missing id_token", func(o *fakeOptions) { o.noIDToken = true }, "missing"},
		{"unsupported alg RS512", func(o *fakeOptions) { o.alg = "RS512" }, ""},
		{"unknown signing key", func(o *fakeOptions) { o.alg = "RS256-unknown-key" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOptions{fake: tt.fake})
			cb, _ := e.begin(BeginRequest{})
			_, err := e.client.Complete(t.Context(), "h1", cb, testBinding)
			if !errors.Is(err, ErrIDToken) {
				t.Fatalf("Complete: %v, want ErrIDToken", err)
			}
			if tt.want != "" && !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if _, err := e.client.LoadGrant(t.Context(), "rev-1/h1"); !errors.Is(err, ErrNoGrant) {
				t.Fatalf("a grant was stored despite the bad id_token: %v", err)
			}
		})
	}
	// SMART servers need not echo the nonce (the SMART and Inferno reference servers do not): a missing nonce is
	// accepted, a different one is not (above).
	t.Run("accepts a missing nonce", func(t *testing.T) {
		e := newEnv(t, envOptions{fake: func(o *fakeOptions) { o.idToken = func(c map[string]any) { delete(c, "nonce") } }})
		e.authorize()
		if !strings.Contains(e.logs.String(), "id_token carries no nonce") {
			t.Error("a missing nonce was not logged")
		}
	})
	for _, alg := range []string{"RS256", "RS384", "ES384"} {
		t.Run("accepts "+alg, func(t *testing.T) {
			newEnv(t, envOptions{fake: func(o *fakeOptions) { o.alg = alg }}).authorize()
		})
	}
}

// Guard: the EHR-launch iss allow-list, checked before any request.
func TestGuardEHRLaunchUntrustedIssuer(t *testing.T) {
	attacker := newFakeSMART(t, nil)
	e := newEnv(t, envOptions{})
	for _, iss := range []string{
		attacker.base(),
		e.fake.base() + ".evil.example",
		e.fake.base() + "/../other",
		strings.Replace(e.fake.base(), "http://", "https://", 1),
		"",
	} {
		if _, err := e.client.BeginEHRLaunch(t.Context(), iss, "launch-for-pat-1", testBinding, "rev-1"); !errors.Is(err, ErrUntrustedIssuer) {
			t.Errorf("iss %q: %v, want ErrUntrustedIssuer", iss, err)
		}
	}
	if n := attacker.requests.Load() + e.fake.requests.Load(); n != 0 {
		t.Fatalf("%d requests were made for untrusted launches, want 0", n)
	}
}

// Guards: singleflight in refresh (one process), the GrantStore lock and the reload after it (replicas).
func TestGuardConcurrentRefresh(t *testing.T) {
	for _, tt := range []struct {
		name     string
		replicas int
		rejected bool
	}{
		{"Token, one replica", 1, false},
		{"Refresh after 401, one replica", 1, true},
		{"Token, four replicas", 4, false},
		{"Refresh after 401, four replicas", 4, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOptions{fake: func(o *fakeOptions) { o.refreshDelay = 50 * time.Millisecond; o.rotateRefresh = true }})
			g := e.authorize()
			old := e.record(g.Key).AccessToken
			if !tt.rejected {
				e.clock.Advance(2 * time.Hour) // the access token has expired
			}
			clients := []*Client{e.client}
			for len(clients) < tt.replicas {
				clients = append(clients, e.newReplica())
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			got := map[string]int{}
			for i := range 20 {
				wg.Go(func() {
					ts := clients[i%len(clients)].Tokens(g.Key)
					var tok string
					var err error
					if tt.rejected {
						tok, err = ts.Refresh(t.Context(), old)
					} else {
						tok, err = ts.Token(t.Context())
					}
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					got[tok]++
					mu.Unlock()
				})
			}
			wg.Wait()
			if n := e.fake.refreshes.Load(); n != 1 {
				t.Fatalf("%d refreshes at the server, want exactly 1", n)
			}
			if len(got) != 1 || got[old] != 0 {
				t.Fatalf("callers got %d distinct tokens (old among them: %v), want one new token", len(got), got[old] > 0)
			}
			for tok := range got {
				if !e.fake.accessLive(tok) {
					t.Fatal("returned token is not live at the server")
				}
			}
			// A late 401 on the old token does not refresh again: the stored token already differs.
			if _, err := e.client.Tokens(g.Key).Refresh(t.Context(), old); err != nil {
				t.Fatal(err)
			}
			if n := e.fake.refreshes.Load(); n != 1 {
				t.Fatalf("late Refresh(old) refreshed again (%d)", n)
			}
		})
	}
}

// Refresh rotates the refresh token, refreshes shortly before expiry, and reports a dead grant.
func TestRefreshLifecycle(t *testing.T) {
	e := newEnv(t, envOptions{fake: func(o *fakeOptions) { o.rotateRefresh = true; o.accessTTL = 10 * time.Minute }})
	g := e.authorize()
	ts := e.client.Tokens(g.Key)
	rec0 := e.record(g.Key)
	e.clock.Advance(8*time.Minute + 30*time.Second) // 90 s before expiry: still fresh
	if tok, _ := ts.Token(t.Context()); tok != rec0.AccessToken || e.fake.refreshes.Load() != 0 {
		t.Fatal("refreshed too early")
	}
	e.clock.Advance(time.Minute) // 30 s before expiry: inside RefreshBefore
	tok1, err := ts.Token(t.Context())
	if err != nil || tok1 == rec0.AccessToken || e.fake.refreshes.Load() != 1 {
		t.Fatalf("refresh before expiry: %v (refreshes %d)", err, e.fake.refreshes.Load())
	}
	rec1 := e.record(g.Key)
	if rec1.RefreshToken == rec0.RefreshToken || rec1.RefreshToken == "" {
		t.Fatal("the rotated refresh token was not stored")
	}
	// The second refresh must use the new refresh token (the server has invalidated the old one).
	tok2, err := ts.Refresh(t.Context(), tok1)
	if err != nil || tok2 == tok1 {
		t.Fatalf("second refresh: %v", err)
	}
	// Once the server forgets the refresh token, the grant needs re-authorization.
	e.fake.mu.Lock()
	clear(e.fake.refresh)
	e.fake.mu.Unlock()
	_, err = ts.Refresh(t.Context(), tok2)
	var te *TokenError
	if !errors.Is(err, ErrReauthorize) || !errors.As(err, &te) || te.Code != "invalid_grant" {
		t.Fatalf("dead refresh token: %v", err)
	}
	if _, err := e.client.Tokens("rev-404/h1").Token(t.Context()); !errors.Is(err, ErrNoGrant) {
		t.Fatalf("missing grant: %v", err)
	}
}

func TestRefreshWithPrivateKeyJWT(t *testing.T) {
	for _, alg := range []string{AlgRS384, AlgES384} {
		t.Run(alg, func(t *testing.T) {
			cfg := usePrivateKeyJWT("gw-rsa", AlgRS384, clientRSAKey)
			if alg == AlgES384 {
				cfg = usePrivateKeyJWT("gw-ec", AlgES384, clientECKey)
			}
			e := newEnv(t, envOptions{config: cfg})
			g := e.authorize()
			e.clock.Advance(2 * time.Hour)
			if _, err := e.client.Tokens(g.Key).Token(t.Context()); err != nil {
				t.Fatal(err)
			}
			if e.fake.refreshes.Load() != 1 {
				t.Fatal("no refresh")
			}
			if err := e.client.Revoke(t.Context(), g.Key); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRevoke(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.authorize()
	rec := e.record(g.Key)
	if err := e.client.Revoke(t.Context(), g.Key); err != nil {
		t.Fatal(err)
	}
	e.fake.mu.Lock()
	revoked := strings.Join(e.fake.revoked, " ")
	e.fake.mu.Unlock()
	if !strings.Contains(revoked, rec.RefreshToken) || !strings.Contains(revoked, rec.AccessToken) {
		t.Fatal("refresh and access tokens were not both revoked at the source")
	}
	if e.fake.accessLive(rec.AccessToken) {
		t.Fatal("access token still live")
	}
	if _, err := e.client.Tokens(g.Key).Token(t.Context()); !errors.Is(err, ErrNoGrant) {
		t.Fatalf("Token after revoke: %v", err)
	}
	if err := e.client.Revoke(t.Context(), g.Key); !errors.Is(err, ErrNoGrant) {
		t.Fatalf("second revoke: %v", err)
	}

	// A source without a revocation endpoint: the grant is deleted locally, nothing is sent.
	e2 := newEnv(t, envOptions{fake: func(o *fakeOptions) { o.noRevocation = true }})
	g2 := e2.authorize()
	if err := e2.client.Revoke(t.Context(), g2.Key); err != nil {
		t.Fatal(err)
	}
	if e2.fake.revokes.Load() != 0 {
		t.Fatal("revocation sent to a source without an endpoint")
	}
	if _, err := e2.client.LoadGrant(t.Context(), g2.Key); !errors.Is(err, ErrNoGrant) {
		t.Fatal("grant not deleted")
	}

	// The source refuses: the grant is deleted all the same and the failure reported.
	e3 := newEnv(t, envOptions{})
	g3 := e3.authorize()
	e3.fake.opt.clients["gw-basic"] = fakeClient{secret: "rotated", redirects: e3.fake.opt.clients["gw-basic"].redirects}
	err := e3.client.Revoke(t.Context(), g3.Key)
	var te *TokenError
	if !errors.Is(err, ErrRevoke) || !errors.As(err, &te) || te.Code != "invalid_client" {
		t.Fatalf("refused revocation: %v", err)
	}
	if _, err := e3.client.LoadGrant(t.Context(), g3.Key); !errors.Is(err, ErrNoGrant) {
		t.Fatal("grant kept after a failed remote revocation")
	}
}

// Guard: grants (and pending state) are sealed; nothing in Redis holds a token, the PKCE verifier, the patient id
// or the client secret in clear. Run against the real Redis and the embedded one.
func TestGuardTokensUnreadableInRedis(t *testing.T) {
	for _, backend := range []struct {
		name string
		new  storetest.NewStore
	}{{"real redis", storetest.RealRedis}, {"embedded redis", storetest.EmbeddedRedis}} {
		t.Run(backend.name, func(t *testing.T) {
			e := newEnv(t, envOptions{newStore: backend.new, fake: func(o *fakeOptions) { o.rotateRefresh = true }})
			// A pending authorization: its verifier and nonce must not be readable either.
			pendingURL, err := e.client.Begin(t.Context(), BeginRequest{SourceID: "h1", ReviewID: "rev-2", Binding: testBinding})
			if err != nil {
				t.Fatal(err)
			}
			pu, _ := url.Parse(pendingURL)
			g := e.authorize()
			rec := e.record(g.Key)
			e.clock.Advance(2 * time.Hour)
			if _, err := e.client.Tokens(g.Key).Token(t.Context()); err != nil {
				t.Fatal(err)
			}
			rec2 := e.record(g.Key)
			values := e.rawRedisValues()
			if len(values) < 2 {
				t.Fatalf("expected a grant and a pending state in Redis, found %d values", len(values))
			}
			secrets := []string{rec.AccessToken, rec.RefreshToken, rec2.AccessToken, rec2.RefreshToken, "pat-123",
				testSecret, pu.Query().Get("nonce"), pu.Query().Get("state"), "launch/patient"}
			// Any token of the fake server at all ("AT-" or "RT-" and 48 hex digits). The bare prefixes alone turn
			// up by chance in sealed binary values now and then; 16 hex digits after them do not.
			anyToken := regexp.MustCompile(`(AT|RT)-[0-9a-f]{16}`)
			for k, v := range values {
				if s := containsAny(k+" "+v, secrets...); s != "" {
					t.Errorf("Redis key %s holds %q in clear", k, s)
				}
				if anyToken.MatchString(k + " " + v) {
					t.Errorf("Redis key %s holds a token in clear", k)
				}
			}
			// The pending state is stored under the hash of the state, never the state itself.
			if _, err := e.store.TakeState(t.Context(), pu.Query().Get("state")); err == nil {
				t.Error("state stored under its own value")
			}
		})
	}
}

// Guard: no token, secret, code, patient id in any URL or log line. Logs are captured at debug level through a
// whole life cycle, including failures; URLs are every request the source received plus the URLs handed to the
// browser.
func TestGuardNoSecretsInURLsOrLogs(t *testing.T) {
	e := newEnv(t, envOptions{fake: func(o *fakeOptions) { o.rotateRefresh = true }})
	cb, authURL := e.begin(BeginRequest{})
	g, err := e.client.Complete(t.Context(), "h1", cb, testBinding)
	if err != nil {
		t.Fatal(err)
	}
	rec := e.record(g.Key)
	e.clock.Advance(2 * time.Hour)
	if _, err := e.client.Tokens(g.Key).Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	rec2 := e.record(g.Key)
	// Failures log too: a replay, a foreign binding, a dead refresh token.
	_, _ = e.client.Complete(t.Context(), "h1", cb, testBinding)
	cb3, _ := e.begin(BeginRequest{})
	_, _ = e.client.Complete(t.Context(), "h1", cb3, "binding-hash-of-browser-B-cookie")
	// A callback at a path the attacker chose: the path segment is not logged.
	cb4, _ := e.begin(BeginRequest{})
	_, _ = e.client.Complete(t.Context(), "Patient-pat-123-in-path", cb4, testBinding)
	e.fake.mu.Lock()
	clear(e.fake.refresh)
	e.fake.mu.Unlock()
	_, _ = e.client.Tokens(g.Key).Refresh(t.Context(), rec2.AccessToken)
	if err := e.client.Revoke(t.Context(), g.Key); err != nil {
		t.Fatal(err)
	}

	tokens := []string{rec.AccessToken, rec.RefreshToken, rec2.AccessToken, rec2.RefreshToken}
	for _, u := range append(e.fake.seenURLs(), authURL) {
		if s := containsAny(u, append(tokens, testSecret)...); s != "" {
			t.Errorf("URL %s carries a token or secret", u)
		}
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "smart token refreshed") || !strings.Contains(logs, "smart callback rejected") {
		t.Fatalf("expected log lines missing; logs:\n%s", logs)
	}
	for _, s := range append(tokens, testSecret, "pat-123", "Patient/pat-123", cb.Get("code"), cb.Get("state"),
		cb3.Get("state"), testBinding, "rev-1", "SERVER-TEXT", "in-path") {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain %q", s)
		}
	}
}

// Discovery failures do not leak the response body, and a failed discovery is not cached.
func TestDiscoveryFailure(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	upstream := newFakeSMART(t, nil)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			http.Error(w, "SERVER-TEXT", http.StatusInternalServerError)
			return
		}
		httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: upstream.srv.Listener.Addr().String()}).ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	e := newEnv(t, envOptions{config: func(c *Config) { c.Sources[0].FHIRBaseURL = proxy.URL + "/site/fhir" }})
	_, err := e.client.Discover(context.Background(), "h1")
	if !errors.Is(err, ErrDiscovery) || strings.Contains(err.Error(), "SERVER-TEXT") {
		t.Fatalf("discovery: %v", err)
	}
	fail.Store(false)
	if _, err := e.client.Discover(context.Background(), "h1"); err != nil {
		t.Fatalf("a failed discovery was cached: %v", err)
	}
}

// countingStore counts Lock calls, to show that concurrent callers in one process share one refresh (singleflight)
// instead of queueing on the Redis lock one after another.
type countingStore struct {
	GrantStore
	locks atomic.Int32
}

func (c *countingStore) Lock(ctx context.Context, key string, ttl time.Duration) (func(context.Context) error, error) {
	c.locks.Add(1)
	return c.GrantStore.Lock(ctx, key, ttl)
}

// Guard: singleflight in refresh: 20 callers in one process take the cross-replica lock once.
func TestGuardRefreshSingleflight(t *testing.T) {
	e := newEnv(t, envOptions{fake: func(o *fakeOptions) { o.refreshDelay = 50 * time.Millisecond }})
	g := e.authorize()
	counting := &countingStore{GrantStore: e.store}
	c, err := New(e.cfg, e.store, counting)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Hour)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := c.Tokens(g.Key).Token(t.Context()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := counting.locks.Load(); n != 1 {
		t.Fatalf("the lock was taken %d times, want 1 (one refresh in flight per grant in this process)", n)
	}
	if n := e.fake.refreshes.Load(); n != 1 {
		t.Fatalf("%d refreshes", n)
	}
}

// Guard: no redirects are followed from authorization servers, so a token request body (code, verifier, client
// assertion, refresh token) is never replayed to another server.
func TestGuardNoRedirectFromTokenEndpoint(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere.Add(1) }))
	t.Cleanup(other.Close)
	e := newEnv(t, envOptions{})
	g := e.authorize()
	// From now on the token endpoint answers with a redirect to another server.
	mux := e.fake.srv.Config.Handler
	e.fake.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/token") {
			http.Redirect(w, r, other.URL+"/steal", http.StatusTemporaryRedirect)
			return
		}
		mux.ServeHTTP(w, r)
	})
	e.clock.Advance(2 * time.Hour)
	if _, err := e.client.Tokens(g.Key).Token(t.Context()); !errors.Is(err, ErrRefresh) {
		t.Fatalf("refresh answered by a redirect: %v", err)
	}
	if elsewhere.Load() != 0 {
		t.Fatal("the refresh request was replayed to another server")
	}
}

// An id_token whose iss differs from the advertised issuer on the same origin (as the SMART reference launcher
// signs them) is accepted when it verifies with the source's keys and echoes the request's nonce.
func TestIDTokenSameOriginIssuer(t *testing.T) {
	e := newEnv(t, envOptions{fake: func(o *fakeOptions) {
		o.idToken = func(c map[string]any) { c["iss"] = c["iss"].(string) + "/auth/fhir" }
	}})
	cb, _ := e.begin(BeginRequest{})
	if _, err := e.client.Complete(t.Context(), "h1", cb, testBinding); err != nil {
		t.Fatalf("same-origin issuer with the nonce: %v", err)
	}
}
