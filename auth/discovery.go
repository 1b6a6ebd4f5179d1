package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"secondlook/tracing"
)

// maxDiscoveryBytes bounds a smart-configuration document.
const maxDiscoveryBytes = 1 << 20

// SMARTConfiguration is the part of a source's /.well-known/smart-configuration the gateway uses.
type SMARTConfiguration struct {
	Issuer                        string   `json:"issuer"`
	JWKSURI                       string   `json:"jwks_uri"`
	AuthorizationEndpoint         string   `json:"authorization_endpoint"`
	TokenEndpoint                 string   `json:"token_endpoint"`
	RevocationEndpoint            string   `json:"revocation_endpoint"`
	IntrospectionEndpoint         string   `json:"introspection_endpoint"`
	GrantTypesSupported           []string `json:"grant_types_supported"`
	CodeChallengeMethodsSupported []string `json:"code_challenge_methods_supported"`
	ScopesSupported               []string `json:"scopes_supported"`
	TokenEndpointAuthMethods      []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgs  []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	// IssParameterSupported is RFC 9207's authorization_response_iss_parameter_supported: when true, a callback
	// without iss is rejected.
	IssParameterSupported bool `json:"authorization_response_iss_parameter_supported"`
	// Capabilities are the declared SMART capabilities, trimmed and lower-cased; non-string entries are dropped.
	Capabilities []string `json:"-"`
}

// OIDC reports whether the source is an OpenID provider (issuer and jwks_uri published): the gateway then asks
// for openid and fhirUser and requires a valid id_token.
func (s *SMARTConfiguration) OIDC() bool { return s.Issuer != "" && s.JWKSURI != "" }

// Has reports whether the configuration declares a capability (compared case-insensitively).
func (s *SMARTConfiguration) Has(capability string) bool {
	return slices.Contains(s.Capabilities, strings.ToLower(capability))
}

type discovered struct {
	conf     *SMARTConfiguration
	verifier *oidc.IDTokenVerifier
	// sameOriginVerifier checks everything but the issuer, for id_tokens whose iss differs from the advertised
	// issuer on the same origin (see checkIDToken).
	sameOriginVerifier *oidc.IDTokenVerifier
	at                 time.Time
}

// Discover returns the source's smart-configuration, fetched from <FHIR base>/.well-known/smart-configuration and
// cached for Config.DiscoveryTTL. It checks that the document names an authorization endpoint and a token endpoint,
// an issuer and a JWKS URI when it declares sso-openid-connect, that PKCE S256 is supported, and that every
// endpoint is an absolute URL with the FHIR base's scheme.
func (c *Client) Discover(ctx context.Context, sourceID string) (*SMARTConfiguration, error) {
	d, err := c.discover(ctx, sourceID)
	if err != nil {
		return nil, err
	}
	return d.conf, nil
}

func (c *Client) discover(ctx context.Context, sourceID string) (*discovered, error) {
	src, ok := c.sources[sourceID]
	if !ok {
		return nil, ErrUnknownSource
	}
	c.discoverMu.Lock()
	d := c.discovered[sourceID]
	c.discoverMu.Unlock()
	if d != nil && c.now().Sub(d.at) < c.cfg.DiscoveryTTL {
		return d, nil
	}
	v, err, _ := c.discoverSF.Do(sourceID, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		d, err := c.fetchDiscovery(ctx, src)
		if err != nil {
			c.log.Warn("smart discovery failed", "source", src.ID, "error", err)
			return nil, err
		}
		c.discoverMu.Lock()
		c.discovered[sourceID] = d
		c.discoverMu.Unlock()
		return d, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*discovered), nil
}

