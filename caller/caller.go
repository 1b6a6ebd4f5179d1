package caller

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Kind is what a caller may do.
type Kind string

// Caller kinds.
const (
	EHR      Kind = "ehr"      // creates and follows reviews
	Provider Kind = "provider" // reads the packets shared with it
)

// Client is a registered caller.
type Client struct {
	ID   string
	Name string
	Kind Kind
}

// Issuer is a trusted token issuer and the clients it vouches for.
type Issuer struct {
	// URL is the issuer identifier (the iss claim); its OpenID configuration is discovered from it.
	URL string
	// Audience is the aud the gateway requires in tokens from this issuer.
	Audience string
	Clients  []Client
}

// Errors. ErrUnauthenticated maps to 401, ErrForbidden to 403.
var (
	ErrUnauthenticated = errors.New("caller: not authenticated")
	ErrForbidden       = errors.New("caller: not a registered client")
)

// algorithms are the signature algorithms accepted; "none" and HMAC never are.
var algorithms = []string{oidc.RS256, oidc.RS384, oidc.ES256, oidc.ES384, oidc.PS256}

// Verifier verifies callers' bearer tokens. It is safe for concurrent use.
type Verifier struct {
	issuers map[string]*issuer
	http    *http.Client
	now     func() time.Time
	maxAge  time.Duration
	leeway  time.Duration

	// verified remembers tokens already verified, by their SHA-256, until they expire or a minute has passed,
	// whichever is first: a provider downloading a packet presents the same token many times, and a signature
	// check per request would dominate the cost of serving it.
	mu       sync.Mutex
	verified map[[32]byte]cachedCaller
}

type cachedCaller struct {
	client Client
	until  time.Time
}

// maxCachedTokens bounds the cache of verified tokens; when full it is emptied.
const maxCachedTokens = 10000

type issuer struct {
	Issuer
	clients map[string]Client

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
}

// Options tune a Verifier.
type Options struct {
	HTTPClient *http.Client
	Now        func() time.Time
	// MaxLifetime rejects tokens whose exp is further than this after their iat, or after now (default 1h): a
	// long-lived bearer token is a standing credential.
	MaxLifetime time.Duration
	// Leeway is the clock skew allowed between the issuer and the gateway, in both directions (default 1m): a token
	// is accepted until Leeway after its exp, and from Leeway before its nbf and iat.
	Leeway time.Duration
}

// DefaultLeeway is the clock skew allowed when Options.Leeway is not set.
const DefaultLeeway = time.Minute

// New returns a Verifier for the issuers. Discovery happens on first use of each issuer, so an issuer that is down
// at start-up does not stop the gateway.
func New(issuers []Issuer, o Options) (*Verifier, error) {
	v := &Verifier{issuers: map[string]*issuer{}, http: o.HTTPClient, now: o.Now, maxAge: o.MaxLifetime, leeway: o.Leeway,
		verified: map[[32]byte]cachedCaller{}}
	if v.http == nil {
		v.http = &http.Client{Timeout: 15 * time.Second}
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.maxAge <= 0 {
		v.maxAge = time.Hour
	}
	if v.leeway <= 0 {
		v.leeway = DefaultLeeway
	}
	var problems []error
	for i, is := range issuers {
		if is.URL == "" || is.Audience == "" {
			problems = append(problems, fmt.Errorf("issuer %d: url and audience are required", i))
			continue
		}
		st := &issuer{Issuer: is, clients: map[string]Client{}}
		for _, c := range is.Clients {
			if c.ID == "" || (c.Kind != EHR && c.Kind != Provider) {
				problems = append(problems, fmt.Errorf("issuer %d: client %q needs an id and a kind (ehr or provider)", i, c.ID))
			}
			st.clients[c.ID] = c
		}
		v.issuers[strings.TrimRight(is.URL, "/")] = st
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	return v, nil
}

// Verify checks a bearer token and returns its caller. The token must be signed by its issuer's current keys
// (RS256, RS384, ES256, ES384 or PS256), for the configured audience, carry an exp, be within its validity (nbf,
// iat, exp, each with the leeway) and live no longer than the maximum lifetime, and name a registered client in
// client_id (RFC 9068), azp, or sub.
//
// A token's jti is not checked against earlier uses: an access token is a bearer credential meant to be presented
// on every request for its (short, bounded) lifetime (RFC 6750), and a provider downloading a packet presents the
// same one many times. Replay of a stolen token is bounded by the maximum lifetime instead.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Client, error) {
	if raw == "" || len(raw) > 8192 {
		return nil, ErrUnauthenticated
	}
	sum := sha256.Sum256([]byte(raw))
	now := v.now()
	v.mu.Lock()
	if c, ok := v.verified[sum]; ok && now.Before(c.until) {
		v.mu.Unlock()
		cl := c.client
		return &cl, nil
	}
	v.mu.Unlock()
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.ES256, jose.ES384, jose.PS256})
	if err != nil {
		return nil, fmt.Errorf("%w: malformed token", ErrUnauthenticated)
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return nil, fmt.Errorf("%w: malformed token", ErrUnauthenticated)
	}
	is, ok := v.issuers[strings.TrimRight(unverified.Issuer, "/")]
	if !ok {
		return nil, fmt.Errorf("%w: untrusted issuer", ErrUnauthenticated)
	}
	ver, err := is.verifierFor(ctx, v)
	if err != nil {
		return nil, err
	}
	idt, err := ver.Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrUnauthenticated, problem(err))
	}
	var claims struct {
		ClientID  string           `json:"client_id"`
		AZP       string           `json:"azp"`
		Expiry    *jwt.NumericDate `json:"exp"`
		NotBefore *jwt.NumericDate `json:"nbf"`
		IssuedAt  *jwt.NumericDate `json:"iat"`
	}
	if err := idt.Claims(&claims); err != nil {
		return nil, fmt.Errorf("%w: malformed claims", ErrUnauthenticated)
	}
	if err := v.checkTimes(now, claims.Expiry, claims.NotBefore, claims.IssuedAt); err != nil {
		return nil, err
	}
	id := claims.ClientID
	if id == "" {
		id = claims.AZP
	}
	if id == "" {
		id = idt.Subject
	}
	c, ok := is.clients[id]
	if !ok {
		return nil, ErrForbidden
	}
	until := claims.Expiry.Time()
	if limit := now.Add(time.Minute); until.After(limit) {
		until = limit
	}
	v.mu.Lock()
	if len(v.verified) >= maxCachedTokens {
		clear(v.verified)
	}
	v.verified[sum] = cachedCaller{client: c, until: until}
	v.mu.Unlock()
	return &c, nil
}

