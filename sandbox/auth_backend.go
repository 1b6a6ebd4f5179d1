package sandbox

import (
	"context"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Limits of SMART Backend Services (client_credentials).
const (
	// maxBackendTokenTTL caps the lifetime of a backend access token, whatever AccessTokenTTL says (SMART
	// Backend Services: at most five minutes).
	maxBackendTokenTTL = 5 * time.Minute
	// maxBackendScopes bounds the scopes one client_credentials request may ask for.
	maxBackendScopes = 100
	// maxBackendAudienceLen bounds Client.BackendAudience, as the gateway bounds an issuer's audience.
	maxBackendAudienceLen = 1024
)

// backendTokenType is the JWS typ of backend access tokens (RFC 9068), so they cannot pass for id_tokens.
const backendTokenType = "at+jwt"

// backendClaims are the claims of a backend access token (RFC 9068 with SMART's space-separated scope).
type backendClaims struct {
	jwt.Claims
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
}

// backendTokenResponse is the client_credentials token response: no refresh_token, no id_token, no patient.
type backendTokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

// ClientCredentialsExchange implements SMART Backend Services: a client with a backend audience, authenticated by
// VerifyClient with a private_key_jwt assertion (jti replay already refused), gets a JWT access token for its
// backend audience with the system/ scopes it asked for that the site grants.
func (a *authServer) ClientCredentialsExchange(ctx context.Context, r *op.ClientRequest[oidc.ClientCredentialsRequest]) (*op.Response, error) {
	c, ok := a.clients[r.Client.GetID()]
	if !ok || c.backendAudience == "" { // VerifyClient refused these already
		return nil, oidc.ErrUnauthorizedClient().WithDescription("this client may not use client_credentials")
	}
	if len(r.Data.Scope) > maxBackendScopes {
		return nil, oidc.ErrInvalidScope().WithDescription("too many scopes")
	}
	scopes := systemScopes(r.Data.Scope, a.version)
	if len(scopes) == 0 {
		return nil, oidc.ErrInvalidScope().WithDescription("ask for at least one system/ scope this server grants")
	}
	token, ttl, err := a.backendToken(op.IssuerFromContext(ctx), c, scopes)
	if err != nil {
		a.logger.ErrorContext(ctx, "sandbox auth: sign backend access token", "error", err)
		return nil, oidc.ErrServerError().WithDescription("could not issue a token")
	}
	out := op.NewResponse(backendTokenResponse{
		AccessToken: token, TokenType: "bearer", ExpiresIn: int64(ttl / time.Second), Scope: oidc.SpaceDelimitedArray(scopes).String(),
	})
	out.Header.Set("Cache-Control", "no-store")
	out.Header.Set("Pragma", "no-cache")
	return out, nil
}

// backendToken signs a backend access token for c with the site's RS256 key and returns it with its lifetime,
// min(AccessTokenTTL, 5 minutes) in whole seconds (at least one).
func (a *authServer) backendToken(issuer string, c *authClient, scopes []string) (string, time.Duration, error) {
	ttl := min(a.storage.atTTL, maxBackendTokenTTL).Truncate(time.Second)
	if ttl < time.Second {
		ttl = time.Second
	}
	iat := a.storage.now().Truncate(time.Second)
	key := a.storage.key
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key.key, KeyID: key.id}},
		(&jose.SignerOptions{}).WithType(backendTokenType))
	if err != nil {
		return "", 0, fmt.Errorf("create signer: %w", err)
	}
	claims := backendClaims{
		Claims: jwt.Claims{
			Issuer: issuer, Subject: c.id, Audience: jwt.Audience{c.backendAudience}, ID: randomID(16),
			IssuedAt: jwt.NewNumericDate(iat), Expiry: jwt.NewNumericDate(iat.Add(ttl)),
		},
		ClientID: c.id,
		Scope:    oidc.SpaceDelimitedArray(scopes).String(),
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", 0, fmt.Errorf("sign token: %w", err)
	}
	return tok, ttl, nil
}
