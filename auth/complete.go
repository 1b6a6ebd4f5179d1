package auth

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jsonv2 "github.com/go-json-experiment/json"
	"golang.org/x/oauth2"

	"secondlook/store"
	"secondlook/tracing"
)

// patientIDPattern is the FHIR id syntax; a patient context that does not match is refused.
var patientIDPattern = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// Complete finishes an authorization from the callback's query parameters, received at
// /auth/callback/{sourceID} with the browser's binding. It takes (and so consumes) the state first; then it rejects
// another browser's binding, a callback at another source's redirect URI, an RFC 9207 iss that is not the source's
// issuer, an error response and a missing code; then it exchanges the code with the PKCE verifier, verifies the
// id_token and its nonce, and stores the grant sealed.
func (c *Client) Complete(ctx context.Context, sourceID string, callback url.Values, binding string) (*Grant, error) {
	g, err := c.complete(ctx, sourceID, callback, binding)
	if err != nil {
		c.log.Warn("smart callback rejected", "source", logSource(c, sourceID), "error", err)
		return nil, err
	}
	c.log.Info("smart authorization completed", "source", g.SourceID, "granted_types", len(g.GrantedTypes),
		"denied_types", len(g.DeniedTypes), "refreshable", g.Refreshable)
	return g, nil
}

// logSource returns sourceID if it is configured, so that a path segment an attacker chose never reaches the log.
func logSource(c *Client, sourceID string) string {
	if _, ok := c.sources[sourceID]; ok {
		return sourceID
	}
	return "(unknown)"
}

func (c *Client) complete(ctx context.Context, sourceID string, q url.Values, binding string) (*Grant, error) {
	state := q.Get("state")
	if state == "" || len(state) > 512 {
		return nil, ErrInvalidState
	}
	key := stateKey(state)
	sealed, err := c.states.TakeState(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrInvalidState
	}
	if err != nil {
		return nil, fmt.Errorf("auth: take state: %w", err)
	}
	plain, err := c.cfg.Keys.Open(sealed, []byte("state:"+key))
	if err != nil {
		return nil, ErrInvalidState
	}
	var p pending
	if err := json.Unmarshal(plain, &p); err != nil {
		return nil, ErrInvalidState
	}
	if c.now().Sub(p.Created) > c.cfg.StateTTL {
		return nil, ErrInvalidState
	}
	if binding == "" || subtle.ConstantTimeCompare([]byte(binding), []byte(p.Binding)) != 1 {
		return nil, ErrBindingMismatch
	}
	if sourceID != p.Source {
		return nil, ErrSourceMismatch
	}
	src, ok := c.sources[p.Source]
	if !ok || src.redirectURI != p.Redirect {
		return nil, ErrSourceMismatch
	}
	d, err := c.discover(ctx, src.ID)
	if err != nil {
		return nil, err
	}
	if q.Has("iss") {
		if q.Get("iss") != d.conf.Issuer {
			return nil, ErrIssuerMismatch
		}
	} else if d.conf.IssParameterSupported {
		return nil, ErrIssuerMismatch
	}
	if q.Has("error") {
		return nil, &AuthorizationError{Code: oauthCode(q.Get("error"))}
	}
	code := q.Get("code")
	if code == "" {
		return nil, ErrMissingCode
	}

	tok, err := c.exchange(ctx, src, d.conf, p, code)
	if err != nil {
		return nil, err
	}
	if tok.AccessToken == "" {
		return nil, fmt.Errorf("%w: no access_token", ErrTokenResponse)
	}
	fhirUser, err := c.checkIDToken(ctx, src, d, p, tok)
	if err != nil {
		return nil, err
	}
	patient, _ := tok.Extra("patient").(string)
	if !patientIDPattern.MatchString(patient) {
		return nil, fmt.Errorf("%w: no valid patient context", ErrTokenResponse)
	}

	// RFC 6749 5.1: an absent scope means the scope requested was granted.
	scopes := p.Scopes
	if s, ok := tok.Extra("scope").(string); ok {
		scopes = parseScope(s)
	}
	granted, denied := splitTypes(scopes, p.Types)
	now := c.now()
	rec := &record{
		Grant: Grant{
			Key:          GrantKey(p.Review, src.ID),
			SourceID:     src.ID,
			ReviewID:     p.Review,
			Patient:      patient,
			FHIRUser:     fhirUser,
			Scopes:       scopes,
			GrantedTypes: granted,
			DeniedTypes:  denied,
			Refreshable:  tok.RefreshToken != "",
			EHRLaunch:    p.EHR,
			GrantedAt:    now,
			ExpiresAt:    now.Add(c.cfg.GrantTTL),
		},
		AccessToken:  tok.AccessToken,
		RefreshToken: tok.RefreshToken,
		TokenType:    tok.TokenType,
	}
	if tok.ExpiresIn > 0 {
		rec.Expiry = now.Add(time.Duration(tok.ExpiresIn) * time.Second)
		rec.Grant.AccessExpiry = rec.Expiry
	}
	// Under the grant's lock, so a refresh of an earlier grant for the same review and source, still in flight,
	// cannot overwrite this one with its older tokens.
	unlock, err := c.grants.Lock(ctx, rec.Grant.Key, refreshLockTTL)
	if err != nil {
		return nil, fmt.Errorf("auth: store grant: lock: %w", err)
	}
	defer func() { _ = unlock(context.WithoutCancel(ctx)) }()
	if err := c.saveRecord(ctx, rec); err != nil {
		return nil, err
	}
	g := rec.Grant
	return &g, nil
}

