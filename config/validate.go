package config

import (
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Path locates the setting: a key path such as "log.level", "sources[1].auth.client_id" or
	// "sources[st-mary].timeouts.request" (a source is named by id when its id is valid and unique, otherwise by
	// index), or, for an environment override, the variable's name.
	Path string
	// Message says what is wrong. It never contains a secret.
	Message string
}

// String formats p as "path: message".
func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// ValidationError lists every problem found in a configuration, so an operator can fix them all in one pass.
type ValidationError struct {
	Problems []Problem
}

// Error lists the problems, one per line after a summary line.
func (e *ValidationError) Error() string {
	var b strings.Builder
	if len(e.Problems) == 1 {
		b.WriteString("invalid config (1 problem):")
	} else {
		fmt.Fprintf(&b, "invalid config (%d problems):", len(e.Problems))
	}
	for _, p := range e.Problems {
		b.WriteString("\n\t")
		b.WriteString(p.String())
	}
	return b.String()
}

const (
	maxNameRunes      = 200
	minRequestTimeout = time.Second
	maxRequestTimeout = 5 * time.Minute
	maxOverallTimeout = time.Hour
	maxConcurrency    = 64
	maxRequestsPerSec = 1000
	maxBurst          = 1000
	minJSONDepth      = 8
	maxJSONDepth      = 512
	maxAttempts       = 10
	minBaseDelay      = time.Millisecond
	maxBaseDelay      = time.Minute
	maxMaxDelay       = 5 * time.Minute

	minBodyLimit          = 1000             // "1K"
	maxBodyLimit          = 64 * 1000 * 1000 // "64M"
	minServerTimeout      = time.Second
	maxServerTimeout      = 5 * time.Minute
	maxReadHeaderTimeout  = time.Minute
	minConsentValidity    = time.Hour
	maxConsentValidity    = 8760 * time.Hour
	maxAssemblyWorkers    = 64
	maxAssemblyAttempts   = 20
	minAssemblyBaseDelay  = 100 * time.Millisecond
	maxAssemblyBaseDelay  = 10 * time.Minute
	minAssemblyVisibility = 10 * time.Second
	maxAssemblyVisibility = time.Hour
	maxRedisPrefixLen     = 64
	maxAudienceLen        = 1024
	loopbackHint          = "loopback (127.0.0.0/8, ::1, localhost)"
	httpsUnlessLoopback   = "must use https unless the host is " + loopbackHint
	userInfoForbidden     = "must not contain user information"
	originSyntax          = "must be an origin, scheme://host[:port], without path, query or fragment"
)

var (
	// sourceIDRE is the syntax of the ids of sources, issuers and keys.
	sourceIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	// clientIDRE is the syntax of caller client ids, which issuers choose: mixed case and underscores are common.
	clientIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)
)

// Validate reports every problem in c at once as a *ValidationError, or returns nil. It expects ApplyDefaults to
// have run (Load does both): a setting left empty is reported, not defaulted. It checks the syntax of secret
// references but reads no secret, and it does not require what only serving needs; see [Config.ValidateForServe].
// It does not modify c.
func (c *Config) Validate() error {
	return c.validate().err()
}

// ValidateForServe reports, as one *ValidationError, every problem Validate finds and everything `secondlook serve`
// additionally needs: server.public_url; at least one keys.token_encryption key and one keys.signing key (each with
// a current key); keys.deid and keys.csrf; at least one source; and at least one caller issuer, with at least one
// client of kind ehr and one of kind provider among all issuers. It also reads every well-formed secret reference
// the gateway will use (keys, redis.password, and the sources' client secrets and private keys) and checks what it
// finds: token encryption keys decode from base64 to exactly 32 bytes (AES-256) and the de-identification key to at
// least 32, the CSRF secret is at least 32 bytes, and private keys parse and suit their use. Problems name the reference, never the secret. It does not modify c.
func (c *Config) ValidateForServe() error {
	v := c.validate()
	v.serve(c)
	return v.err()
}

