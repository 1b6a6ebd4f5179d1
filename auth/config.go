package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"

	"secondlook/seal"
	"secondlook/tracing"
)

// Token endpoint authentication methods.
const (
	MethodClientSecretBasic = "client_secret_basic"
	MethodPrivateKeyJWT     = "private_key_jwt"
	MethodNone              = "none"
)

// Client assertion signing algorithms (SMART App Launch, client-confidential-asymmetric).
const (
	AlgRS384 = "RS384"
	AlgES384 = "ES384"
)

// Scope dialects.
const (
	DialectAuto = "auto"
	DialectV1   = "v1"
	DialectV2   = "v2"
)

// DefaultResourceTypes returns the resource types asked for when a Source lists none.
func DefaultResourceTypes() []string {
	return []string{"Patient", "DiagnosticReport", "Observation", "ImagingStudy", "Condition"}
}

// Source is one FHIR server and the gateway's client registration at its authorization server.
type Source struct {
	// ID names the source in callback URLs and logs: [a-z0-9][a-z0-9-]{0,62}.
	ID string
	// FHIRBaseURL is the FHIR base (also the aud of authorization requests and the only iss accepted for its EHR
	// launches), without a trailing slash.
	FHIRBaseURL string
	// ClientID is the registered client id.
	ClientID string
	// Method is MethodClientSecretBasic, MethodPrivateKeyJWT or MethodNone.
	Method string
	// Secret is the client secret for MethodClientSecretBasic.
	Secret []byte
	// Key signs client assertions for MethodPrivateKeyJWT: an *rsa.PrivateKey (2048 bits or more) for RS384 or a
	// P-384 *ecdsa.PrivateKey for ES384. Its public half is published by JWKS.
	Key crypto.Signer
	// KeyID is the kid of Key in the published JWKS.
	KeyID string
	// Alg is AlgRS384 or AlgES384.
	Alg string
	// ScopeDialect is DialectAuto (default: from the permission-v1/-v2 capabilities, v2 preferred), DialectV1 or
	// DialectV2.
	ScopeDialect string
	// ResourceTypes are the resource types asked for (read and search); default DefaultResourceTypes.
	ResourceTypes []string
}

// Config configures a Client.
type Config struct {
	// PublicURL is the gateway's external origin (and optional path prefix). The redirect URI registered at each
	// source is PublicURL + "/auth/callback/" + Source.ID.
	PublicURL string
	// Sources are the sources patients can authorize.
	Sources []Source
	// Keys seals grants at rest. Required.
	Keys *seal.Keyring
	// HTTPClient makes every request to authorization servers; the Client uses a copy that follows no redirects.
	// Default: a client with a 30 s timeout.
	HTTPClient *http.Client
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives operation, source id and error class only. Default: discard.
	Logger *slog.Logger
	// StateTTL bounds the time between Begin and Complete; default 10 minutes.
	StateTTL time.Duration
	// GrantTTL is how long a grant is kept (the consent period); default 30 days.
	GrantTTL time.Duration
	// RefreshBefore is how long before the access token's expiry Token refreshes it; default 60 s.
	RefreshBefore time.Duration
	// DiscoveryTTL is how long a source's smart-configuration is cached; default 1 hour.
	DiscoveryTTL time.Duration
	// TracerProvider, when set, makes every request to an authorization server a client span named by its
	// operation ("SMART token"), never its URL (see tracing.go).
	TracerProvider trace.TracerProvider
}

// StateStore keeps one-time authorization state. TakeState must return and delete in one atomic step, and return an
// error (store.ErrNotFound) for a missing, expired or already taken key.
type StateStore interface {
	PutState(ctx context.Context, key string, value []byte, ttl time.Duration) error
	TakeState(ctx context.Context, key string) ([]byte, error)
}

// GrantStore keeps sealed grants and provides a lock shared by every gateway replica. LoadGrant returns an error
// wrapping store.ErrNotFound for a missing grant.
type GrantStore interface {
	SaveGrant(ctx context.Context, key string, sealed []byte, ttl time.Duration) error
	LoadGrant(ctx context.Context, key string) ([]byte, error)
	DeleteGrant(ctx context.Context, key string) error
	Lock(ctx context.Context, key string, ttl time.Duration) (unlock func(context.Context) error, err error)
}

// Client is the SMART client for all configured sources. It is safe for concurrent use; it keeps no per-user state
// in memory (that lives in the stores), only the discovery cache.
type Client struct {
	cfg     Config
	sources map[string]*source
	states  StateStore
	grants  GrantStore
	http    *http.Client
	now     func() time.Time
	log     *slog.Logger

	discoverMu sync.Mutex
	discovered map[string]*discovered
	discoverSF singleflight.Group
	refreshSF  singleflight.Group
}

type source struct {
	Source
	redirectURI string
	types       []string
}

var sourceIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

var resourceTypePattern = regexp.MustCompile(`^[A-Z][A-Za-z]{0,63}$`)

