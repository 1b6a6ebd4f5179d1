package sandbox

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Lifetimes of the authorization server's short-lived records.
const (
	authRequestTTL = 10 * time.Minute
	authCodeTTL    = time.Minute
	launchTTL      = time.Hour
	idTokenTTL     = time.Hour
	// maxAuthRecords bounds every in-memory table of a site's authorization server, so a client looping on
	// /authorize cannot grow it without limit.
	maxAuthRecords = 100_000
)

// errAuthNotFound is the storage's sentinel for a missing, expired or used record.
var errAuthNotFound = errors.New("not found")

// authRequest is one authorization request from /authorize to the code exchange. It implements op.AuthRequest.
type authRequest struct {
	id          string
	clientID    string
	redirectURI string
	state       string
	nonce       string
	scopes      []string // requested, normalized to the site's dialect
	challenge   *oidc.CodeChallenge
	fhirBase    string // the aud the client sent, equal to the site's FHIR base
	launchPat   string // the patient of an EHR launch, or ""
	csrf        string
	created     time.Time

	// Set on approval.
	done     bool
	patient  string
	granted  []string
	authTime time.Time
	code     string
	codeExp  time.Time
}

var _ op.AuthRequest = (*authRequest)(nil)

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAMR() []string                      { return []string{"pwd"} }
func (a *authRequest) GetAudience() []string                 { return []string{a.clientID} }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.challenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return oidc.ResponseTypeCode }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return oidc.ResponseModeQuery }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.patient }
func (a *authRequest) Done() bool                            { return a.done }

// GetScopes returns the granted scopes once the patient approved, the requested ones before.
func (a *authRequest) GetScopes() []string {
	if a.done {
		return a.granted
	}
	return a.scopes
}

// accessToken is an issued access token; the token string is the op library's encryption of id:subject.
type accessToken struct {
	id        string
	clientID  string
	grantID   string
	patient   string
	scopes    []string
	fhirBase  string
	issued    time.Time
	expires   time.Time
	refreshID string
}

// refreshToken is an issued refresh token, stored under the SHA-256 of its value.
type refreshToken struct {
	id       string
	clientID string
	grantID  string
	patient  string
	scopes   []string
	fhirBase string
	authTime time.Time
	expires  time.Time
}

// refreshRequest is a refresh token being exchanged. It implements op.RefreshTokenRequest.
type refreshRequest struct {
	rt     refreshToken
	scopes []string
}

var _ op.RefreshTokenRequest = (*refreshRequest)(nil)

func (r *refreshRequest) GetAMR() []string                 { return []string{"pwd"} }
func (r *refreshRequest) GetAudience() []string            { return []string{r.rt.clientID} }
func (r *refreshRequest) GetAuthTime() time.Time           { return r.rt.authTime }
func (r *refreshRequest) GetClientID() string              { return r.rt.clientID }
func (r *refreshRequest) GetScopes() []string              { return r.scopes }
func (r *refreshRequest) GetSubject() string               { return r.rt.patient }
func (r *refreshRequest) SetCurrentScopes(scopes []string) { r.scopes = scopes }

// launch is a pending EHR launch.
type launch struct {
	patient string
	expires time.Time
}

// signingKey is the site's RS256 key for id_tokens. It implements op.SigningKey and op.Key.
type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *signingKey) Algorithm() jose.SignatureAlgorithm          { return jose.RS256 }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }
func (k *signingKey) Use() string                                 { return "sig" }

// publicKey is the published half of signingKey.
type publicKey struct{ *signingKey }

func (k publicKey) Key() any { return &k.key.PublicKey }

// authStorage is the in-memory op.Storage of one site's authorization server. Everything is guarded by mu.
type authStorage struct {
	clients map[string]*authClient
	key     *signingKey
	now     func() time.Time
	version int
	atTTL   time.Duration
	rtTTL   time.Duration

	mu       sync.Mutex
	requests map[string]*authRequest
	codes    map[string]string // code -> auth request id
	access   map[string]*accessToken
	refresh  map[string]*refreshToken // SHA-256 hex of the token -> record
	launches map[string]launch
	jtis     map[string]time.Time // client id + "\x00" + jti -> assertion expiry
}

var (
	_ op.Storage                   = (*authStorage)(nil)
	_ op.CanSetUserinfoFromRequest = (*authStorage)(nil)
)

