package config

import (
	"strings"
	"time"
)

// Config is the whole gateway configuration. Build it with [Load]; a Config assembled in code must go through
// [Config.ApplyDefaults] and [Config.Validate] before use.
type Config struct {
	Log      Log      `yaml:"log"`
	Server   Server   `yaml:"server"`
	Redis    Redis    `yaml:"redis"`
	Keys     Keys     `yaml:"keys"`
	Consent  Consent  `yaml:"consent"`
	Callers  Callers  `yaml:"callers"`
	Assembly Assembly `yaml:"assembly"`
	Sources  []Source `yaml:"sources"`
	Tracing  Tracing  `yaml:"tracing"`
}

// Server configures the HTTP listener of `secondlook serve`.
type Server struct {
	// Addr is the listen address, host:port; default "127.0.0.1:8080", so that exposing the gateway beyond the host
	// is a decision rather than an accident.
	Addr string `yaml:"addr"`
	// MetricsAddr, when set, is a separate listen address (host:port) serving Prometheus metrics at /metrics, meant
	// for an internal network; empty (the default) serves no metrics. Metrics are never served on Addr.
	MetricsAddr string `yaml:"metrics_addr"`
	// PublicURL is the gateway's external origin, optionally with a path prefix (https://gateway.example.org/sl),
	// used to build links sent to callers and patients. It must not have a query, fragment or user information,
	// must use https unless its host is loopback, and ApplyDefaults trims trailing slashes. Required by
	// ValidateForServe.
	PublicURL string `yaml:"public_url"`
	// BodyLimit bounds every request body, as Echo's BodyLimit middleware reads it (see [ParseSize]); default "1M",
	// 1K..64M.
	BodyLimit string `yaml:"body_limit"`
	// RequestTimeout bounds each request's context; default 30s, 1s..5m.
	RequestTimeout Duration `yaml:"request_timeout"`
	// ReadHeaderTimeout bounds reading request headers, against slow-header attacks; default 10s, 1s..1m.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// ShutdownTimeout bounds the graceful drain of in-flight requests on shutdown; default 20s, 1s..5m.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// CORSOrigins lists the browser origins allowed cross-origin access; empty (the default) turns CORS off. Each
	// is an origin exactly as browsers send it, scheme://host[:port] with no path, https unless the host is loopback.
	CORSOrigins []string `yaml:"cors_origins"`
}

// Redis locates the Redis (or Redis Cluster) that holds the gateway's state.
type Redis struct {
	// URL is a redis:// or rediss:// (TLS) URL of a single server, redis://[user@]host[:port][/db]; default
	// "redis://127.0.0.1:6379/0". It must not carry a password: that belongs in Password. Ignored when
	// ClusterAddrs is set.
	URL string `yaml:"url"`
	// ClusterAddrs lists host:port seed nodes; setting it selects Redis Cluster mode.
	ClusterAddrs []string `yaml:"cluster_addrs"`
	// Password refers to the Redis password (AUTH); optional.
	Password SecretRef `yaml:"password"`
	// Prefix starts every key the gateway writes, so one Redis can be shared; default "secondlook:". It must not
	// contain "{" or "}", which the stores use for Redis Cluster hash tags, nor whitespace or control characters.
	Prefix string `yaml:"prefix"`
}

// Keys holds references to the gateway's own cryptographic keys. Lists of keys allow rotation: new data is sealed
// or signed with the current key while older keys stay available to open or verify what they produced.
type Keys struct {
	// TokenEncryption lists the AES-256 keys that seal tokens at rest; ids unique. Required by ValidateForServe.
	TokenEncryption []SymmetricKey `yaml:"token_encryption"`
	// TokenEncryptionCurrent is the id of the TokenEncryption key new data is sealed with; it must name one of them.
	// Default: the only key, when there is exactly one.
	TokenEncryptionCurrent string `yaml:"token_encryption_current"`
	// Signing lists the gateway's private keys for packet signatures; ids unique. Required by ValidateForServe.
	Signing []SigningKey `yaml:"signing"`
	// SigningCurrent is the id of the Signing key new packets are signed with; it must name one of them.
	// Default: the only key, when there is exactly one.
	SigningCurrent string `yaml:"signing_current"`
	// Deid is the HMAC key of the de-identification pseudonyms. Required by ValidateForServe.
	Deid SymmetricKey `yaml:"deid"`
	// CSRF refers to the secret keying the withdrawal form's CSRF token, at least 32 bytes. Required by
	// ValidateForServe.
	CSRF SecretRef `yaml:"csrf"`
}

