package config

import (
	"strings"
	"time"
)

// Config is the whole gateway configuration. Build it with [Load]; a Config assembled in code must go through
// [Config.ApplyDefaults] and [Config.Validate] before use.
type Config struct {
	Log     Log      `yaml:"log"`
	Sources []Source `yaml:"sources"`
}

// Log configures the process logger.
type Log struct {
	// Level is one of debug, info, warn, error; default info.
	Level string `yaml:"level"`
	// Format is json or text; default json.
	Format string `yaml:"format"`
}

// Source is one FHIR R4 server the gateway retrieves records from, with the SMART client registration it uses there
// and the limits that keep one misbehaving server from exhausting the gateway.
type Source struct {
	// ID names the source in requests, logs and environment overrides: [a-z0-9][a-z0-9-]{0,62}, unique.
	ID string `yaml:"id"`
	// Name is the display name shown to reviewers; required, at most 200 characters.
	Name string `yaml:"name"`
	// Kind is KindHospital or KindProvincial.
	Kind string `yaml:"kind"`
	// FHIRBaseURL is the server's FHIR base, an absolute http(s) URL without query, fragment or user information;
	// ApplyDefaults trims trailing slashes. Plain http is accepted only for loopback hosts unless AllowInsecureHTTP.
	FHIRBaseURL string `yaml:"fhir_base_url"`
	// AllowInsecureHTTP permits an http FHIRBaseURL on a non-loopback host, for test networks only.
	AllowInsecureHTTP bool `yaml:"allow_insecure_http"`
	// Auth is the SMART client registration at this source.
	Auth Auth `yaml:"auth"`
	// ScopeDialect selects SMART scope syntax: ScopeDialectAuto (default), ScopeDialectV1 or ScopeDialectV2.
	ScopeDialect string `yaml:"scope_dialect"`
	// ResourceTypes lists the FHIR resource types retrieved from this source, a duplicate-free subset of
	// DiagnosticReport, ImagingStudy, Condition and DocumentReference; default DiagnosticReport, ImagingStudy,
	// Condition. An empty list means the default.
	ResourceTypes []string `yaml:"resource_types"`
	// Timeouts bounds how long requests to this source may take.
	Timeouts Timeouts `yaml:"timeouts"`
	// Concurrency is the maximum number of in-flight requests to this source; default 4, 1..64.
	Concurrency int `yaml:"concurrency"`
	// RateLimit bounds the request rate to this source.
	RateLimit RateLimit `yaml:"rate_limit"`
	// Limits bounds how much one retrieval may read from this source.
	Limits Limits `yaml:"limits"`
	// Retry controls retries of failed idempotent requests.
	Retry Retry `yaml:"retry"`
}

// Auth is a SMART App Launch client registration.
type Auth struct {
	// ClientID is the registered client id; required unless Method is AuthNone.
	ClientID string `yaml:"client_id"`
	// Method is the token endpoint authentication: AuthClientSecretBasic (default), AuthPrivateKeyJWT, or AuthNone
	// for a public client or an open sandbox.
	Method string `yaml:"method"`
	// ClientSecret refers to the client secret; required for AuthClientSecretBasic and forbidden otherwise.
	ClientSecret SecretRef `yaml:"client_secret"`
	// PrivateKey refers to the PEM private key that signs client assertions; required for AuthPrivateKeyJWT and
	// forbidden otherwise.
	PrivateKey SecretRef `yaml:"private_key"`
	// KeyID is the "kid" of the signing key as published in the client's JWKS; required for AuthPrivateKeyJWT and
	// forbidden otherwise.
	KeyID string `yaml:"key_id"`
	// SigningAlg is AlgRS384 or AlgES384; default AlgRS384 for AuthPrivateKeyJWT and forbidden otherwise.
	SigningAlg string `yaml:"signing_alg"`
}

// Timeouts bounds the time spent on one source.
type Timeouts struct {
	// Request bounds one HTTP exchange; default 30s, 1s..5m.
	Request Duration `yaml:"request"`
	// Overall bounds one patient retrieval from this source; default 5m, at least Request, at most 1h.
	Overall Duration `yaml:"overall"`
}

// RateLimit is a token bucket applied to requests to one source.
type RateLimit struct {
	// RequestsPerSecond is the sustained rate; default 10, greater than 0 and at most 1000.
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	// Burst is the bucket size; default 10, 1..1000.
	Burst int `yaml:"burst"`
}

// Limits caps what one patient retrieval may read from a source, so a hostile or broken server cannot exhaust the
// gateway.
type Limits struct {
	// MaxPages caps the pages followed in one search; default 100, at least 1.
	MaxPages int `yaml:"max_pages"`
	// MaxResources caps the resources kept for one patient retrieval; default 20000, at least 1.
	MaxResources int `yaml:"max_resources"`
	// MaxBytes caps the total bytes read for one patient retrieval; default 256 MiB, at least 1.
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxBodyBytes caps one response body; default 32 MiB, 1..MaxBytes.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxAttachmentBytes caps one Binary; default 16 MiB, 1..MaxBytes.
	MaxAttachmentBytes int64 `yaml:"max_attachment_bytes"`
	// MaxJSONDepth caps JSON nesting in a response; default 64, 8..512.
	MaxJSONDepth int `yaml:"max_json_depth"`
}