func newAuthStorage(clients map[string]*authClient, version int, atTTL, rtTTL time.Duration, now func() time.Time) (*authStorage, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	return &authStorage{
		clients:  clients,
		key:      &signingKey{id: randomID(8), key: k},
		now:      now,
		version:  version,
		atTTL:    atTTL,
		rtTTL:    rtTTL,
		requests: map[string]*authRequest{},
		codes:    map[string]string{},
		access:   map[string]*accessToken{},
		refresh:  map[string]*refreshToken{},
		launches: map[string]launch{},
		jtis:     map[string]time.Time{},
	}, nil
}

// randomID returns n random bytes, hex encoded.
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

func hashToken(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}

// sweep drops expired records. Called with mu held, on every write, so tables stay small.
func (s *authStorage) sweep() {
	now := s.now()
	for id, r := range s.requests {
		if now.Sub(r.created) > authRequestTTL {
			delete(s.requests, id)
			if r.code != "" {
				delete(s.codes, r.code)
			}
		}
	}
	for id, t := range s.access {
		if now.After(t.expires) {
			delete(s.access, id)
		}
	}
	for id, t := range s.refresh {
		if now.After(t.expires) {
			delete(s.refresh, id)
		}
	}
	for id, l := range s.launches {
		if now.After(l.expires) {
			delete(s.launches, id)
		}
	}
	for k, exp := range s.jtis {
		if now.After(exp) {
			delete(s.jtis, k)
		}
	}
}

func (s *authStorage) full() bool {
	return len(s.requests) >= maxAuthRecords || len(s.access) >= maxAuthRecords ||
		len(s.refresh) >= maxAuthRecords || len(s.launches) >= maxAuthRecords || len(s.jtis) >= maxAuthRecords
}

// newLaunch records an EHR launch of patient and returns its opaque value.
func (s *authStorage) newLaunch(patient string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep()
	if s.full() {
		return ""
	}
	v := randomID(16)
	s.launches[v] = launch{patient: patient, expires: s.now().Add(launchTTL)}
	return v
}

// launchPatient resolves a launch value.
func (s *authStorage) launchPatient(v string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.launches[v]
	if !ok || s.now().After(l.expires) {
		return "", false
	}
	return l.patient, true
}

// createAuthRequest stores a validated authorization request.
func (s *authStorage) createAuthRequest(req *authRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep()
	if s.full() {
		return oidc.ErrServerError().WithDescription("too many pending authorizations")
	}
	req.id = randomID(16)
	req.csrf = randomID(16)
	req.created = s.now()
	s.requests[req.id] = req
	return nil
}

// pendingAuthRequest returns a copy of an authorization request still waiting for the patient's decision.
func (s *authStorage) pendingAuthRequest(id string) (authRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[id]
	if !ok || r.done || s.now().Sub(r.created) > authRequestTTL {
		return authRequest{}, errAuthNotFound
	}
	return *r, nil
}

// checkCSRF reports whether token is the request's CSRF token.
func (s *authStorage) checkCSRF(id, token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[id]
	return ok && token != "" && subtle.ConstantTimeCompare([]byte(r.csrf), []byte(token)) == 1
}

// approve records the patient's decision on a pending request and returns it, ready for the code.
func (s *authStorage) approve(id, patient string, granted []string) (*authRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[id]
	if !ok || r.done || s.now().Sub(r.created) > authRequestTTL {
		return nil, errAuthNotFound
	}
	r.done = true
	r.patient = patient
	r.granted = granted
	r.authTime = s.now()
	return r, nil
}

// deny drops a pending request.
func (s *authStorage) deny(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.requests, id)
}

// CreateAuthRequest is not used: the site's Authorize stores requests with createAuthRequest, which keeps the
// SMART launch context the library's request type has no room for.
func (s *authStorage) CreateAuthRequest(context.Context, *oidc.AuthRequest, string) (op.AuthRequest, error) {
	return nil, oidc.ErrServerError().WithDescription("not supported")
}

func (s *authStorage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[id]
	if !ok || s.now().Sub(r.created) > authRequestTTL {
		return nil, errAuthNotFound
	}
	return r, nil
}

// AuthRequestByCode returns the request of an unexpired code. Codes are single use: takeCode consumes them.
func (s *authStorage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.codes[code]
	if !ok {
		return nil, errAuthNotFound
	}
	r, ok := s.requests[id]
	if !ok || !r.done || s.now().After(r.codeExp) {
		return nil, errAuthNotFound
	}
	return r, nil
}