// SymmetricKey is a named secret key. Its secret is base64 (standard or URL alphabet, padded or not) of at least
// 32 bytes; [SymmetricKey.Material] reads and decodes it.
type SymmetricKey struct {
	// ID names the key, [a-z0-9][a-z0-9-]{0,62}; it is recorded with what the key produced, so it must stay stable.
	ID string `yaml:"id"`
	// Secret refers to the base64-encoded key.
	Secret SecretRef `yaml:"secret"`
}

// SigningKey is a named private key: PEM, as PKCS#8 ("PRIVATE KEY"), SEC 1 ("EC PRIVATE KEY") or PKCS#1
// ("RSA PRIVATE KEY"), holding an ECDSA P-256 or P-384 key or an RSA key of at least 2048 bits.
type SigningKey struct {
	// ID names the key and is the "kid" of signatures made with it, [a-z0-9][a-z0-9-]{0,62}.
	ID string `yaml:"id"`
	// PrivateKey refers to the PEM private key.
	PrivateKey SecretRef `yaml:"private_key"`
}

// Consent configures patients' consent to a review.
type Consent struct {
	// Validity is how long a granted consent lasts; default 720h (30 days), 1h..8760h.
	Validity Duration `yaml:"validity"`
}

// Callers lists who may call the gateway's API: bearer tokens from trusted issuers, naming registered clients.
type Callers struct {
	// Issuers lists the trusted token issuers; ids unique.
	Issuers []Issuer `yaml:"issuers"`
	// RateLimit bounds each client's API requests, counted across every replica in Redis; default 50 a second with
	// a burst of 100, each at most 10000. A client over it gets 429 with Retry-After.
	RateLimit RateLimit `yaml:"rate_limit"`
}

// Issuer is a trusted OpenID Connect token issuer and the clients it vouches for.
type Issuer struct {
	// ID names the issuer in logs and environment overrides: [a-z0-9][a-z0-9-]{0,62}, unique.
	ID string `yaml:"id"`
	// URL is the issuer identifier, exactly as in the tokens' iss claim; required, unique, https unless the host
	// is loopback, without query, fragment or user information. It is not normalised: a trailing slash is kept.
	URL string `yaml:"url"`
	// Audience is the aud the gateway requires in tokens from this issuer; required.
	Audience string `yaml:"audience"`
	// Clients lists the registered clients of this issuer; at least one.
	Clients []CallerClient `yaml:"clients"`
}

// CallerClient is a registered API client.
type CallerClient struct {
	// ID is the client's id as the issuer puts it in tokens (client_id, azp or sub): [A-Za-z0-9][A-Za-z0-9_-]{0,127},
	// unique across all issuers.
	ID string `yaml:"id"`
	// Name is the display name shown in reviews and audit records; required, at most 200 characters.
	Name string `yaml:"name"`
	// Kind is CallerKindEHR (creates and follows reviews) or CallerKindProvider (reads packets shared with it).
	Kind string `yaml:"kind"`
}

// Assembly configures the background workers that assemble review packets from a queue.
type Assembly struct {
	// Workers is the number of concurrent assembly workers this replica runs; default 2, 0..64. 0 makes an API-only
	// replica: it serves the API and the consent pages while other replicas assemble. A pointer, so that an explicit
	// 0 is told apart from a setting left out.
	Workers *int `yaml:"workers"`
	// MaxAttempts counts the first try of a job; default 5, 1..20.
	MaxAttempts int `yaml:"max_attempts"`
	// BaseDelay is the delay before the first retry of a failed job; default 5s, 100ms..10m.
	BaseDelay Duration `yaml:"base_delay"`
	// Visibility is how long a claimed job stays hidden from other workers before it is presumed abandoned;
	// default 2m, 10s..1h.
	Visibility Duration `yaml:"visibility"`
}

