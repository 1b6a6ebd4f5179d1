package sandbox

import (
	"context"
	"crypto/rand"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Defaults of AuthOptions.
const (
	DefaultAccessTokenTTL  = 5 * time.Minute
	DefaultRefreshTokenTTL = 24 * time.Hour
)

// Limits on client assertions (SMART client-confidential-asymmetric).
const (
	maxAssertionLifetime = 5 * time.Minute
	assertionLeeway      = 30 * time.Second
)

// AuthOptions turns on a site's SMART App Launch 2.x authorization server (an OpenID provider built on
// github.com/zitadel/oidc/v3/pkg/op) and makes the site's FHIR server require its access tokens.
type AuthOptions struct {
	// ScopeVersion is the SMART scope dialect: 1 grants only v1 scopes (patient/X.read) and advertises
	// permission-v1; 2 grants v2 scopes (patient/X.rs) and the v1 forms too, and advertises permission-v2. 0 means 2.
	ScopeVersion int
	// Clients are the registered confidential clients. Public clients are not supported.
	Clients []Client
	// AccessTokenTTL (0 means DefaultAccessTokenTTL) and RefreshTokenTTL (0 means DefaultRefreshTokenTTL) are the
	// token lifetimes.
	AccessTokenTTL, RefreshTokenTTL time.Duration
}

// Client is one registered client of a site's authorization server.
type Client struct {
	ID string
	// Secret, if set, lets the client authenticate with client_secret_basic.
	Secret string
	// JWKS, if set, is the client's public JSON Web Key Set: the client authenticates with private_key_jwt,
	// signing RS384 or ES384 assertions (iss = sub = ID, aud = the token endpoint, exp at most 5 minutes ahead, a
	// jti never used before).
	JWKS []byte
	// RedirectURIs are the client's redirect URIs, matched exactly. A client with a BackendAudience may have
	// none: it then uses client_credentials only.
	RedirectURIs []string
	// BackendAudience, if set, lets the client use SMART Backend Services: grant_type=client_credentials,
	// authenticated with private_key_jwt only (so it needs a JWKS), for system/ scopes. The access token is then a
	// JWT for another server, typically the gateway: signed RS256 with the site's key (published at the issuer's
	// jwks_uri), aud = BackendAudience, at most 5 minutes long, never a refresh token. The site's own FHIR server
	// does not accept it.
	BackendAudience string
}

// validate reports every problem of o at once.
func (o *AuthOptions) validate(site string) []error {
	var problems []error
	bad := func(format string, args ...any) {
		problems = append(problems, fmt.Errorf("site %q: auth: "+format, append([]any{site}, args...)...))
	}
	if o.ScopeVersion < 0 || o.ScopeVersion > 2 {
		bad("ScopeVersion must be 1 or 2")
	}
	if o.AccessTokenTTL < 0 || o.RefreshTokenTTL < 0 {
		bad("token lifetimes must not be negative")
	}
	if len(o.Clients) == 0 {
		bad("no clients")
	}
	seen := map[string]bool{}
	for i, c := range o.Clients {
		if c.ID == "" {
			bad("client %d: empty ID", i)
		}
		if seen[c.ID] {
			bad("client %d: ID used twice", i)
		}
		seen[c.ID] = true
		if c.Secret == "" && len(c.JWKS) == 0 {
			bad("client %d: needs a Secret or a JWKS", i)
		}
		if len(c.JWKS) > 0 {
			if _, err := parseClientJWKS(c.JWKS); err != nil {
				bad("client %d: %v", i, err)
			}
		}
		if c.BackendAudience != "" {
			if len(c.JWKS) == 0 {
				bad("client %d: a BackendAudience needs a JWKS (backend services authenticate with private_key_jwt)", i)
			}
			if strings.TrimSpace(c.BackendAudience) == "" || len(c.BackendAudience) > maxBackendAudienceLen ||
				strings.ContainsFunc(c.BackendAudience, unicode.IsControl) {
				bad("client %d: BackendAudience must be at most %d bytes, not blank, without control characters", i, maxBackendAudienceLen)
			}
		} else if len(c.RedirectURIs) == 0 {
			bad("client %d: no redirect URIs", i)
		}
		for _, u := range c.RedirectURIs {
			p, err := url.Parse(u)
			if err != nil || !p.IsAbs() || p.Host == "" || p.Fragment != "" || (p.Scheme != "http" && p.Scheme != "https") {
				bad("client %d: redirect URI %q is not an absolute http(s) URL without a fragment", i, u)
			}
		}
	}
	return problems
}

// parseClientJWKS reads a client's JWKS and keeps the public RSA and EC keys.
func parseClientJWKS(b []byte) (*jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if err := stdjson.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("parse JWKS: %w", err)
	}
	out := &jose.JSONWebKeySet{}
	for _, k := range set.Keys {
		pub := k.Public()
		if !pub.Valid() {
			return nil, errors.New("JWKS holds a key that is neither RSA nor EC")
		}
		out.Keys = append(out.Keys, pub)
	}
	if len(out.Keys) == 0 {
		return nil, errors.New("JWKS has no keys")
	}
	return out, nil
}

