package fhir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"secondlook/tracing"
)

// TokenSource supplies the bearer token for requests to one source. Implementations refresh as they need to.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// Refresher is implemented by token sources that can replace a token the server rejected. The client calls it once
// when a request answers 401, then retries that request with the new token.
type Refresher interface {
	Refresh(ctx context.Context, rejected string) (string, error)
}

// Observer is told about every request the client sends (metrics). op names the operation ("search
// DiagnosticReport"); status is the HTTP status, or 0 when the request failed below HTTP.
type Observer interface {
	Request(op string, status int, retry bool, d time.Duration)
}

// Limits bound what one source may make the client read. Zero values take the defaults of DefaultLimits.
type Limits struct {
	MaxPages           int   // pages per search
	MaxResources       int   // resources per patient retrieval
	MaxBytes           int64 // bytes read per patient retrieval
	MaxBodyBytes       int64 // bytes of one response body
	MaxAttachmentBytes int64 // bytes of one Binary
	MaxJSONDepth       int   // nesting depth of any JSON value kept
}

// DefaultLimits returns the limits used where Options leaves one at zero.
func DefaultLimits() Limits {
	return Limits{
		MaxPages:           100,
		MaxResources:       20000,
		MaxBytes:           256 << 20,
		MaxBodyBytes:       32 << 20,
		MaxAttachmentBytes: 16 << 20,
		MaxJSONDepth:       64,
	}
}

// Retry is the retry policy for 429, 502, 503, 504 and network errors.
type Retry struct {
	MaxAttempts int           // attempts per request, including the first; default 4
	BaseDelay   time.Duration // first backoff; doubles each attempt, with full jitter; default 200ms
	MaxDelay    time.Duration // cap on one backoff, and on an honoured Retry-After; default 10s
}

// Options configures a Client for one source.
type Options struct {
	// BaseURL is the source's FHIR base, e.g. https://fhir.example.org/r4. Required.
	BaseURL string
	// HTTPClient is used for every request; its CheckRedirect is replaced so redirects never leave BaseURL.
	// Default: a client with sane transport timeouts.
	HTTPClient *http.Client
	// Tokens supplies bearer tokens; nil sends no Authorization header (open servers such as the sandbox).
	Tokens TokenSource
	// RequestTimeout bounds one attempt of one request, body included. Default 30s. The overall deadline comes from
	// the caller's context.
	RequestTimeout time.Duration
	// Concurrency bounds requests in flight to this source across all retrievals using this Client. Default 4.
	Concurrency int
	// RateLimit and RateBurst bound the request rate to this source. Zero RateLimit means unlimited.
	RateLimit rate.Limit
	RateBurst int
	// PageSize is the _count asked for on searches. Default 100.
	PageSize int
	Limits   Limits
	Retry    Retry
	// Logger receives one line per upstream request (operation, status, attempt, duration), never URLs or bodies.
	Logger *slog.Logger
	// UserAgent is sent on every request.
	UserAgent string
	// Observer, when set, is told about every request.
	Observer Observer
	// SharedLimit, when set, is waited on before every request instead of the local limiter that RateLimit and
	// RateBurst would build: the source's rate limit shared by every replica (store.Waiter), already at least as
	// strict as this replica's share of it.
	SharedLimit func(ctx context.Context) error
	// TracerProvider, when set, makes every HTTP request (each attempt) a client span named by the operation
	// ("FHIR search DiagnosticReport"), never the URL (see tracing.go).
	TracerProvider trace.TracerProvider
}

// Client talks to one FHIR source. It is safe for concurrent use; its CapabilityStatement is read once and cached.
type Client struct {
	base    *url.URL
	baseStr string
	http    *http.Client
	tokens  TokenSource
	opts    Options
	sem     chan struct{}
	limiter *rate.Limiter
	log     *slog.Logger

	capMu sync.Mutex
	caps  *Capabilities
}