func (c *Config) validate() *validator {
	v := &validator{}
	v.oneOf("log.level", c.Log.Level, LogLevelDebug, LogLevelInfo, LogLevelWarn, LogLevelError)
	v.oneOf("log.format", c.Log.Format, LogFormatJSON, LogFormatText)
	v.server(&c.Server)
	v.redis(&c.Redis)
	v.keys(&c.Keys)
	v.durationRange("consent.validity", c.Consent.Validity, minConsentValidity, maxConsentValidity)
	v.callers(&c.Callers)
	v.assembly(&c.Assembly)
	v.tracing(&c.Tracing)

	labels := sourceLabels(c.Sources)
	firstByID := make(map[string]int, len(c.Sources))
	for i := range c.Sources {
		s := &c.Sources[i]
		if first, dup := firstByID[s.ID]; dup && s.ID != "" {
			v.add(labels[i]+".id", "duplicates the id of %s", labels[first])
		} else {
			firstByID[s.ID] = i
		}
		v.source(labels[i], s)
	}
	return v
}

// sourceLabels names each source in problem paths by its id when that id is valid and unique, else by its index.
func sourceLabels(sources []Source) []string {
	ids := make([]string, len(sources))
	for i, s := range sources {
		ids[i] = s.ID
	}
	return entryLabels("sources", ids, sourceIDRE)
}

// entryLabels names each entry of the keyed list at path by its id when that id matches re and is unique in ids,
// else by its index.
func entryLabels(path string, ids []string, re *regexp.Regexp) []string {
	count := make(map[string]int, len(ids))
	for _, id := range ids {
		count[id]++
	}
	labels := make([]string, len(ids))
	for i, id := range ids {
		if re.MatchString(id) && count[id] == 1 {
			labels[i] = path + "[" + id + "]"
		} else {
			labels[i] = path + "[" + strconv.Itoa(i) + "]"
		}
	}
	return labels
}

type validator struct {
	problems []Problem
}

func (v *validator) err() error {
	if len(v.problems) == 0 {
		return nil
	}
	return &ValidationError{Problems: v.problems}
}