// authClient is a registered client as the op library sees it.
type authClient struct {
	id        string
	secret    string
	jwks      *jose.JSONWebKeySet
	redirects []string
	version   int
	loginPath string
	// backendAudience is the aud of the client's client_credentials tokens; "" forbids that grant.
	backendAudience string
}

var _ op.Client = (*authClient)(nil)

func (c *authClient) GetID() string                    { return c.id }
func (c *authClient) RedirectURIs() []string           { return c.redirects }
func (c *authClient) PostLogoutRedirectURIs() []string { return nil }
func (c *authClient) ApplicationType() op.ApplicationType {
	return op.ApplicationTypeWeb
}

func (c *authClient) AuthMethod() oidc.AuthMethod {
	if c.secret == "" {
		return oidc.AuthMethodPrivateKeyJWT
	}
	return oidc.AuthMethodBasic
}
func (c *authClient) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}

// GrantTypes lists the client's grants: the code flow with refresh when it has redirect URIs, client_credentials
// when it has a backend audience. The op library answers unauthorized_client for any other grant.
func (c *authClient) GrantTypes() []oidc.GrantType {
	var out []oidc.GrantType
	if len(c.redirects) > 0 {
		out = append(out, oidc.GrantTypeCode, oidc.GrantTypeRefreshToken)
	}
	if c.backendAudience != "" {
		out = append(out, oidc.GrantTypeClientCredentials)
	}
	return out
}
func (c *authClient) LoginURL(id string) string            { return c.loginPath + "?id=" + url.QueryEscape(id) }
func (c *authClient) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeBearer }
func (c *authClient) IDTokenLifetime() time.Duration       { return idTokenTTL }
func (c *authClient) DevMode() bool                        { return false }
func (c *authClient) IsScopeAllowed(scope string) bool     { return scopeAllowed(scope, c.version) }
func (c *authClient) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c *authClient) ClockSkew() time.Duration             { return 0 }
func (c *authClient) RestrictAdditionalIdTokenScopes() func([]string) []string { //nolint:revive // var-naming: the name is zitadel/oidc's op.Client method
	return func(s []string) []string { return s }
}
func (c *authClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// authServer is one site's SMART authorization server: the op library's LegacyServer with the SMART parts
// overridden (launch context and aud at /authorize, the patient in token responses, RS384/ES384 client
// assertions with jti replay protection, introspection with the patient, client_credentials for backend clients
// with JWT access tokens) plus the patient sign-in page.
type authServer struct {
	*op.LegacyServer
	site     *Site
	version  int
	clients  map[string]*authClient
	storage  *authStorage
	provider *op.Provider
	handler  http.Handler
	logger   *slog.Logger
}

var _ op.ExtendedLegacyServer = (*authServer)(nil)

// authEndpoints are the paths under the issuer.
func authEndpoints() op.Endpoints {
	return op.Endpoints{
		Authorization: op.NewEndpoint("authorize"),
		Token:         op.NewEndpoint("token"),
		Introspection: op.NewEndpoint("introspect"),
		Userinfo:      op.NewEndpoint("userinfo"),
		Revocation:    op.NewEndpoint("revoke"),
		JwksURI:       op.NewEndpoint("jwks"),
	}
}

func newAuthServer(site *Site, o AuthOptions, logger *slog.Logger) (*authServer, error) {
	version := o.ScopeVersion
	if version == 0 {
		version = 2
	}
	atTTL, rtTTL := o.AccessTokenTTL, o.RefreshTokenTTL
	if atTTL == 0 {
		atTTL = DefaultAccessTokenTTL
	}
	if rtTTL == 0 {
		rtTTL = DefaultRefreshTokenTTL
	}
	a := &authServer{site: site, version: version, clients: map[string]*authClient{}, logger: logger}
	for _, c := range o.Clients {
		ac := &authClient{
			id: c.ID, secret: c.Secret, redirects: slices.Clone(c.RedirectURIs), version: version,
			loginPath: "/" + site.name + "/auth/login", backendAudience: c.BackendAudience,
		}
		if len(c.JWKS) > 0 {
			set, err := parseClientJWKS(c.JWKS)
			if err != nil {
				return nil, fmt.Errorf("client %q: %w", c.ID, err)
			}
			ac.jwks = set
		}
		a.clients[c.ID] = ac
	}
	st, err := newAuthStorage(a.clients, version, atTTL, rtTTL, time.Now)
	if err != nil {
		return nil, err
	}
	a.storage = st
	var key [32]byte
	_, _ = rand.Read(key[:])
	cfg := &op.Config{
		CryptoKey:               key,
		CodeMethodS256:          true,
		AuthMethodPrivateKeyJWT: true,
		GrantTypeRefreshToken:   true,
		SupportedScopes:         a.scopesSupported(),
		SupportedClaims:         append(slices.Clone(op.DefaultSupportedClaims), "fhirUser"),
	}
	issuer := func(bool) (op.IssuerFromRequest, error) { return a.issuer, nil }
	a.provider, err = op.NewProvider(cfg, st, issuer, op.WithAllowInsecure())
	if err != nil {
		return nil, fmt.Errorf("create OpenID provider: %w", err)
	}
	a.LegacyServer = op.NewLegacyServer(a.provider, authEndpoints())
	notFound := func(w http.ResponseWriter, _ *http.Request) { http.NotFound(w, nil) }
	a.handler = op.RegisterLegacyServer(a, notFound, op.WithHTTPMiddleware(a.addIssParam))
	return a, nil
}

// issuer is the site's issuer as the client addressed it: http://ADDR/{site}/auth.
func (a *authServer) issuer(r *http.Request) string {
	return strings.TrimSuffix(a.site.base(r), "/fhir") + "/auth"
}

// fhirBaseOf maps an issuer back to the site's FHIR base.
func fhirBaseOf(issuer string) string {
	return strings.TrimSuffix(issuer, "/auth") + "/fhir"
}

// ServeHTTP serves /{site}/auth/...: the sign-in page at /login and the op library's endpoints elsewhere.
func (a *authServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	prefix := "/" + a.site.name + "/auth"
	endpoint := strings.TrimPrefix(r.URL.Path, prefix)
	if endpoint == "/login" {
		a.login(rec, r)
	} else {
		http.StripPrefix(prefix, a.handler).ServeHTTP(rec, r)
	}
	// The endpoint path is fixed by this server; the query (codes, states) and bodies (tokens) are never logged.
	if !slices.Contains([]string{"/login", "/authorize", "/token", "/introspect", "/revoke", "/userinfo", "/jwks",
		"/.well-known/openid-configuration"}, endpoint) {
		endpoint = "other"
	}
	a.logger.LogAttrs(r.Context(), slog.LevelInfo, "sandbox auth request",
		slog.String("method", r.Method), slog.String("endpoint", endpoint), slog.Int("status", rec.status),
		slog.Duration("elapsed", time.Since(start)))
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// addIssParam adds RFC 9207's iss to every redirect from /authorize back to the client (errors included).
func (a *authServer) addIssParam(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/authorize" {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&issWriter{ResponseWriter: w, iss: a.issuer(r)}, r)
	})
}