// NewClient validates opts and returns a Client.
func NewClient(opts Options) (*Client, error) {
	base, err := parseBase(opts.BaseURL)
	if err != nil {
		return nil, err
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 30 * time.Second
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 100
	}
	opts.Limits = opts.Limits.withDefaults()
	if opts.Retry.MaxAttempts <= 0 {
		opts.Retry.MaxAttempts = 4
	}
	if opts.Retry.BaseDelay <= 0 {
		opts.Retry.BaseDelay = 200 * time.Millisecond
	}
	if opts.Retry.MaxDelay <= 0 {
		opts.Retry.MaxDelay = 10 * time.Second
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "secondlook"
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	hc := defaultHTTPClient()
	if opts.HTTPClient != nil {
		copied := *opts.HTTPClient
		hc = &copied
	}
	if opts.TracerProvider != nil {
		hc.Transport = tracing.ClientTransport(hc.Transport, opts.TracerProvider, "FHIR")
	}
	c := &Client{
		base:    base,
		baseStr: base.String(),
		http:    hc,
		tokens:  opts.Tokens,
		opts:    opts,
		sem:     make(chan struct{}, opts.Concurrency),
		log:     logger,
	}
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("too many redirects")
		}
		if !c.underBase(req.URL) {
			return ErrForeignURL
		}
		return nil
	}
	if opts.RateLimit > 0 && opts.SharedLimit == nil {
		burst := opts.RateBurst
		if burst <= 0 {
			burst = 1
		}
		c.limiter = rate.NewLimiter(opts.RateLimit, burst)
	}
	return c, nil
}

// BaseURL returns the source's FHIR base URL without a trailing slash.
func (c *Client) BaseURL() string { return c.baseStr }

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxPages > 0 {
		d.MaxPages = l.MaxPages
	}
	if l.MaxResources > 0 {
		d.MaxResources = l.MaxResources
	}
	if l.MaxBytes > 0 {
		d.MaxBytes = l.MaxBytes
	}
	if l.MaxBodyBytes > 0 {
		d.MaxBodyBytes = l.MaxBodyBytes
	}
	if l.MaxAttachmentBytes > 0 {
		d.MaxAttachmentBytes = l.MaxAttachmentBytes
	}
	if l.MaxJSONDepth > 0 {
		d.MaxJSONDepth = l.MaxJSONDepth
	}
	return d
}

func defaultHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 16
	t.ResponseHeaderTimeout = 60 * time.Second
	return &http.Client{Transport: t}
}