func (v *validator) add(path, format string, args ...any) {
	v.problems = append(v.problems, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) oneOf(path, got string, allowed ...string) {
	if slices.Contains(allowed, got) {
		return
	}
	if got == "" {
		v.add(path, "is required; want one of %s", strings.Join(allowed, ", "))
		return
	}
	v.add(path, "must be one of %s; got %q", strings.Join(allowed, ", "), got)
}

// rateLimit checks a rate limit (a source's, or the callers'): a rate above 0 and at most maxRPS, a burst 1..maxBurst.
func (v *validator) rateLimit(path string, rl RateLimit, maxRPS, maxBurst int) {
	if rps := rl.RequestsPerSecond; rps <= 0 || rps > float64(maxRPS) || math.IsNaN(rps) {
		v.add(path+".requests_per_second", "must be greater than 0 and at most %d; got %v", maxRPS, rps)
	}
	v.intRange(path+".burst", rl.Burst, 1, maxBurst)
}

func (v *validator) intRange(path string, got, lo, hi int) {
	if got < lo || got > hi {
		v.add(path, "must be between %d and %d; got %d", lo, hi, got)
	}
}

func (v *validator) positive(path string, got int64) {
	if got < 1 {
		v.add(path, "must be at least 1; got %d", got)
	}
}

func (v *validator) durationRange(path string, got Duration, lo, hi time.Duration) {
	if d := time.Duration(got); d < lo || d > hi {
		v.add(path, "must be between %s and %s; got %s", lo, hi, d)
	}
}

func (v *validator) source(label string, s *Source) {
	p := func(key string) string { return label + "." + key }

	v.id(p("id"), s.ID, sourceIDRE)
	v.displayName(p("name"), s.Name)

	v.oneOf(p("kind"), s.Kind, KindHospital, KindProvincial)
	v.baseURL(p("fhir_base_url"), s.FHIRBaseURL, s.AllowInsecureHTTP)
	v.auth(p("auth"), &s.Auth)
	v.oneOf(p("scope_dialect"), s.ScopeDialect, ScopeDialectAuto, ScopeDialectV1, ScopeDialectV2)

	if len(s.ResourceTypes) == 0 {
		v.add(p("resource_types"), "must list at least one resource type")
	}
	supported := supportedResourceTypes()
	for i, rt := range s.ResourceTypes {
		rp := fmt.Sprintf("%s[%d]", p("resource_types"), i)
		if !slices.Contains(supported, rt) {
			v.add(rp, "must be one of %s; got %q", strings.Join(supported, ", "), rt)
		} else if slices.Contains(s.ResourceTypes[:i], rt) {
			v.add(rp, "duplicates %q", rt)
		}
	}

	v.durationRange(p("timeouts.request"), s.Timeouts.Request, minRequestTimeout, maxRequestTimeout)
	switch overall := time.Duration(s.Timeouts.Overall); {
	case overall > maxOverallTimeout:
		v.add(p("timeouts.overall"), "must be at most %s; got %s", maxOverallTimeout, overall)
	case overall < time.Duration(s.Timeouts.Request):
		v.add(p("timeouts.overall"), "must be at least timeouts.request (%s); got %s", s.Timeouts.Request, overall)
	}

	v.intRange(p("concurrency"), s.Concurrency, 1, maxConcurrency)

	v.rateLimit(p("rate_limit"), s.RateLimit, maxRequestsPerSec, maxBurst)

	l := &s.Limits
	v.positive(p("limits.max_pages"), int64(l.MaxPages))
	v.positive(p("limits.max_resources"), int64(l.MaxResources))
	v.positive(p("limits.max_bytes"), l.MaxBytes)
	v.positive(p("limits.max_body_bytes"), l.MaxBodyBytes)
	if l.MaxBodyBytes > l.MaxBytes && l.MaxBytes >= 1 {
		v.add(p("limits.max_body_bytes"), "must be at most limits.max_bytes (%d); got %d", l.MaxBytes, l.MaxBodyBytes)
	}
	v.positive(p("limits.max_attachment_bytes"), l.MaxAttachmentBytes)
	if l.MaxAttachmentBytes > l.MaxBytes && l.MaxBytes >= 1 {
		v.add(p("limits.max_attachment_bytes"), "must be at most limits.max_bytes (%d); got %d", l.MaxBytes, l.MaxAttachmentBytes)
	}
	v.intRange(p("limits.max_json_depth"), l.MaxJSONDepth, minJSONDepth, maxJSONDepth)

	v.intRange(p("retry.max_attempts"), s.Retry.MaxAttempts, 1, maxAttempts)
	v.durationRange(p("retry.base_delay"), s.Retry.BaseDelay, minBaseDelay, maxBaseDelay)
	switch maxDelay := time.Duration(s.Retry.MaxDelay); {
	case maxDelay > maxMaxDelay:
		v.add(p("retry.max_delay"), "must be at most %s; got %s", maxMaxDelay, maxDelay)
	case maxDelay < time.Duration(s.Retry.BaseDelay):
		v.add(p("retry.max_delay"), "must be at least retry.base_delay (%s); got %s", s.Retry.BaseDelay, maxDelay)
	}
}

// id checks a required id against re.
func (v *validator) id(path, id string, re *regexp.Regexp) {
	switch {
	case id == "":
		v.add(path, "is required")
	case !re.MatchString(id):
		v.add(path, "must match %s; got %q", re.String(), id)
	}
}

// displayName checks a required name shown to people.
func (v *validator) displayName(path, name string) {
	switch {
	case strings.TrimSpace(name) == "":
		v.add(path, "is required")
	case utf8.RuneCountInString(name) > maxNameRunes:
		v.add(path, "must be at most %d characters; got %d", maxNameRunes, utf8.RuneCountInString(name))
	case !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl):
		v.add(path, "must be valid UTF-8 without control characters")
	}
}