type issWriter struct {
	http.ResponseWriter
	iss   string
	wrote bool
}

func (w *issWriter) WriteHeader(code int) {
	if !w.wrote && code >= 300 && code < 400 {
		if loc := w.Header().Get("Location"); loc != "" && !strings.HasPrefix(loc, "/") {
			if u, err := url.Parse(loc); err == nil && u.IsAbs() {
				q := u.Query()
				if !q.Has("iss") {
					q.Set("iss", w.iss)
					u.RawQuery = q.Encode()
					w.Header().Set("Location", u.String())
				}
			}
		}
	}
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *issWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// clientRedirect builds the redirect to a client's redirect URI with params and RFC 9207's iss.
func clientRedirect(redirectURI, issuer string, params url.Values) string {
	u, err := url.Parse(redirectURI)
	if err != nil { // registered URIs are validated at start-up
		return redirectURI
	}
	q := u.Query()
	for k, vs := range params {
		for _, v := range vs {
			if v != "" {
				q.Add(k, v)
			}
		}
	}
	q.Set("iss", issuer)
	u.RawQuery = q.Encode()
	return u.String()
}

// scopesSupported lists the scopes advertised in discovery.
func (a *authServer) scopesSupported() []string {
	perm := "rs"
	if a.version == 1 {
		perm = "read"
	}
	out := []string{scopeOpenID, scopeFHIRUser, scopeOffline, scopeLaunch, scopeLaunchPatient}
	out = append(out, "patient/*."+perm)
	for _, t := range a.site.resourceTypes() {
		out = append(out, "patient/"+t+"."+perm)
	}
	return append(out, "system/*."+perm)
}

// Discovery serves OpenID discovery with what this server really supports.
func (a *authServer) Discovery(ctx context.Context, r *op.Request[struct{}]) (*op.Response, error) {
	resp, err := a.LegacyServer.Discovery(ctx, r)
	if err != nil {
		return nil, err
	}
	cfg, ok := resp.Data.(*oidc.DiscoveryConfiguration)
	if !ok {
		return nil, oidc.ErrServerError()
	}
	methods := []oidc.AuthMethod{oidc.AuthMethodBasic, oidc.AuthMethodPrivateKeyJWT}
	algs := []string{string(jose.RS384), string(jose.ES384)}
	cfg.ScopesSupported = a.scopesSupported()
	cfg.ResponseTypesSupported = []string{string(oidc.ResponseTypeCode)}
	cfg.ResponseModesSupported = []string{string(oidc.ResponseModeQuery)}
	cfg.GrantTypesSupported = []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken, oidc.GrantTypeClientCredentials}
	cfg.TokenEndpointAuthMethodsSupported = methods
	cfg.TokenEndpointAuthSigningAlgValuesSupported = algs
	cfg.IntrospectionEndpointAuthMethodsSupported = methods
	cfg.IntrospectionEndpointAuthSigningAlgValuesSupported = algs
	cfg.RevocationEndpointAuthMethodsSupported = methods
	cfg.RevocationEndpointAuthSigningAlgValuesSupported = algs
	cfg.CodeChallengeMethodsSupported = []oidc.CodeChallengeMethod{oidc.CodeChallengeMethodS256}
	cfg.RequestObjectSigningAlgValuesSupported = nil
	cfg.RequestParameterSupported = false
	return op.NewResponse(struct {
		*oidc.DiscoveryConfiguration
		ISSParameter bool `json:"authorization_response_iss_parameter_supported"`
	}{cfg, true}), nil
}