func (c *Client) fetchDiscovery(ctx context.Context, src *source) (*discovered, error) {
	req, err := http.NewRequestWithContext(tracing.WithOperation(ctx, "discovery"), http.MethodGet, src.FHIRBaseURL+"/.well-known/smart-configuration", nil)
	if err != nil {
		return nil, fmt.Errorf("%w: build request", ErrDiscovery)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: request failed", ErrDiscovery)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: status %d", ErrDiscovery, resp.StatusCode)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" && !strings.HasSuffix(mt, "+json") {
		return nil, fmt.Errorf("%w: content type is not JSON", ErrDiscovery)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDiscoveryBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read body", ErrDiscovery)
	}
	if len(body) > maxDiscoveryBytes {
		return nil, fmt.Errorf("%w: document larger than %d bytes", ErrDiscovery, maxDiscoveryBytes)
	}
	conf, err := parseSMARTConfiguration(body, src.FHIRBaseURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDiscovery, err)
	}
	if !conf.OIDC() {
		return &discovered{conf: conf, at: c.now()}, nil
	}
	// The verifier is built from smart-configuration, not from OIDC discovery: SMART servers publish their metadata
	// here, and go-oidc then accepts exactly the listed algorithms (never "none").
	jwksClient := *c.http
	base := jwksClient.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	jwksClient.Transport = &jwksTransport{base: base, jwksURL: conf.JWKSURI}
	kctx := oidc.ClientContext(context.Background(), &jwksClient)
	provider := (&oidc.ProviderConfig{
		IssuerURL:  conf.Issuer,
		AuthURL:    conf.AuthorizationEndpoint,
		TokenURL:   conf.TokenEndpoint,
		JWKSURL:    conf.JWKSURI,
		Algorithms: []string{oidc.RS256, oidc.RS384, oidc.ES384},
	}).NewProvider(kctx)
	verifier := provider.VerifierContext(kctx, &oidc.Config{ClientID: src.ClientID, Now: c.now})
	sameOrigin := provider.VerifierContext(kctx, &oidc.Config{ClientID: src.ClientID, Now: c.now, SkipIssuerCheck: true})
	return &discovered{conf: conf, verifier: verifier, sameOriginVerifier: sameOrigin, at: c.now()}, nil
}

func parseSMARTConfiguration(body []byte, fhirBase string) (*SMARTConfiguration, error) {
	var conf SMARTConfiguration
	if err := json.Unmarshal(body, &conf); err != nil {
		return nil, errors.New("document is not a valid smart-configuration")
	}
	var raw struct {
		Capabilities []json.RawMessage `json:"capabilities"`
	}
	if err := json.Unmarshal(body, &raw); err != nil || raw.Capabilities == nil {
		return nil, errors.New("capabilities missing")
	}
	for _, r := range raw.Capabilities {
		var s string
		if json.Unmarshal(r, &s) != nil {
			continue // lenient: skip entries that are not strings
		}
		if s = strings.ToLower(strings.TrimSpace(s)); s != "" {
			conf.Capabilities = append(conf.Capabilities, s)
		}
	}
	base, _ := url.Parse(fhirBase)
	var problems []string
	for _, f := range []struct {
		name     string
		value    string
		required bool
	}{
		{"authorization_endpoint", conf.AuthorizationEndpoint, true},
		{"token_endpoint", conf.TokenEndpoint, true},
		{"issuer", conf.Issuer, conf.Has("sso-openid-connect")},
		{"jwks_uri", conf.JWKSURI, conf.Has("sso-openid-connect")},
		{"revocation_endpoint", conf.RevocationEndpoint, false},
		{"introspection_endpoint", conf.IntrospectionEndpoint, false},
	} {
		if f.value == "" {
			if f.required {
				problems = append(problems, f.name+" missing")
			}
			continue
		}
		u, err := url.Parse(f.value)
		if err != nil || !u.IsAbs() || u.Host == "" || u.User != nil || u.Fragment != "" {
			problems = append(problems, f.name+" is not an absolute URL")
			continue
		}
		if u.Scheme != "https" && (u.Scheme != "http" || base.Scheme != "http") {
			problems = append(problems, f.name+" must use https")
		}
	}
	if (conf.Issuer == "") != (conf.JWKSURI == "") {
		problems = append(problems, "issuer and jwks_uri must come together")
	}
	if !slices.Contains(conf.CodeChallengeMethodsSupported, "S256") {
		problems = append(problems, "PKCE S256 not supported")
	}
	if conf.GrantTypesSupported != nil && !slices.Contains(conf.GrantTypesSupported, "authorization_code") {
		problems = append(problems, "authorization_code grant not supported")
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return &conf, nil
}