// checkTimes applies the token's validity window at now, with the leeway for clock skew in both directions, and
// the maximum lifetime: a token must carry an exp, not be past it, not be used before its nbf or iat, and not be
// valid for longer than the maximum lifetime, counted from its iat and from now (so a token without iat cannot
// escape the bound).
func (v *Verifier) checkTimes(now time.Time, exp, nbf, iat *jwt.NumericDate) error {
	switch {
	case exp == nil:
		return fmt.Errorf("%w: token without exp", ErrUnauthenticated)
	case now.After(exp.Time().Add(v.leeway)):
		return fmt.Errorf("%w: expired", ErrUnauthenticated)
	case nbf != nil && nbf.Time().After(now.Add(v.leeway)):
		return fmt.Errorf("%w: token not valid yet", ErrUnauthenticated)
	case iat != nil && iat.Time().After(now.Add(v.leeway)):
		return fmt.Errorf("%w: token issued in the future", ErrUnauthenticated)
	case exp.Time().Sub(now) > v.maxAge+v.leeway, iat != nil && exp.Time().Sub(iat.Time()) > v.maxAge:
		return fmt.Errorf("%w: token lifetime too long", ErrUnauthenticated)
	}
	return nil
}

func (is *issuer) verifierFor(ctx context.Context, v *Verifier) (*oidc.IDTokenVerifier, error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.verifier != nil {
		return is.verifier, nil
	}
	dctx, cancel := context.WithTimeout(oidc.ClientContext(context.WithoutCancel(ctx), v.http), 15*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(dctx, is.URL)
	if err != nil {
		return nil, fmt.Errorf("caller: discover issuer: %w", err)
	}
	// The key set must outlive this request: go-oidc fetches and rotates keys with the context given here.
	is.verifier = p.VerifierContext(oidc.ClientContext(context.Background(), v.http),
		&oidc.Config{ClientID: is.Audience, SupportedSigningAlgs: algorithms, Now: v.now,
			// Verify applies exp, nbf and iat itself, with one leeway for clock skew in both directions (go-oidc
			// allows none on exp and a fixed five minutes on nbf).
			SkipExpiryCheck: true})
	return is.verifier, nil
}

// problem names what was wrong with a token without echoing it.
func problem(err error) string {
	var exp *oidc.TokenExpiredError
	switch {
	case errors.As(err, &exp):
		return "expired"
	case strings.Contains(err.Error(), "audience"):
		return "wrong audience"
	case strings.Contains(err.Error(), "issuer"):
		return "wrong issuer"
	case strings.Contains(err.Error(), "signature"):
		return "bad signature"
	}
	return "invalid"
}