// Authorize checks the SMART parts of an authorization request (PKCE S256, aud, launch context) and sends the
// browser to the sign-in page. The redirect URI has been checked by the library already, so an error returned
// here reaches the client as an error redirect.
func (a *authServer) Authorize(ctx context.Context, r *op.ClientRequest[oidc.AuthRequest]) (*op.Redirect, error) {
	d := r.Data
	if d.RequestParam != "" {
		return nil, oidc.ErrRequestNotSupported()
	}
	if d.CodeChallenge == "" || d.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE is required: send code_challenge with code_challenge_method=S256")
	}
	base := fhirBaseOf(op.IssuerFromContext(ctx))
	if aud := r.Form.Get("aud"); strings.TrimSuffix(aud, "/") != base {
		return nil, oidc.ErrInvalidRequest().WithDescription("aud must be this server's FHIR base URL")
	}
	scopes := normalizeScopes(d.Scopes, a.version)
	var launchPatient string
	switch lv := r.Form.Get("launch"); {
	case lv != "":
		if !slices.Contains(scopes, scopeLaunch) {
			return nil, oidc.ErrInvalidScope().WithDescription("an EHR launch needs the launch scope")
		}
		p, ok := a.storage.launchPatient(lv)
		if !ok {
			return nil, oidc.ErrInvalidRequest().WithDescription("unknown or expired launch")
		}
		launchPatient = p
	case slices.Contains(scopes, scopeLaunch):
		return nil, oidc.ErrInvalidRequest().WithDescription("the launch scope needs a launch parameter")
	}
	req := &authRequest{
		clientID: r.Client.GetID(), redirectURI: d.RedirectURI, state: d.State, nonce: d.Nonce, scopes: scopes,
		challenge: &oidc.CodeChallenge{Challenge: d.CodeChallenge, Method: d.CodeChallengeMethod},
		fhirBase:  base, launchPat: launchPatient,
	}
	if err := a.storage.createAuthRequest(req); err != nil {
		return nil, err
	}
	return op.NewRedirect(r.Client.LoginURL(req.id)), nil
}

