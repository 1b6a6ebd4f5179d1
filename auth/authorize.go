package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// BeginRequest starts an authorization at one source for one review.
type BeginRequest struct {
	// SourceID names a configured source.
	SourceID string
	// ReviewID names the review the grant is for; the grant key is ReviewID + "/" + SourceID.
	ReviewID string
	// Binding ties the authorization to the browser: a hash of the value of the browser's __Host- cookie. The
	// callback must present the same binding.
	Binding string
	// Launch is the EHR launch value; empty for a standalone launch.
	Launch string
	// IdentityOnly asks only for who the patient is (launch/patient, and openid fhirUser where the server speaks
	// OIDC): no resource scope and no offline_access. The grant proves the patient's identity and reads nothing.
	IdentityOnly bool
}

// pending is what the gateway keeps server-side between Begin and Complete, sealed, under the state's hash.
type pending struct {
	Source   string    `json:"src"`
	Review   string    `json:"rev"`
	Binding  string    `json:"bnd"`
	Redirect string    `json:"redir"`
	Verifier string    `json:"pkce"`
	Nonce    string    `json:"nonce"`
	Scopes   []string  `json:"scope"`
	Types    []string  `json:"types"`
	EHR      bool      `json:"ehr,omitempty"`
	OIDC     bool      `json:"oidc,omitempty"`
	Created  time.Time `json:"at"`
}

// reviewIDPattern keeps review ids usable as a store aggregate id (no "/", "{" or "}") and free of PHI-like
// free text.
var reviewIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

const maxLaunchLen = 2048

// Begin prepares an authorization request at the source and returns the URL to send the browser to. The state,
// nonce and PKCE verifier stay server-side (StateStore, single use, Config.StateTTL); the URL carries only the
// state, the nonce and the S256 challenge.
func (c *Client) Begin(ctx context.Context, r BeginRequest) (string, error) {
	src, ok := c.sources[r.SourceID]
	if !ok {
		return "", ErrUnknownSource
	}
	if !reviewIDPattern.MatchString(r.ReviewID) {
		return "", errors.New("auth: begin: invalid review id")
	}
	if len(r.Binding) < 16 {
		return "", errors.New("auth: begin: a browser binding of at least 16 characters is required")
	}
	if len(r.Launch) > maxLaunchLen {
		return "", errors.New("auth: begin: launch value too long")
	}
	d, err := c.discover(ctx, src.ID)
	if err != nil {
		return "", err
	}
	dialect := chooseDialect(src.ScopeDialect, d.conf)
	oidcOn := d.conf.OIDC()
	types := src.types
	if r.IdentityOnly {
		types = nil
	}
	scopes := requestedScopes(dialect, types, r.Launch != "", oidcOn)

	state := randomToken()
	nonce := randomToken()
	verifier := oauth2.GenerateVerifier()
	p := pending{
		Source:   src.ID,
		Review:   r.ReviewID,
		Binding:  r.Binding,
		Redirect: src.redirectURI,
		Verifier: verifier,
		Nonce:    nonce,
		Scopes:   scopes,
		Types:    types,
		EHR:      r.Launch != "",
		OIDC:     oidcOn,
		Created:  c.now(),
	}
	plain, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("auth: begin: encode state: %w", err)
	}
	key := stateKey(state)
	sealed, err := c.cfg.Keys.Seal(plain, []byte("state:"+key))
	if err != nil {
		return "", fmt.Errorf("auth: begin: seal state: %w", err)
	}
	if err := c.states.PutState(ctx, key, sealed, c.cfg.StateTTL); err != nil {
		return "", fmt.Errorf("auth: begin: store state: %w", err)
	}
	opts := []oauth2.AuthCodeOption{
		oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("aud", src.FHIRBaseURL),
	}
	if oidcOn {
		opts = append(opts, oauth2.SetAuthURLParam("nonce", nonce))
	}
	if r.Launch != "" {
		opts = append(opts, oauth2.SetAuthURLParam("launch", r.Launch))
	}
	u := c.oauthConfig(src, d.conf, scopes).AuthCodeURL(state, opts...)
	c.log.Info("smart authorization begun", "source", src.ID, "ehr_launch", r.Launch != "", "scope_dialect", dialect)
	return u, nil
}

// BeginEHRLaunch starts an EHR launch: iss must be exactly the FHIR base of a configured source (a trailing slash
// aside), checked before any request is made, so a forged iss never receives a request, let alone credentials.
func (c *Client) BeginEHRLaunch(ctx context.Context, iss, launch, binding, reviewID string) (string, error) {
	src := c.sourceByBase(iss)
	if src == nil {
		c.log.Warn("smart EHR launch from an unknown issuer refused")
		return "", ErrUntrustedIssuer
	}
	if launch == "" {
		return "", errors.New("auth: EHR launch without a launch value")
	}
	return c.Begin(ctx, BeginRequest{SourceID: src.ID, ReviewID: reviewID, Binding: binding, Launch: launch})
}

func (c *Client) sourceByBase(iss string) *source {
	iss = strings.TrimRight(iss, "/")
	if iss == "" {
		return nil
	}
	for _, s := range c.sources {
		if s.FHIRBaseURL == iss {
			return s
		}
	}
	return nil
}

func (c *Client) oauthConfig(src *source, conf *SMARTConfiguration, scopes []string) *oauth2.Config {
	oc := &oauth2.Config{
		ClientID:    src.ClientID,
		RedirectURL: src.redirectURI,
		Scopes:      scopes,
		Endpoint: oauth2.Endpoint{
			AuthURL:   conf.AuthorizationEndpoint,
			TokenURL:  conf.TokenEndpoint,
			AuthStyle: oauth2.AuthStyleInParams,
		},
	}
	if src.Method == MethodClientSecretBasic {
		oc.ClientSecret = string(src.Secret)
		oc.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	}
	return oc
}

// chooseDialect picks the scope syntax: the configured one, or from the capabilities (v2 preferred, v1 when only
// v1 is declared or neither is).
func chooseDialect(configured string, conf *SMARTConfiguration) string {
	switch configured {
	case DialectV1, DialectV2:
		return configured
	}
	if conf.Has("permission-v2") {
		return DialectV2
	}
	return DialectV1
}

func requestedScopes(dialect string, types []string, ehr, oidc bool) []string {
	launch := "launch/patient"
	if ehr {
		launch = "launch"
	}
	scopes := []string{launch}
	if oidc {
		scopes = append(scopes, "openid", "fhirUser")
	}
	if len(types) > 0 { // a grant that reads nothing (an identity sign-in) needs no offline access
		scopes = append(scopes, "offline_access")
	}
	suffix := ".rs"
	if dialect == DialectV1 {
		suffix = ".read"
	}
	for _, t := range types {
		scopes = append(scopes, "patient/"+t+suffix)
	}
	return scopes
}

// randomToken returns 256 random bits, base64url-encoded.
func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// stateKey is the storage key of a state: its hash, so the store (and a dump of it) never holds a usable state.
func stateKey(state string) string {
	h := sha256.Sum256([]byte(state))
	return hex.EncodeToString(h[:])
}