// exchange redeems the code with the PKCE verifier at the token endpoint, authenticating as the source requires.
func (c *Client) exchange(ctx context.Context, src *source, conf *SMARTConfiguration, p pending, code string) (*oauth2.Token, error) {
	opts := []oauth2.AuthCodeOption{oauth2.VerifierOption(p.Verifier)}
	if src.Method == MethodPrivateKeyJWT {
		assertion, err := c.clientAssertion(src, conf.TokenEndpoint)
		if err != nil {
			return nil, fmt.Errorf("%w: client assertion: %v", ErrTokenExchange, err)
		}
		opts = append(opts,
			oauth2.SetAuthURLParam("client_assertion_type", clientAssertionType),
			oauth2.SetAuthURLParam("client_assertion", assertion))
	}
	ctx = context.WithValue(tracing.WithOperation(ctx, "token"), oauth2.HTTPClient, c.http)
	tok, err := c.oauthConfig(src, conf, p.Scopes).Exchange(ctx, code, opts...)
	if err != nil {
		return nil, tokenError(ErrTokenExchange, err)
	}
	return tok, nil
}

// tokenError reduces an oauth2 error to its status and error code: oauth2's own message embeds the response body.
func tokenError(kind, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		return &TokenError{Kind: kind, Status: status, Code: oauthCode(re.ErrorCode)}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", kind, err)
	}
	return &TokenError{Kind: kind, Code: "transport"}
}

// idTokenProblem names what failed in an id_token without repeating token content.
func idTokenProblem(err error) string {
	var exp *oidc.TokenExpiredError
	if errors.As(err, &exp) {
		return "expired"
	}
	msg := strings.ToLower(err.Error())
	for _, k := range []struct{ needle, label string }{
		{"expected audience", "wrong audience"},
		{"id token issued by a different provider", "wrong issuer"},
		{"token is expired", "expired"},
		{"before the nbf", "not yet valid"},
		{"signing algorithm", "unsupported signing algorithm"},
		{"unexpected signature algorithm", "unsupported signing algorithm"},
		{"not signed", "not signed"},
		{"failed to verify signature", "bad signature"},
		{"malformed jwt", "malformed"},
	} {
		if strings.Contains(msg, k.needle) {
			return k.label
		}
	}
	return "verification failed"
}

// checkIDToken verifies the id_token of an OpenID source (signature, issuer, audience, expiry, nonce) and returns
// its fhirUser claim. A source that is not an OpenID provider was asked for no openid scope and gives none.
func (c *Client) checkIDToken(ctx context.Context, src *source, d *discovered, p pending, tok *oauth2.Token) (string, error) {
	if !p.OIDC {
		return "", nil
	}
	if d.verifier == nil {
		return "", fmt.Errorf("%w: the source no longer publishes OpenID metadata", ErrIDToken)
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return "", fmt.Errorf("%w: missing", ErrIDToken)
	}
	idt, err := d.verifier.Verify(ctx, rawID)
	requireNonce := false
	if err != nil && strings.Contains(err.Error(), "issued by a different provider") && sameOrigin(unverifiedIssuer(rawID), d.conf.Issuer) {
		// Some servers sign id_tokens with an issuer that differs from the one they advertise, on the same origin
		// (the SMART reference launcher: ".../sim/X/auth/fhir" against ".../sim/X/fhir"). Such a token is accepted
		// only if everything else verifies with this source's keys and it echoes this request's nonce, which binds
		// it to the authorization this browser began; an issuer on another origin is always refused.
		idt, err = d.sameOriginVerifier.Verify(ctx, rawID)
		requireNonce = true
		if err == nil {
			c.log.Warn("smart id_token issuer differs from the advertised issuer on the same origin", "source", src.ID)
		}
	}
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrIDToken, idTokenProblem(err))
	}
	if requireNonce && idt.Nonce == "" {
		return "", fmt.Errorf("%w: wrong issuer", ErrIDToken)
	}
	// A nonce that differs is an injected id_token and is refused. An absent nonce is tolerated: SMART App Launch
	// does not require servers to echo it (the SMART and Inferno reference servers do not), and in the code flow
	// the id_token comes straight from the token endpoint, with the code bound to this browser by state and PKCE.
	switch {
	case idt.Nonce == "":
		c.log.Info("smart id_token carries no nonce", "source", src.ID)
	case subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(p.Nonce)) != 1:
		return "", fmt.Errorf("%w: nonce mismatch", ErrIDToken)
	}
	// The claims the gateway reads itself are decoded strictly: member names match exactly ("fhirUSer" is not
	// fhirUser) and a duplicate name is refused, so no other reader of the token sees a different fhirUser.
	var raw json.RawMessage
	if err := idt.Claims(&raw); err != nil {
		return "", fmt.Errorf("%w: claims", ErrIDToken)
	}
	var claims struct {
		FHIRUser string `json:"fhirUser"`
	}
	if err := jsonv2.Unmarshal(raw, &claims); err != nil {
		return "", fmt.Errorf("%w: claims", ErrIDToken)
	}
	return claims.FHIRUser, nil
}

// unverifiedIssuer reads the iss claim of a JWT without verifying it, to decide which verification applies.
func unverifiedIssuer(raw string) string {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return ""
	}
	return c.Iss
}

// sameOrigin reports whether two absolute URLs share scheme, host and port.
func sameOrigin(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	return err1 == nil && err2 == nil && ua.Scheme != "" && ua.Host != "" &&
		strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Host, ub.Host)
}