// baseURL checks a FHIR base URL. Messages never quote the URL, which may carry credentials in its user information.
func (v *validator) baseURL(path, raw string, allowInsecure bool) {
	v.httpURL(path, raw, urlRules{
		userInfo:      userInfoForbidden + "; credentials belong in auth",
		https:         httpsUnlessLoopback + " or allow_insecure_http is set",
		allowInsecure: allowInsecure,
	})
}

// urlRules are the messages and options of httpURL.
type urlRules struct {
	userInfo      string // reported when the URL has user information
	https         string // reported when the URL uses http on a host that is not loopback
	allowInsecure bool   // accept http on any host
}

// httpURL checks a required absolute http(s) URL without user information, query or fragment, reporting every
// problem found. It returns the parsed URL, or nil if it is too broken to check further. Messages never quote the
// URL, which may carry credentials in its user information.
func (v *validator) httpURL(path, raw string, rules urlRules) *url.URL {
	if raw == "" {
		v.add(path, "is required")
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		v.add(path, "is not a valid URL")
		return nil
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Opaque != "" || u.Host == "" {
		v.add(path, "must be an absolute http or https URL with a host")
		return nil
	}
	if u.User != nil {
		v.add(path, "%s", rules.userInfo)
	}
	if u.RawQuery != "" || u.ForceQuery {
		v.add(path, "must not have a query")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		v.add(path, "must not have a fragment")
	}
	if u.Scheme == "http" && !rules.allowInsecure && !isLoopback(u.Hostname()) {
		v.add(path, "%s", rules.https)
	}
	return u
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.IsLoopback()
}

func (v *validator) auth(prefix string, a *Auth) {
	p := func(key string) string { return prefix + "." + key }

	known := a.Method == AuthClientSecretBasic || a.Method == AuthPrivateKeyJWT || a.Method == AuthNone
	v.oneOf(p("method"), a.Method, AuthClientSecretBasic, AuthPrivateKeyJWT, AuthNone)
	if !known {
		// Which fields are required depends on the method; only check what is independent of it.
		v.secretRef(p("client_secret"), a.ClientSecret)
		v.secretRef(p("private_key"), a.PrivateKey)
		return
	}

	if a.Method != AuthNone && a.ClientID == "" {
		v.add(p("client_id"), "is required when method is %q", a.Method)
	}

	if a.Method == AuthClientSecretBasic {
		if a.ClientSecret == "" {
			v.add(p("client_secret"), "is required when method is %q", a.Method)
		} else {
			v.secretRef(p("client_secret"), a.ClientSecret)
		}
	} else if a.ClientSecret != "" {
		v.add(p("client_secret"), "must not be set when method is %q", a.Method)
	}

	if a.Method == AuthPrivateKeyJWT {
		if a.PrivateKey == "" {
			v.add(p("private_key"), "is required when method is %q", a.Method)
		} else {
			v.secretRef(p("private_key"), a.PrivateKey)
		}
		if a.KeyID == "" {
			v.add(p("key_id"), "is required when method is %q", a.Method)
		}
		v.oneOf(p("signing_alg"), a.SigningAlg, AlgRS384, AlgES384)
		return
	}
	if a.PrivateKey != "" {
		v.add(p("private_key"), "must not be set when method is %q", a.Method)
	}
	if a.KeyID != "" {
		v.add(p("key_id"), "must not be set when method is %q", a.Method)
	}
	if a.SigningAlg != "" {
		v.add(p("signing_alg"), "must not be set when method is %q", a.Method)
	}
}

// secretRef checks the syntax of a set reference without quoting it: a malformed one may be a literal secret.
func (v *validator) secretRef(path string, r SecretRef) {
	if r == "" {
		return
	}
	if _, _, err := r.check(); err != nil {
		v.add(path, "%s", err.Error())
	}
}