// takeCode consumes a code: whatever happens next, it cannot be exchanged again.
func (s *authStorage) takeCode(code string) (*authRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.codes[code]
	if !ok {
		return nil, errAuthNotFound
	}
	delete(s.codes, code)
	r, ok := s.requests[id]
	if !ok || !r.done || s.now().After(r.codeExp) {
		delete(s.requests, id)
		return nil, errAuthNotFound
	}
	return r, nil
}

func (s *authStorage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[id]
	if !ok {
		return errAuthNotFound
	}
	r.code = code
	r.codeExp = s.now().Add(authCodeTTL)
	s.codes[code] = id
	return nil
}

func (s *authStorage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.requests[id]; ok && r.code != "" {
		delete(s.codes, r.code)
	}
	delete(s.requests, id)
	return nil
}

// grantOf extracts what a token request carries about the SMART grant.
func grantOf(req op.TokenRequest) (clientID, patient, fhirBase string, authTime time.Time, err error) {
	switch r := req.(type) {
	case *authRequest:
		return r.clientID, r.patient, r.fhirBase, r.authTime, nil
	case *refreshRequest:
		return r.rt.clientID, r.rt.patient, r.rt.fhirBase, r.rt.authTime, nil
	}
	return "", "", "", time.Time{}, oidc.ErrUnsupportedGrantType()
}

func (s *authStorage) newAccessToken(clientID, grantID, patient, fhirBase, refreshID string, scopes []string) *accessToken {
	now := s.now()
	t := &accessToken{
		id: randomID(16), clientID: clientID, grantID: grantID, patient: patient, fhirBase: fhirBase,
		scopes: slices.Clone(scopes), issued: now, expires: now.Add(s.atTTL), refreshID: refreshID,
	}
	s.access[t.id] = t
	return t
}