// Retry is capped exponential backoff for failed idempotent requests.
type Retry struct {
	// MaxAttempts counts the first try; default 4, 1..10.
	MaxAttempts int `yaml:"max_attempts"`
	// BaseDelay is the delay before the first retry; default 200ms, 1ms..1m.
	BaseDelay Duration `yaml:"base_delay"`
	// MaxDelay caps the delay between attempts; default 10s, BaseDelay..5m.
	MaxDelay Duration `yaml:"max_delay"`
}

// Accepted values of the enumerated settings.
const (
	LogLevelDebug = "debug"
	LogLevelInfo  = "info"
	LogLevelWarn  = "warn"
	LogLevelError = "error"

	LogFormatJSON = "json"
	LogFormatText = "text"

	KindHospital   = "hospital"
	KindProvincial = "provincial"

	AuthClientSecretBasic = "client_secret_basic"
	AuthPrivateKeyJWT     = "private_key_jwt"
	AuthNone              = "none"

	AlgRS384 = "RS384"
	AlgES384 = "ES384"

	ScopeDialectAuto = "auto"
	ScopeDialectV1   = "v1"
	ScopeDialectV2   = "v2"
)

// Defaults applied by ApplyDefaults to settings left at their zero value.
const (
	defaultLogLevel           = LogLevelInfo
	defaultLogFormat          = LogFormatJSON
	defaultAuthMethod         = AuthClientSecretBasic
	defaultSigningAlg         = AlgRS384
	defaultScopeDialect       = ScopeDialectAuto
	defaultRequestTimeout     = 30 * time.Second
	defaultOverallTimeout     = 5 * time.Minute
	defaultConcurrency        = 4
	defaultRequestsPerSecond  = 10
	defaultBurst              = 10
	defaultMaxPages           = 100
	defaultMaxResources       = 20000
	defaultMaxBytes           = 256 << 20
	defaultMaxBodyBytes       = 32 << 20
	defaultMaxAttachmentBytes = 16 << 20
	defaultMaxJSONDepth       = 64
	defaultMaxAttempts        = 4
	defaultBaseDelay          = 200 * time.Millisecond
	defaultMaxDelay           = 10 * time.Second
)

// defaultResourceTypes returns a fresh copy so that sources never share a backing array.
func defaultResourceTypes() []string {
	return []string{"DiagnosticReport", "ImagingStudy", "Condition"}
}

// supportedResourceTypes lists the resource types the gateway knows how to retrieve and de-identify.
func supportedResourceTypes() []string {
	return []string{"DiagnosticReport", "ImagingStudy", "Condition", "DocumentReference"}
}

// Source returns the source with the given id. The pointer aliases c.Sources, so changes through it are visible in c.
func (c *Config) Source(id string) (*Source, bool) {
	for i := range c.Sources {
		if c.Sources[i].ID == id {
			return &c.Sources[i], true
		}
	}
	return nil, false
}

// ApplyDefaults fills every setting left at its zero value with its default and trims trailing slashes from
// FHIR base URLs, so that Validate and the rest of the gateway see one canonical form. It is idempotent.
func (c *Config) ApplyDefaults() {
	setDefault(&c.Log.Level, defaultLogLevel)
	setDefault(&c.Log.Format, defaultLogFormat)
	for i := range c.Sources {
		c.Sources[i].applyDefaults()
	}
}

func (s *Source) applyDefaults() {
	s.FHIRBaseURL = strings.TrimRight(s.FHIRBaseURL, "/")
	setDefault(&s.Auth.Method, defaultAuthMethod)
	if s.Auth.Method == AuthPrivateKeyJWT {
		setDefault(&s.Auth.SigningAlg, defaultSigningAlg)
	}
	setDefault(&s.ScopeDialect, defaultScopeDialect)
	if len(s.ResourceTypes) == 0 {
		s.ResourceTypes = defaultResourceTypes()
	}
	setDefault(&s.Timeouts.Request, Duration(defaultRequestTimeout))
	setDefault(&s.Timeouts.Overall, Duration(defaultOverallTimeout))
	setDefault(&s.Concurrency, defaultConcurrency)
	setDefault(&s.RateLimit.RequestsPerSecond, defaultRequestsPerSecond)
	setDefault(&s.RateLimit.Burst, defaultBurst)
	setDefault(&s.Limits.MaxPages, defaultMaxPages)
	setDefault(&s.Limits.MaxResources, defaultMaxResources)
	setDefault(&s.Limits.MaxBytes, defaultMaxBytes)
	setDefault(&s.Limits.MaxBodyBytes, defaultMaxBodyBytes)
	setDefault(&s.Limits.MaxAttachmentBytes, defaultMaxAttachmentBytes)
	setDefault(&s.Limits.MaxJSONDepth, defaultMaxJSONDepth)
	setDefault(&s.Retry.MaxAttempts, defaultMaxAttempts)
	setDefault(&s.Retry.BaseDelay, Duration(defaultBaseDelay))
	setDefault(&s.Retry.MaxDelay, Duration(defaultMaxDelay))
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}