// tokenResponse is the SMART token response: the OAuth one plus the launch context.
type tokenResponse struct {
	*oidc.AccessTokenResponse
	Patient string `json:"patient,omitempty"`
}

func newTokenResponse(resp *oidc.AccessTokenResponse, patient string) *op.Response {
	if !slices.Contains(resp.Scope, scopeOpenID) {
		resp.IDToken = "" // the library always makes one; SMART clients get it only with openid
	}
	out := op.NewResponse(tokenResponse{resp, patient})
	out.Header.Set("Cache-Control", "no-store")
	out.Header.Set("Pragma", "no-cache")
	return out
}

// CodeExchange redeems a code: single use, same client and redirect URI, and the PKCE verifier always required.
func (a *authServer) CodeExchange(ctx context.Context, r *op.ClientRequest[oidc.AccessTokenRequest]) (*op.Response, error) {
	req, err := a.storage.takeCode(r.Data.Code)
	if err != nil {
		return nil, oidc.ErrInvalidGrant().WithDescription("invalid code")
	}
	fail := func(e *oidc.Error) (*op.Response, error) {
		_ = a.storage.DeleteAuthRequest(ctx, req.id)
		return nil, e
	}
	if req.clientID != r.Client.GetID() {
		return fail(oidc.ErrInvalidGrant().WithDescription("code was issued to another client"))
	}
	if r.Data.RedirectURI != req.redirectURI {
		return fail(oidc.ErrInvalidGrant().WithDescription("redirect_uri does not correspond"))
	}
	if req.challenge == nil { // cannot happen: Authorize requires one; op.AuthorizeCodeChallenge would accept none
		return fail(oidc.ErrInvalidGrant().WithDescription("code_verifier required"))
	}
	if err := op.AuthorizeCodeChallenge(r.Data.CodeVerifier, req.challenge); err != nil {
		return fail(oidc.ErrInvalidGrant().WithDescription("invalid code_verifier"))
	}
	resp, err := op.CreateTokenResponse(ctx, req, r.Client, a.provider, true, r.Data.Code, "")
	if err != nil {
		return nil, err
	}
	return newTokenResponse(resp, req.patient), nil
}