func parseBase(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil || raw == "" {
		return nil, errors.New("fhir: base URL is not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errors.New("fhir: base URL must be http or https")
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("fhir: base URL must have a host and no credentials, query or fragment")
	}
	return u, nil
}

// underBase reports whether u is the base URL itself or below it: same scheme and host, and a path that continues
// the base path at a segment boundary (so https://h/fhir does not admit https://h/fhir-evil) and has no dot segment
// or backslash, plain or percent-encoded, that the server would resolve to a path outside the base
// (https://h/fhir/x/../../admin).
func (c *Client) underBase(u *url.URL) bool {
	if u == nil || !strings.EqualFold(u.Scheme, c.base.Scheme) || !strings.EqualFold(u.Host, c.base.Host) || u.User != nil {
		return false
	}
	p := u.EscapedPath()
	decoded, err := url.PathUnescape(p)
	if err != nil || strings.Contains(decoded, `\`) {
		return false
	}
	for _, seg := range strings.Split(decoded, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	bp := c.base.EscapedPath()
	if p == bp {
		return true
	}
	return strings.HasPrefix(p, bp+"/")
}

// resolve turns a URL string from a server (next link, attachment URL) into an absolute URL under the base, or
// returns ErrForeignURL. Relative URLs are resolved against the base, as FHIR defines for relative references.
func (c *Client) resolve(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: unparsable url", ErrInvalidResponse)
	}
	if !u.IsAbs() {
		if strings.HasPrefix(raw, "/") || strings.HasPrefix(raw, "//") {
			return nil, ErrForeignURL
		}
		u = c.base.JoinPath()
		ref, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: unparsable url", ErrInvalidResponse)
		}
		u = u.JoinPath(ref.Path)
		u.RawQuery = ref.RawQuery
	}
	if !c.underBase(u) {
		return nil, ErrForeignURL
	}
	return u, nil
}

// request describes one logical request (retried as a whole).
type request struct {
	op      string // "search DiagnosticReport", "read Patient": safe to log
	url     *url.URL
	accept  string
	maxBody int64
}

// stats is shared by all requests of one retrieval, with the retrieval's token source when it has its own.
type stats struct {
	tokens   TokenSource
	mu       sync.Mutex
	requests int
	retries  int
	bytes    int64
	maxBytes int64
}

func (s *stats) addRequest(retry bool) {
	s.mu.Lock()
	s.requests++
	if retry {
		s.retries++
	}
	s.mu.Unlock()
}

// addBytes records n bytes read and reports whether the retrieval is still within its byte budget.
func (s *stats) addBytes(n int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bytes += n
	return s.maxBytes <= 0 || s.bytes <= s.maxBytes
}

// do performs req with retries. handle is called with the response of a 2xx attempt, inside that attempt's timeout;
// it must consume the body. An error from handle that is a network-level read error (connection reset, unexpected
// EOF) is retried like any network error; other handle errors are returned as they are.
func (c *Client) do(ctx context.Context, st *stats, req request, handle func(body io.Reader, resp *http.Response) error) error {
	var lastErr error
	refreshed := false
	for attempt := 1; ; attempt++ {
		err := c.attempt(ctx, st, req, attempt > 1, &refreshed, handle)
		if err == nil {
			return nil
		}
		lastErr = err
		var again *retryWith
		if errors.As(err, &again) {
			// A refreshed token: retry at once, not counted as a failed attempt.
			attempt--
			continue
		}
		if !retryable(err) || attempt >= c.opts.Retry.MaxAttempts || ctx.Err() != nil {
			return unwrapRetryable(lastErr)
		}
		wait, ok := c.backoff(attempt, err)
		if !ok {
			// The server asked for a longer pause than this client waits: retrying sooner would ignore it.
			return unwrapRetryable(lastErr)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			// Waiting would outlive the caller's deadline: give up now with the real reason.
			return unwrapRetryable(lastErr)
		}
		c.log.LogAttrs(ctx, slog.LevelDebug, "fhir retry", slog.String("op", req.op), slog.Int("attempt", attempt), slog.Duration("wait", wait))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return unwrapRetryable(lastErr)
		case <-t.C:
		}
	}
}

// retryWith signals that the attempt should be repeated immediately (after a token refresh).
type retryWith struct{}

func (*retryWith) Error() string { return "retry with refreshed token" }

// netError marks an error as a transient transport failure worth retrying.
type netError struct{ err error }

func (e *netError) Error() string { return e.err.Error() }
func (e *netError) Unwrap() error { return e.err }

func retryable(err error) bool {
	var ne *netError
	if errors.As(err, &ne) {
		return true
	}
	var oe *OutcomeError
	if errors.As(err, &oe) {
		return oe.Temporary()
	}
	return false
}

func unwrapRetryable(err error) error {
	var ne *netError
	if errors.As(err, &ne) {
		return ne.err
	}
	return err
}

// backoff returns the wait before the next attempt: exponential with full jitter, capped at MaxDelay, or the
// server's Retry-After when it asks for longer. It reports false when Retry-After exceeds MaxDelay: the request is
// then not retried, and the caller sees the OutcomeError with its RetryAfter to reschedule the work.
func (c *Client) backoff(attempt int, err error) (time.Duration, bool) {
	ceil := c.opts.Retry.BaseDelay << (attempt - 1)
	if ceil > c.opts.Retry.MaxDelay || ceil <= 0 {
		ceil = c.opts.Retry.MaxDelay
	}
	wait := time.Duration(rand.Int64N(int64(ceil)) + 1) //nolint:gosec // G404: retry jitter, not a secret: math/rand is right here
	var oe *OutcomeError
	if errors.As(err, &oe) && oe.RetryAfter != "" {
		if ra, ok := parseRetryAfter(oe.RetryAfter, time.Now()); ok && ra > wait {
			if ra > c.opts.Retry.MaxDelay {
				return 0, false
			}
			wait = ra
		}
	}
	return wait, true
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP-date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > 86400 {
			secs = 86400
		}
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d < 0 {
			d = 0
		}
		return d, true
	}
	return 0, false
}

func (c *Client) attempt(ctx context.Context, st *stats, req request, isRetry bool, refreshed *bool, handle func(io.Reader, *http.Response) error) error {
	if c.limiter != nil {
		if err := c.limiter.Wait(ctx); err != nil {
			return fmt.Errorf("%s: rate limit wait: %w", req.op, context.Cause(ctx))
		}
	}
	if c.opts.SharedLimit != nil {
		if err := c.opts.SharedLimit(ctx); err != nil {
			return fmt.Errorf("%s: shared rate limit: %w", req.op, err)
		}
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", req.op, ctx.Err())
	}
	defer func() { <-c.sem }()

	actx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(tracing.WithOperation(actx, req.op), http.MethodGet, req.url.String(), nil)
	if err != nil {
		return fmt.Errorf("%s: build request: %w", req.op, ErrInvalidResponse)
	}
	hreq.Header.Set("Accept", req.accept)
	hreq.Header.Set("User-Agent", c.opts.UserAgent)
	var token string
	tokens := c.tokens
	if st.tokens != nil {
		tokens = st.tokens
	}
	if tokens != nil {
		token, err = tokens.Token(ctx)
		if err != nil {
			return fmt.Errorf("%s: get token: %w", req.op, err)
		}
		hreq.Header.Set("Authorization", "Bearer "+token)
	}
	st.addRequest(isRetry)
	start := time.Now()
	resp, err := c.http.Do(hreq)
	if err != nil {
		if c.opts.Observer != nil {
			c.opts.Observer.Request(req.op, 0, isRetry, time.Since(start))
		}
		return c.transportError(ctx, actx, req.op, err)
	}
	if c.opts.Observer != nil {
		c.opts.Observer.Request(req.op, resp.StatusCode, isRetry, time.Since(start))
	}
	defer func() {
		// Drain a little so the connection can be reused, then close.
		_, _ = io.CopyN(io.Discard, resp.Body, 4096)
		_ = resp.Body.Close()
	}()
	c.log.LogAttrs(ctx, slog.LevelDebug, "fhir request", slog.String("op", req.op), slog.Int("status", resp.StatusCode),
		slog.Bool("retry", isRetry), slog.Duration("duration", time.Since(start)))

	body := &limitedBody{r: resp.Body, remaining: req.maxBody, op: req.op, limit: req.maxBody, st: st}
	if resp.StatusCode == http.StatusUnauthorized && !*refreshed {
		if r, ok := tokens.(Refresher); ok && token != "" {
			*refreshed = true
			if _, err := r.Refresh(ctx, token); err != nil {
				return fmt.Errorf("%s: refresh token after 401: %w", req.op, err)
			}
			return &retryWith{}
		}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		oe := &OutcomeError{Op: req.op, StatusCode: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After")}
		oe.Issues = readOutcome(body, c.opts.Limits.MaxJSONDepth)
		return oe
	}
	if err := handle(body, resp); err != nil {
		var le *LimitError
		if errors.As(err, &le) {
			return err
		}
		if actx.Err() != nil && ctx.Err() == nil {
			return &netError{fmt.Errorf("%s: read response: timed out after %s", req.op, c.opts.RequestTimeout)}
		}
		if body.readErr != nil {
			return &netError{fmt.Errorf("%s: read response: %w", req.op, errStripURL(body.readErr))}
		}
		return err
	}
	return nil
}

func (c *Client) transportError(ctx, actx context.Context, op string, err error) error {
	if errors.Is(err, ErrForeignURL) {
		return fmt.Errorf("%s: redirect refused: %w", op, ErrForeignURL)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
	if actx.Err() != nil {
		return &netError{fmt.Errorf("%s: timed out after %s", op, c.opts.RequestTimeout)}
	}
	return &netError{fmt.Errorf("%s: %w", op, errStripURL(err))}
}

// errStripURL removes the request URL that net/http puts in its errors: a FHIR URL carries patient ids.
func errStripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func isNetReadError(err error) bool {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe)
}

// limitedBody enforces a per-response byte limit and counts bytes against the retrieval's budget.
type limitedBody struct {
	r         io.Reader
	remaining int64
	limit     int64
	op        string
	st        *stats
	// readErr is the first transport error the body returned (not io.EOF): it tells a dropped connection, which is
	// retried, from a complete body that is not valid JSON, which is not.
	readErr error
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.remaining <= 0 {
		// Probe for one more byte: a body of exactly the limit is fine.
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			return 0, &LimitError{Op: l.op, Limit: "max_body_bytes", Value: l.limit}
		}
		return 0, err
	}
	if int64(len(p)) > l.remaining {
		p = p[:l.remaining]
	}
	n, err := l.r.Read(p)
	if err != nil && err != io.EOF && l.readErr == nil {
		l.readErr = err
	}
	l.remaining -= int64(n)
	if l.st != nil && !l.st.addBytes(int64(n)) {
		return n, &LimitError{Op: l.op, Limit: "max_bytes", Value: l.st.maxBytes}
	}
	return n, err
}