func (s *authStorage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	clientID, patient, fhirBase, _, err := grantOf(req)
	if err != nil {
		return "", time.Time{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep()
	if s.full() {
		return "", time.Time{}, oidc.ErrServerError().WithDescription("too many tokens")
	}
	t := s.newAccessToken(clientID, randomID(16), patient, fhirBase, "", req.GetScopes())
	return t.id, t.expires, nil
}

// CreateAccessAndRefreshTokens issues a first refresh token for a code, or rotates the presented one: the old
// refresh token stops working at once, so of two concurrent refreshes with the same token one fails.
func (s *authStorage) CreateAccessAndRefreshTokens(_ context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	clientID, patient, fhirBase, authTime, err := grantOf(req)
	if err != nil {
		return "", "", time.Time{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep()
	if s.full() {
		return "", "", time.Time{}, oidc.ErrServerError().WithDescription("too many tokens")
	}
	grantID := randomID(16)
	if current != "" {
		old, ok := s.refresh[hashToken(current)]
		if !ok || old.clientID != clientID || s.now().After(old.expires) {
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh token is not valid")
		}
		delete(s.refresh, old.id)
		grantID = old.grantID
	}
	value := base64.RawURLEncoding.EncodeToString([]byte(randomID(32)))
	rt := &refreshToken{
		id: hashToken(value), clientID: clientID, grantID: grantID, patient: patient, fhirBase: fhirBase,
		scopes: slices.Clone(req.GetScopes()), authTime: authTime, expires: s.now().Add(s.rtTTL),
	}
	s.refresh[rt.id] = rt
	at := s.newAccessToken(clientID, grantID, patient, fhirBase, rt.id, req.GetScopes())
	return at.id, value, at.expires, nil
}

func (s *authStorage) TokenRequestByRefreshToken(_ context.Context, token string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[hashToken(token)]
	if !ok || s.now().After(rt.expires) {
		return nil, oidc.ErrInvalidGrant().WithDescription("refresh token is not valid")
	}
	return &refreshRequest{rt: *rt, scopes: slices.Clone(rt.scopes)}, nil
}

func (s *authStorage) TerminateSession(context.Context, string, string) error { return nil }

// RevokeToken revokes an access token (by id) or a refresh token (by id, from GetRefreshTokenInfo). Revoking a
// refresh token also revokes the access tokens of its grant (RFC 7009 section 2.1). Unknown tokens are not an
// error (RFC 7009 section 2.2).
func (s *authStorage) RevokeToken(_ context.Context, tokenOrID, _ string, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.access[tokenOrID]; ok {
		if t.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.access, tokenOrID)
		return nil
	}
	id := tokenOrID
	if _, ok := s.refresh[id]; !ok {
		id = hashToken(tokenOrID)
	}
	if rt, ok := s.refresh[id]; ok {
		if rt.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.refresh, id)
		for aid, t := range s.access {
			if t.grantID == rt.grantID {
				delete(s.access, aid)
			}
		}
	}
	return nil
}

func (s *authStorage) GetRefreshTokenInfo(_ context.Context, clientID, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[hashToken(token)]
	if !ok || rt.clientID != clientID {
		return "", "", op.ErrInvalidRefreshToken
	}
	return rt.patient, rt.id, nil
}

func (s *authStorage) SigningKey(context.Context) (op.SigningKey, error) { return s.key, nil }

func (s *authStorage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *authStorage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{s.key}}, nil
}

func (s *authStorage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	c, ok := s.clients[id]
	if !ok {
		return nil, errors.New("unknown client")
	}
	return c, nil
}

func (s *authStorage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, ok := s.clients[id]
	if !ok || c.secret == "" || subtle.ConstantTimeCompare([]byte(c.secret), []byte(secret)) != 1 {
		return errors.New("invalid client credentials")
	}
	return nil
}

func (s *authStorage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest puts the SMART fhirUser claim (an absolute URL) into id_tokens.
func (s *authStorage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, req op.IDTokenRequest, _ []string) error {
	_, patient, fhirBase, _, err := grantOf(req)
	if err != nil {
		return err
	}
	info.Subject = patient
	info.AppendClaims("fhirUser", fhirBase+"/Patient/"+patient)
	return nil
}

func (s *authStorage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, _, _ string) error {
	t, ok := s.activeToken(tokenID)
	if !ok {
		return errors.New("token is not active")
	}
	info.Subject = t.patient
	info.AppendClaims("fhirUser", t.fhirBase+"/Patient/"+t.patient)
	return nil
}

// SetIntrospectionFromToken describes an active access token issued to clientID (RFC 7662 with the SMART
// patient claim). Tokens of other clients are reported inactive.
func (s *authStorage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, tokenID, _, clientID string) error {
	t, ok := s.activeToken(tokenID)
	if !ok || t.clientID != clientID {
		return errors.New("token is not active")
	}
	resp.Scope = t.scopes
	resp.ClientID = t.clientID
	resp.TokenType = oidc.BearerToken
	resp.Expiration = oidc.FromTime(t.expires)
	resp.IssuedAt = oidc.FromTime(t.issued)
	resp.Subject = t.patient
	resp.Audience = oidc.Audience{t.fhirBase}
	resp.Claims = map[string]any{"patient": t.patient, "fhirUser": t.fhirBase + "/Patient/" + t.patient}
	return nil
}

// introspectRefresh describes an active refresh token issued to clientID.
func (s *authStorage) introspectRefresh(resp *oidc.IntrospectionResponse, token, clientID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[hashToken(token)]
	if !ok || rt.clientID != clientID || s.now().After(rt.expires) {
		return false
	}
	resp.Scope = rt.scopes
	resp.ClientID = rt.clientID
	resp.TokenType = "refresh_token"
	resp.Expiration = oidc.FromTime(rt.expires)
	resp.Subject = rt.patient
	resp.Claims = map[string]any{"patient": rt.patient}
	return true
}

// activeToken returns a copy of an unexpired, unrevoked access token.
func (s *authStorage) activeToken(id string) (accessToken, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.access[id]
	if !ok || !s.now().Before(t.expires) {
		return accessToken{}, false
	}
	return *t, true
}

func (s *authStorage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *authStorage) GetKeyByIDAndClientID(_ context.Context, keyID, clientID string) (*jose.JSONWebKey, error) {
	c, ok := s.clients[clientID]
	if !ok || c.jwks == nil {
		return nil, errors.New("no keys for client")
	}
	for _, k := range c.jwks.Key(keyID) {
		return &k, nil
	}
	return nil, errors.New("no such key")
}

func (s *authStorage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, oidc.ErrUnsupportedGrantType()
}

func (s *authStorage) Health(context.Context) error { return nil }

// useJTI records a client assertion's jti until exp and reports whether it was fresh.
func (s *authStorage) useJTI(clientID, jti string, exp time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep()
	k := clientID + "\x00" + jti
	if _, seen := s.jtis[k]; seen {
		return false
	}
	if len(s.jtis) >= maxAuthRecords {
		return false
	}
	s.jtis[k] = exp
	return true
}