// RefreshToken exchanges a refresh token for new tokens and rotates it.
func (a *authServer) RefreshToken(ctx context.Context, r *op.ClientRequest[oidc.RefreshTokenRequest]) (*op.Response, error) {
	req, err := op.RefreshTokenRequestByRefreshToken(ctx, a.storage, r.Data.RefreshToken)
	if err != nil {
		return nil, err
	}
	rr, ok := req.(*refreshRequest)
	if !ok || rr.GetClientID() != r.Client.GetID() {
		return nil, oidc.ErrInvalidGrant()
	}
	if err := op.ValidateRefreshTokenScopes(r.Data.Scopes, rr); err != nil {
		return nil, err
	}
	resp, err := op.CreateTokenResponse(ctx, rr, r.Client, a.provider, true, "", r.Data.RefreshToken)
	if err != nil {
		return nil, err
	}
	return newTokenResponse(resp, rr.rt.patient), nil
}

// VerifyClient authenticates a client at the token and revocation endpoints. client_credentials (SMART Backend
// Services) is for clients with a backend audience, authenticated with private_key_jwt only.
func (a *authServer) VerifyClient(ctx context.Context, r *op.Request[op.ClientCredentials]) (op.Client, error) {
	c, method, err := a.authenticateClient(ctx, r.Header, r.URL, r.Data)
	if err != nil {
		return nil, err
	}
	if oidc.GrantType(r.Form.Get("grant_type")) == oidc.GrantTypeClientCredentials {
		if c.backendAudience == "" {
			return nil, oidc.ErrUnauthorizedClient().WithDescription("this client may not use client_credentials")
		}
		if method != oidc.AuthMethodPrivateKeyJWT {
			return nil, oidc.ErrInvalidClient().WithDescription("client_credentials requires private_key_jwt client authentication")
		}
	}
	return c, nil
}

// authenticateClient accepts client_secret_basic or a private_key_jwt assertion, nothing else (no public clients,
// no client_secret_post), and reports which one the client used.
func (a *authServer) authenticateClient(ctx context.Context, h http.Header, u *url.URL, cc *op.ClientCredentials) (*authClient, oidc.AuthMethod, error) {
	if cc == nil {
		return nil, "", oidc.ErrInvalidClient()
	}
	if cc.ClientAssertion != "" || cc.ClientAssertionType != "" {
		if cc.ClientAssertionType != oidc.ClientAssertionTypeJWTAssertion {
			return nil, "", oidc.ErrInvalidClient().WithDescription("unsupported client_assertion_type")
		}
		issuer := op.IssuerFromContext(ctx)
		c, err := a.verifyAssertion(cc.ClientAssertion, []string{issuer + "/token", issuer + u.Path})
		if err != nil {
			return nil, "", err
		}
		if cc.ClientID != "" && cc.ClientID != c.id {
			return nil, "", oidc.ErrInvalidClient().WithDescription("client_id does not match the assertion")
		}
		return c, oidc.AuthMethodPrivateKeyJWT, nil
	}
	if scheme, _, _ := strings.Cut(h.Get("Authorization"), " "); !strings.EqualFold(scheme, "Basic") {
		return nil, "", oidc.ErrInvalidClient().WithDescription("authenticate with client_secret_basic or private_key_jwt")
	}
	if err := a.storage.AuthorizeClientIDSecret(ctx, cc.ClientID, cc.ClientSecret); err != nil {
		return nil, "", oidc.ErrInvalidClient().WithDescription("invalid client credentials")
	}
	return a.clients[cc.ClientID], oidc.AuthMethodBasic, nil
}

