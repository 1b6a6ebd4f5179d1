package auth

import (
	"errors"
	"fmt"
)

// Errors returned by the client. Callers map them to HTTP statuses and user-facing messages in one place; none of
// them carries a token, code, state, patient id or text written by the remote server.
var (
	// ErrUnknownSource reports a source id that is not configured.
	ErrUnknownSource = errors.New("auth: unknown source")
	// ErrUntrustedIssuer reports an EHR launch whose iss is not the FHIR base of a configured source.
	ErrUntrustedIssuer = errors.New("auth: launch issuer is not a configured source")
	// ErrDiscovery reports a smart-configuration that could not be fetched or does not meet the requirements.
	ErrDiscovery = errors.New("auth: discovery failed")
	// ErrInvalidState reports a callback whose state is missing, unknown, expired or already used.
	ErrInvalidState = errors.New("auth: invalid or replayed state")
	// ErrBindingMismatch reports a callback presented by another browser than the one that began the authorization.
	ErrBindingMismatch = errors.New("auth: state bound to another browser")
	// ErrSourceMismatch reports a callback arriving for another source than the one the state was begun at (mix-up).
	ErrSourceMismatch = errors.New("auth: callback for another source")
	// ErrIssuerMismatch reports an RFC 9207 iss callback parameter that is not the source's issuer, or that is
	// missing though the source promised it.
	ErrIssuerMismatch = errors.New("auth: authorization response from another issuer")
	// ErrMissingCode reports a callback without an authorization code.
	ErrMissingCode = errors.New("auth: callback without authorization code")
	// ErrTokenExchange reports a failed authorization code exchange; see *TokenError for the OAuth error code.
	ErrTokenExchange = errors.New("auth: token exchange failed")
	// ErrIDToken reports a missing or invalid id_token (signature, issuer, audience, expiry or nonce).
	ErrIDToken = errors.New("auth: invalid id_token")
	// ErrTokenResponse reports a token response without the launch context the gateway needs (patient,
	// access_token).
	ErrTokenResponse = errors.New("auth: incomplete token response")
	// ErrNoGrant reports a grant key with no stored grant (never granted, revoked or expired).
	ErrNoGrant = errors.New("auth: no grant")
	// ErrReauthorize reports a grant that can no longer produce tokens (expired without a refresh token, or the
	// refresh token was rejected): the patient must authorize again.
	ErrReauthorize = errors.New("auth: grant needs re-authorization")
	// ErrRefresh reports a refresh that failed for another reason (network, server error).
	ErrRefresh = errors.New("auth: token refresh failed")
	// ErrRevoke reports a revocation at the source that failed; the local grant is deleted all the same.
	ErrRevoke = errors.New("auth: revocation at the source failed")
)

// oauthErrorCodes are the error codes of RFC 6749 (4.1.2.1, 5.2) and RFC 7009; any other code a server sends is
// reported as "other" so that no server-controlled text reaches logs or pages.
var oauthErrorCodes = map[string]bool{
	"access_denied": true, "invalid_request": true, "unauthorized_client": true, "unsupported_response_type": true,
	"invalid_scope": true, "server_error": true, "temporarily_unavailable": true, "invalid_client": true,
	"invalid_grant": true, "unsupported_grant_type": true, "unsupported_token_type": true,
}

func oauthCode(s string) string {
	if oauthErrorCodes[s] {
		return s
	}
	if s == "" {
		return "none"
	}
	return "other"
}

// AuthorizationError is an error response from the authorization endpoint (error=... on the callback). Code is one
// of the RFC 6749 codes or "other"; the server's error_description is deliberately dropped.
type AuthorizationError struct {
	Code string
}

func (e *AuthorizationError) Error() string {
	return "auth: authorization denied by the source: " + e.Code
}

// Denied reports whether the patient (or the server on their behalf) refused access.
func (e *AuthorizationError) Denied() bool { return e.Code == "access_denied" }

// TokenError is an error from the token or revocation endpoint: the HTTP status and the RFC 6749 error code (or
// "other"/"none"), never the response body. It wraps one of ErrTokenExchange, ErrReauthorize, ErrRefresh or ErrRevoke.
type TokenError struct {
	Kind   error
	Status int
	Code   string
}

func (e *TokenError) Error() string {
	return fmt.Sprintf("%v: status %d, error %s", e.Kind, e.Status, e.Code)
}

func (e *TokenError) Unwrap() error { return e.Kind }