// New validates cfg, reporting every problem at once, and returns a Client.
func New(cfg Config, states StateStore, grants GrantStore) (*Client, error) {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if states == nil || grants == nil {
		add("state and grant stores are required")
	}
	if cfg.Keys == nil {
		add("keys: a seal keyring is required to encrypt grants at rest")
	}
	public, err := checkURL(cfg.PublicURL)
	if err != nil {
		add("public URL: %v", err)
	}
	if len(cfg.Sources) == 0 {
		add("sources: none configured")
	}
	c := &Client{
		cfg:        cfg,
		sources:    make(map[string]*source, len(cfg.Sources)),
		states:     states,
		grants:     grants,
		http:       cfg.HTTPClient,
		now:        cfg.Now,
		log:        cfg.Logger,
		discovered: make(map[string]*discovered),
	}
	bases := map[string]string{}
	for i, s := range cfg.Sources {
		label := fmt.Sprintf("sources[%d]", i)
		if !sourceIDPattern.MatchString(s.ID) {
			add("%s: id must match [a-z0-9][a-z0-9-]{0,62}", label)
		} else {
			label = "source " + s.ID
			if _, dup := c.sources[s.ID]; dup {
				add("%s: duplicate id", label)
			}
		}
		s.FHIRBaseURL = strings.TrimRight(s.FHIRBaseURL, "/")
		if _, err := checkURL(s.FHIRBaseURL); err != nil {
			add("%s: FHIR base URL: %v", label, err)
		} else if other, dup := bases[s.FHIRBaseURL]; dup {
			add("%s: same FHIR base URL as source %s", label, other)
		}
		bases[s.FHIRBaseURL] = s.ID
		switch s.Method {
		case MethodClientSecretBasic:
			if len(s.Secret) == 0 {
				add("%s: client_secret_basic needs a secret", label)
			}
			if s.Key != nil {
				add("%s: client_secret_basic takes no private key", label)
			}
		case MethodPrivateKeyJWT:
			if len(s.Secret) != 0 {
				add("%s: private_key_jwt takes no secret", label)
			}
			if s.KeyID == "" {
				add("%s: private_key_jwt needs a key id", label)
			}
			if err := checkSigningKey(s.Key, s.Alg); err != nil {
				add("%s: %v", label, err)
			}
		case MethodNone:
			if len(s.Secret) != 0 || s.Key != nil {
				add("%s: method none takes no secret or key", label)
			}
		default:
			add("%s: method must be client_secret_basic, private_key_jwt or none", label)
		}
		if s.ClientID == "" {
			add("%s: client id is required", label)
		}
		switch s.ScopeDialect {
		case "":
			s.ScopeDialect = DialectAuto
		case DialectAuto, DialectV1, DialectV2:
		default:
			add("%s: scope dialect must be auto, v1 or v2", label)
		}
		types := s.ResourceTypes
		if len(types) == 0 {
			types = DefaultResourceTypes()
		}
		seen := map[string]bool{}
		for _, t := range types {
			if !resourceTypePattern.MatchString(t) || seen[t] {
				add("%s: resource type %q is invalid or repeated", label, t)
			}
			seen[t] = true
		}
		if public != nil {
			c.sources[s.ID] = &source{Source: s, redirectURI: strings.TrimRight(cfg.PublicURL, "/") + "/auth/callback/" + s.ID, types: types}
		} else {
			c.sources[s.ID] = &source{Source: s, types: types}
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("auth: invalid config: %s", strings.Join(problems, "; "))
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	if c.http != nil {
		copied := *c.http
		hc = &copied
	}
	// Requests to authorization servers follow no redirects: a token or revocation request carries credentials
	// and tokens in its body, which a 307 would replay to wherever the server points; metadata URLs are exact.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if cfg.TracerProvider != nil {
		hc.Transport = tracing.ClientTransport(hc.Transport, cfg.TracerProvider, "SMART")
	}
	c.http = hc
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.cfg.StateTTL <= 0 {
		c.cfg.StateTTL = 10 * time.Minute
	}
	if c.cfg.GrantTTL <= 0 {
		c.cfg.GrantTTL = 30 * 24 * time.Hour
	}
	if c.cfg.RefreshBefore <= 0 {
		c.cfg.RefreshBefore = 60 * time.Second
	}
	if c.cfg.DiscoveryTTL <= 0 {
		c.cfg.DiscoveryTTL = time.Hour
	}
	return c, nil
}

// RedirectURI returns the exact redirect URI registered for a source.
func (c *Client) RedirectURI(sourceID string) (string, error) {
	s, ok := c.sources[sourceID]
	if !ok {
		return "", ErrUnknownSource
	}
	return s.redirectURI, nil
}

// checkURL accepts an absolute https URL, or http on a loopback host, without query, fragment or user information.
func checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, errors.New("must be an absolute URL")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("must have no user information, query or fragment")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return nil, errors.New("plain http is allowed only on loopback hosts")
		}
	default:
		return nil, errors.New("scheme must be https")
	}
	return u, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkSigningKey(key crypto.Signer, alg string) error {
	switch alg {
	case AlgRS384:
		k, ok := key.(*rsa.PrivateKey)
		if !ok {
			return errors.New("RS384 needs an RSA private key")
		}
		if k.N.BitLen() < 2048 {
			return errors.New("RSA key must be at least 2048 bits")
		}
	case AlgES384:
		k, ok := key.(*ecdsa.PrivateKey)
		if !ok || k.Curve != elliptic.P384() {
			return errors.New("ES384 needs a P-384 ECDSA private key")
		}
	default:
		return errors.New("private_key_jwt alg must be RS384 or ES384")
	}
	return nil
}