// verifyAssertion checks a SMART client assertion: RS384 or ES384, signed by a key of the client's JWKS (by kid),
// iss = sub = a registered client, aud one of auds, unexpired, exp at most 5 minutes ahead, and a jti not seen
// before.
func (a *authServer) verifyAssertion(assertion string, auds []string) (*authClient, error) {
	invalid := func(msg string) (*authClient, error) {
		return nil, oidc.ErrInvalidClient().WithDescription("client assertion: %s", msg)
	}
	tok, err := jwt.ParseSigned(assertion, []jose.SignatureAlgorithm{jose.RS384, jose.ES384})
	if err != nil || len(tok.Headers) != 1 {
		return invalid("not a JWS signed with RS384 or ES384")
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return invalid("unreadable claims")
	}
	c, ok := a.clients[unverified.Issuer]
	if !ok || c.jwks == nil {
		return invalid("unknown client or client without keys")
	}
	hdr := tok.Headers[0]
	keys := c.jwks.Keys
	if hdr.KeyID != "" {
		keys = c.jwks.Key(hdr.KeyID)
	}
	var claims jwt.Claims
	verified := false
	for _, k := range keys {
		if k.Algorithm != "" && k.Algorithm != hdr.Algorithm {
			continue
		}
		if err := tok.Claims(k.Key, &claims); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return invalid("bad signature")
	}
	now := a.storage.now()
	err = claims.ValidateWithLeeway(jwt.Expected{Issuer: c.id, Subject: c.id, AnyAudience: auds, Time: now}, assertionLeeway)
	if err != nil {
		return invalid("wrong iss, sub or aud, or expired")
	}
	if claims.Expiry == nil || claims.Expiry.Time().After(now.Add(maxAssertionLifetime+assertionLeeway)) {
		return invalid("exp must be at most 5 minutes ahead")
	}
	if claims.ID == "" {
		return invalid("jti is required")
	}
	if !a.storage.useJTI(c.id, claims.ID, claims.Expiry.Time().Add(assertionLeeway)) {
		return invalid("jti was used before")
	}
	return c, nil
}

// Introspect implements RFC 7662 for the site's clients: a token is active only for the client it was issued to.
func (a *authServer) Introspect(ctx context.Context, r *op.Request[op.IntrospectionRequest]) (*op.Response, error) {
	c, _, err := a.authenticateClient(ctx, r.Header, r.URL, r.Data.ClientCredentials)
	if err != nil {
		return nil, err
	}
	resp := new(oidc.IntrospectionResponse)
	if id, ok := a.accessTokenID(r.Data.Token); ok && a.storage.SetIntrospectionFromToken(ctx, resp, id, "", c.id) == nil {
		resp.Active = true
	} else if a.storage.introspectRefresh(resp, r.Data.Token, c.id) {
		resp.Active = true
	} else {
		resp = &oidc.IntrospectionResponse{}
	}
	out := op.NewResponse(resp)
	out.Header.Set("Cache-Control", "no-store")
	return out, nil
}

// accessTokenID opens an access token (the op library's encryption of id:subject) and returns its id.
func (a *authServer) accessTokenID(token string) (string, bool) {
	if token == "" || len(token) > 4096 {
		return "", false
	}
	plain, err := a.provider.Crypto().Decrypt(token)
	if err != nil {
		return "", false
	}
	id, _, ok := strings.Cut(plain, ":")
	return id, ok && id != ""
}

// NewEHRLaunch registers an EHR launch of the patient and returns the opaque launch value to pass as launch= to
// the site's authorization endpoint (with the launch scope); the patient then only approves or denies. The value
// stays valid for an hour and may be used more than once. It returns "" when the site has no authorization server
// or no such patient.
func (s *Site) NewEHRLaunch(patientID string) string {
	if s.auth == nil || s.store.get("Patient", patientID) == nil {
		return ""
	}
	return s.auth.storage.newLaunch(patientID)
}

// resourceTypes lists the types the site serves: the core search types and every loaded type, sorted.
func (s *Site) resourceTypes() []string {
	types := coreSearchTypes()
	for t := range s.store.types {
		if !slices.Contains(types, t) {
			types = append(types, t)
		}
	}
	slices.Sort(types)
	return types
}
