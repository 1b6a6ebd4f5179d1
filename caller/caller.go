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
	// MaxLifetime rejects tokens whose exp is further than this after their iat (default 1h): a long-lived bearer
	// token is a standing credential.
	MaxLifetime time.Duration
}

// New returns a Verifier for the issuers. Discovery happens on first use of each issuer, so an issuer that is down
// at start-up does not stop the gateway.
func New(issuers []Issuer, o Options) (*Verifier, error) {
	v := &Verifier{issuers: map[string]*issuer{}, http: o.HTTPClient, now: o.Now, maxAge: o.MaxLifetime, verified: map[[32]byte]cachedCaller{}}
	if v.http == nil {
		v.http = &http.Client{Timeout: 15 * time.Second}
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.maxAge <= 0 {
		v.maxAge = time.Hour
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
// (RS256, RS384, ES256, ES384 or PS256), unexpired, for the configured audience, and name a registered client in
// client_id (RFC 9068), azp, or sub.
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
		ClientID string `json:"client_id"`
		AZP      string `json:"azp"`
		IssuedAt int64  `json:"iat"`
	}
	if err := idt.Claims(&claims); err != nil {
		return nil, fmt.Errorf("%w: malformed claims", ErrUnauthenticated)
	}
	if claims.IssuedAt > 0 && idt.Expiry.Sub(time.Unix(claims.IssuedAt, 0)) > v.maxAge {
		return nil, fmt.Errorf("%w: token lifetime too long", ErrUnauthenticated)
	}
	if claims.IssuedAt > v.now().Add(time.Minute).Unix() {
		return nil, fmt.Errorf("%w: token issued in the future", ErrUnauthenticated)
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
	until := idt.Expiry
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
		&oidc.Config{ClientID: is.Audience, SupportedSigningAlgs: algorithms, Now: v.now})
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