// WorkerCount is the number of assembly workers to run: Workers, or the default when it is not set.
func (a Assembly) WorkerCount() int {
	if a.Workers == nil {
		return defaultAssemblyWorkers
	}
	return *a.Workers
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

// RateLimit is a token bucket applied to requests to one source, or from one API client.
type RateLimit struct {
	// RequestsPerSecond is the sustained rate; for a source default 10, greater than 0 and at most 1000.
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	// Burst is the bucket size; for a source default 10, 1..1000.
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

	CallerKindEHR      = "ehr"
	CallerKindProvider = "provider"
)

// Defaults applied by ApplyDefaults to settings left at their zero value.
const (
	defaultLogLevel                = LogLevelInfo
	defaultLogFormat               = LogFormatJSON
	defaultAuthMethod              = AuthClientSecretBasic
	defaultSigningAlg              = AlgRS384
	defaultScopeDialect            = ScopeDialectAuto
	defaultRequestTimeout          = 30 * time.Second
	defaultOverallTimeout          = 5 * time.Minute
	defaultConcurrency             = 4
	defaultRequestsPerSecond       = 10
	defaultCallerRequestsPerSecond = 50
	defaultCallerBurst             = 100
	defaultBurst                   = 10
	defaultMaxPages                = 100
	defaultMaxResources            = 20000
	defaultMaxBytes                = 256 << 20
	defaultMaxBodyBytes            = 32 << 20
	defaultMaxAttachmentBytes      = 16 << 20
	defaultMaxJSONDepth            = 64
	defaultMaxAttempts             = 4
	defaultBaseDelay               = 200 * time.Millisecond
	defaultMaxDelay                = 10 * time.Second

	defaultServerAddr          = "127.0.0.1:8080"
	defaultBodyLimit           = "1M"
	defaultServerTimeout       = 30 * time.Second
	defaultReadHeaderTimeout   = 10 * time.Second
	defaultShutdownTimeout     = 20 * time.Second
	defaultRedisURL            = "redis://127.0.0.1:6379/0"
	defaultRedisPrefix         = "secondlook:"
	defaultConsentValidity     = 720 * time.Hour
	defaultAssemblyWorkers     = 2
	defaultAssemblyMaxAttempts = 5
	defaultAssemblyBaseDelay   = 5 * time.Second
	defaultAssemblyVisibility  = 2 * time.Minute
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

// ApplyDefaults fills every setting left at its zero value with its default, names the current key of a key list
// holding exactly one key, and trims trailing slashes from FHIR base URLs and server.public_url, so that Validate
// and the rest of the gateway see one canonical form. It is idempotent.
func (c *Config) ApplyDefaults() {
	setDefault(&c.Log.Level, defaultLogLevel)
	setDefault(&c.Log.Format, defaultLogFormat)

	sv := &c.Server
	setDefault(&sv.Addr, defaultServerAddr)
	sv.PublicURL = strings.TrimRight(sv.PublicURL, "/")
	setDefault(&sv.BodyLimit, defaultBodyLimit)
	setDefault(&sv.RequestTimeout, Duration(defaultServerTimeout))
	setDefault(&sv.ReadHeaderTimeout, Duration(defaultReadHeaderTimeout))
	setDefault(&sv.ShutdownTimeout, Duration(defaultShutdownTimeout))

	setDefault(&c.Redis.URL, defaultRedisURL)
	setDefault(&c.Redis.Prefix, defaultRedisPrefix)

	if len(c.Keys.TokenEncryption) == 1 {
		setDefault(&c.Keys.TokenEncryptionCurrent, c.Keys.TokenEncryption[0].ID)
	}
	if len(c.Keys.Signing) == 1 {
		setDefault(&c.Keys.SigningCurrent, c.Keys.Signing[0].ID)
	}

	setDefault(&c.Consent.Validity, Duration(defaultConsentValidity))

	if c.Assembly.Workers == nil {
		c.Assembly.Workers = new(defaultAssemblyWorkers)
	}
	setDefault(&c.Assembly.MaxAttempts, defaultAssemblyMaxAttempts)
	setDefault(&c.Callers.RateLimit.RequestsPerSecond, defaultCallerRequestsPerSecond)
	setDefault(&c.Callers.RateLimit.Burst, defaultCallerBurst)
	setDefault(&c.Assembly.BaseDelay, Duration(defaultAssemblyBaseDelay))
	setDefault(&c.Assembly.Visibility, Duration(defaultAssemblyVisibility))

	c.Tracing.applyDefaults()

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
