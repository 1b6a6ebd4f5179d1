package config

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestValidate(t *testing.T) {
	const (
		sm  = "sources[st-mary]."
		hie = "sources[on-hie]."
	)
	refSyntaxMsg := `must be a reference "env:NAME" or "file:/absolute/path", not a literal secret`
	httpsOnly := "must use https unless the host is loopback (127.0.0.0/8, ::1, localhost) or allow_insecure_http is set"
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []Problem
	}{
		{name: "valid example", mutate: func(*Config) {}},
		{name: "no sources", mutate: func(c *Config) { c.Sources = nil }},

		// log
		{name: "log level unknown", mutate: func(c *Config) { c.Log.Level = "verbose" },
			want: []Problem{{"log.level", `must be one of debug, info, warn, error; got "verbose"`}}},
		{name: "log level empty", mutate: func(c *Config) { c.Log.Level = "" },
			want: []Problem{{"log.level", "is required; want one of debug, info, warn, error"}}},
		{name: "log level wrong case", mutate: func(c *Config) { c.Log.Level = "DEBUG" },
			want: []Problem{{"log.level", `must be one of debug, info, warn, error; got "DEBUG"`}}},
		{name: "log format unknown", mutate: func(c *Config) { c.Log.Format = "xml" },
			want: []Problem{{"log.format", `must be one of json, text; got "xml"`}}},
		{name: "log format text", mutate: func(c *Config) { c.Log.Format = "text" }},

		// id
		{name: "id empty", mutate: func(c *Config) { c.Sources[0].ID = "" },
			want: []Problem{{"sources[0].id", "is required"}}},
		{name: "id upper case", mutate: func(c *Config) { c.Sources[0].ID = "St-Mary" },
			want: []Problem{{"sources[0].id", `must match ^[a-z0-9][a-z0-9-]{0,62}$; got "St-Mary"`}}},
		{name: "id leading hyphen", mutate: func(c *Config) { c.Sources[0].ID = "-mary" },
			want: []Problem{{"sources[0].id", `must match ^[a-z0-9][a-z0-9-]{0,62}$; got "-mary"`}}},
		{name: "id underscore", mutate: func(c *Config) { c.Sources[0].ID = "st_mary" },
			want: []Problem{{"sources[0].id", `must match ^[a-z0-9][a-z0-9-]{0,62}$; got "st_mary"`}}},
		{name: "id 63 characters", mutate: func(c *Config) { c.Sources[0].ID = strings.Repeat("a", 63) }},
		{name: "id 64 characters", mutate: func(c *Config) { c.Sources[0].ID = strings.Repeat("a", 64) },
			want: []Problem{{"sources[0].id", fmt.Sprintf(`must match ^[a-z0-9][a-z0-9-]{0,62}$; got %q`, strings.Repeat("a", 64))}}},
		{name: "id single digit", mutate: func(c *Config) { c.Sources[0].ID = "7" }},
		{name: "id duplicate", mutate: func(c *Config) { c.Sources[1].ID = "st-mary" },
			want: []Problem{{"sources[1].id", "duplicates the id of sources[0]"}}},

		// name
		{name: "name empty", mutate: func(c *Config) { c.Sources[0].Name = "" },
			want: []Problem{{sm + "name", "is required"}}},
		{name: "name blank", mutate: func(c *Config) { c.Sources[0].Name = " \t" },
			want: []Problem{{sm + "name", "is required"}}},
		{name: "name 200 characters", mutate: func(c *Config) { c.Sources[0].Name = strings.Repeat("é", 200) }},
		{name: "name 201 characters", mutate: func(c *Config) { c.Sources[0].Name = strings.Repeat("é", 201) },
			want: []Problem{{sm + "name", "must be at most 200 characters; got 201"}}},
		{name: "name control character", mutate: func(c *Config) { c.Sources[0].Name = "St. Mary's\n" },
			want: []Problem{{sm + "name", "must be valid UTF-8 without control characters"}}},
		{name: "name invalid UTF-8", mutate: func(c *Config) { c.Sources[0].Name = "St. Mary\xff" },
			want: []Problem{{sm + "name", "must be valid UTF-8 without control characters"}}},

		// kind
		{name: "kind empty", mutate: func(c *Config) { c.Sources[0].Kind = "" },
			want: []Problem{{sm + "kind", "is required; want one of hospital, provincial"}}},
		{name: "kind unknown", mutate: func(c *Config) { c.Sources[0].Kind = "clinic" },
			want: []Problem{{sm + "kind", `must be one of hospital, provincial; got "clinic"`}}},

		// fhir_base_url
		{name: "url empty", mutate: func(c *Config) { c.Sources[0].FHIRBaseURL = "" },
			want: []Problem{{sm + "fhir_base_url", "is required"}}},
		{name: "url relative", mutate: func(c *Config) { c.Sources[0].FHIRBaseURL = "fhir.example.org/r4" },
			want: []Problem{{sm + "fhir_base_url", "must be an absolute http or https URL with a host"}}},
		{name: "url ftp", mutate: func(c *Config) { c.Sources[0].FHIRBaseURL = "ftp://fhir.example.org/r4" },
			want: []Problem{{sm + "fhir_base_url", "must be an absolute http or https URL with a host"}}},
		{name: "url opaque", mutate: func(c *Config) { c.Sources[0].FHIRBaseURL = "https:fhir.example.org" },
			want: []Problem{{sm + "fhir_base_url", "must be an absolute http or https URL with a host"}}},
		{name: "url no host", mutate: func(c *Config) { c.Sources[0].FHIRBaseURL = "https:///r4" },
			want: []Problem{{sm + "fhir_base_url", "must be an absolute http or https URL with a host"}}},
		{name: "url unparsable", mutate: func(c *Config) { c.Sources[0].FHIRBaseURL = "https://fhir.example.org:port/r4" },
			want: []Problem{{sm + "fhir_base_url", "is not a valid URL"}}},
		{name: "url query", mutate: func(c *Config) { c.Sources[0].FHIRBaseURL = "https://fhir.example.org/r4?tenant=1" },
			want: []Problem{{sm + "fhir_base_url", "must not have a query"}}},
		{name: "url empty query", mutate: func(c *Config) { c.Sources[0].FHIRBaseURL = "https://fhir.example.org/r4?" },
			want: []Problem{{sm + "fhir_base_url", "must not have a query"}}},
		{name: "url fragment", mutate: func(c *Config) { c.Sources[0].FHIRBaseURL = "https://fhir.example.org/r4#x" },
			want: []Problem{{sm + "fhir_base_url", "must not have a fragment"}}},
		{name: "url empty fragment", mutate: func(c *Config) { c.Sources[0].FHIRBaseURL = "https://fhir.example.org/r4#" },
			want: []Problem{{sm + "fhir_base_url", "must not have a fragment"}}},
		{name: "url user info", mutate: func(c *Config) { c.Sources[0].FHIRBaseURL = "https://gw:pw@fhir.example.org/r4" },
			want: []Problem{{sm + "fhir_base_url", "must not contain user information; credentials belong in auth"}}},
		{name: "url http remote", mutate: func(c *Config) { c.Sources[0].FHIRBaseURL = "http://fhir.example.org/r4" },
			want: []Problem{{sm + "fhir_base_url", httpsOnly}}},
		{name: "url http name starting with 127", mutate: func(c *Config) { c.Sources[0].FHIRBaseURL = "http://127.0.0.1.example.org/r4" },
			want: []Problem{{sm + "fhir_base_url", httpsOnly}}},
		{name: "url http private address", mutate: func(c *Config) { c.Sources[0].FHIRBaseURL = "http://10.0.0.5:8080/fhir" },
			want: []Problem{{sm + "fhir_base_url", httpsOnly}}},
		{name: "url http 127.0.0.1", mutate: func(c *Config) { c.Sources[0].FHIRBaseURL = "http://127.0.0.1:8080/fhir" }},
		{name: "url http 127.9.9.9", mutate: func(c *Config) { c.Sources[0].FHIRBaseURL = "http://127.9.9.9/fhir" }},
		{name: "url http ::1", mutate: func(c *Config) { c.Sources[0].FHIRBaseURL = "http://[::1]:8080/fhir" }},
		{name: "url http localhost", mutate: func(c *Config) { c.Sources[0].FHIRBaseURL = "http://LocalHost:8080/fhir" }},
		{name: "url http allowed insecure", mutate: func(c *Config) {
			c.Sources[0].FHIRBaseURL = "http://fhir.lab.internal/r4"
			c.Sources[0].AllowInsecureHTTP = true
		}},
		{name: "url several problems", mutate: func(c *Config) { c.Sources[0].FHIRBaseURL = "http://u@fhir.example.org/r4?a#b" },
			want: []Problem{
				{sm + "fhir_base_url", "must not contain user information; credentials belong in auth"},
				{sm + "fhir_base_url", "must not have a query"},
				{sm + "fhir_base_url", "must not have a fragment"},
				{sm + "fhir_base_url", httpsOnly},
			}},

		// auth
		{name: "auth method unknown", mutate: func(c *Config) { c.Sources[0].Auth.Method = "basic" },
			want: []Problem{{sm + "auth.method", `must be one of client_secret_basic, private_key_jwt, none; got "basic"`}}},
		{name: "auth method unknown still checks references", mutate: func(c *Config) {
			c.Sources[0].Auth.Method = "mtls"
			c.Sources[0].Auth.ClientSecret = "hunter2"
		}, want: []Problem{
			{sm + "auth.method", `must be one of client_secret_basic, private_key_jwt, none; got "mtls"`},
			{sm + "auth.client_secret", refSyntaxMsg},
		}},
		{name: "client_id missing for basic", mutate: func(c *Config) { c.Sources[0].Auth.ClientID = "" },
			want: []Problem{{sm + "auth.client_id", `is required when method is "client_secret_basic"`}}},
		{name: "client_id missing for jwt", mutate: func(c *Config) { c.Sources[1].Auth.ClientID = "" },
			want: []Problem{{hie + "auth.client_id", `is required when method is "private_key_jwt"`}}},
		{name: "none needs no client_id or secret", mutate: func(c *Config) {
			c.Sources[0].Auth = Auth{Method: AuthNone}
		}},
		{name: "none may keep a client_id", mutate: func(c *Config) {
			c.Sources[0].Auth = Auth{Method: AuthNone, ClientID: "public-app"}
		}},
		{name: "client_secret missing for basic", mutate: func(c *Config) { c.Sources[0].Auth.ClientSecret = "" },
			want: []Problem{{sm + "auth.client_secret", `is required when method is "client_secret_basic"`}}},
		{name: "client_secret set for jwt", mutate: func(c *Config) { c.Sources[1].Auth.ClientSecret = "env:X" },
			want: []Problem{{hie + "auth.client_secret", `must not be set when method is "private_key_jwt"`}}},
		{name: "client_secret set for none", mutate: func(c *Config) { c.Sources[0].Auth.Method = AuthNone },
			want: []Problem{{sm + "auth.client_secret", `must not be set when method is "none"`}}},
		{name: "private_key missing for jwt", mutate: func(c *Config) { c.Sources[1].Auth.PrivateKey = "" },
			want: []Problem{{hie + "auth.private_key", `is required when method is "private_key_jwt"`}}},
		{name: "private_key set for basic", mutate: func(c *Config) { c.Sources[0].Auth.PrivateKey = "file:/k.pem" },
			want: []Problem{{sm + "auth.private_key", `must not be set when method is "client_secret_basic"`}}},
		{name: "key_id missing for jwt", mutate: func(c *Config) { c.Sources[1].Auth.KeyID = "" },
			want: []Problem{{hie + "auth.key_id", `is required when method is "private_key_jwt"`}}},
		{name: "key_id set for basic", mutate: func(c *Config) { c.Sources[0].Auth.KeyID = "k1" },
			want: []Problem{{sm + "auth.key_id", `must not be set when method is "client_secret_basic"`}}},
		{name: "signing_alg unknown", mutate: func(c *Config) { c.Sources[1].Auth.SigningAlg = "HS256" },
			want: []Problem{{hie + "auth.signing_alg", `must be one of RS384, ES384; got "HS256"`}}},
		{name: "signing_alg empty for jwt", mutate: func(c *Config) { c.Sources[1].Auth.SigningAlg = "" },
			want: []Problem{{hie + "auth.signing_alg", "is required; want one of RS384, ES384"}}},
		{name: "signing_alg RS384", mutate: func(c *Config) { c.Sources[1].Auth.SigningAlg = "RS384" }},
		{name: "signing_alg set for basic", mutate: func(c *Config) { c.Sources[0].Auth.SigningAlg = "RS384" },
			want: []Problem{{sm + "auth.signing_alg", `must not be set when method is "client_secret_basic"`}}},
		{name: "client_secret literal", mutate: func(c *Config) { c.Sources[0].Auth.ClientSecret = "hunter2" },
			want: []Problem{{sm + "auth.client_secret", refSyntaxMsg}}},
		{name: "private_key literal PEM", mutate: func(c *Config) {
			c.Sources[1].Auth.PrivateKey = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
		}, want: []Problem{{hie + "auth.private_key", refSyntaxMsg}}},
		{name: "secret env name invalid", mutate: func(c *Config) { c.Sources[0].Auth.ClientSecret = "env:1SECRET" },
			want: []Problem{{sm + "auth.client_secret", `"env:" must be followed by an environment variable name matching [A-Za-z_][A-Za-z0-9_]*`}}},
		{name: "secret env name empty", mutate: func(c *Config) { c.Sources[0].Auth.ClientSecret = "env:" },
			want: []Problem{{sm + "auth.client_secret", `"env:" must be followed by an environment variable name matching [A-Za-z_][A-Za-z0-9_]*`}}},
		{name: "secret file relative", mutate: func(c *Config) { c.Sources[1].Auth.PrivateKey = "file:keys/on-hie.pem" },
			want: []Problem{{hie + "auth.private_key", `"file:" must be followed by an absolute path`}}},
		{name: "secret scheme upper case", mutate: func(c *Config) { c.Sources[0].Auth.ClientSecret = "ENV:SECRET" },
			want: []Problem{{sm + "auth.client_secret", refSyntaxMsg}}},

		// scope_dialect
		{name: "scope dialect unknown", mutate: func(c *Config) { c.Sources[0].ScopeDialect = "v3" },
			want: []Problem{{sm + "scope_dialect", `must be one of auto, v1, v2; got "v3"`}}},
		{name: "scope dialect v1", mutate: func(c *Config) { c.Sources[0].ScopeDialect = "v1" }},

		// resource_types
		{name: "resource types empty", mutate: func(c *Config) { c.Sources[0].ResourceTypes = nil },
			want: []Problem{{sm + "resource_types", "must list at least one resource type"}}},
		{name: "resource type unsupported", mutate: func(c *Config) { c.Sources[0].ResourceTypes = []string{"Condition", "Patient"} },
			want: []Problem{{sm + "resource_types[1]", `must be one of DiagnosticReport, ImagingStudy, Condition, DocumentReference; got "Patient"`}}},
		{name: "resource type wrong case", mutate: func(c *Config) { c.Sources[0].ResourceTypes = []string{"condition"} },
			want: []Problem{{sm + "resource_types[0]", `must be one of DiagnosticReport, ImagingStudy, Condition, DocumentReference; got "condition"`}}},
		{name: "resource type duplicate", mutate: func(c *Config) {
			c.Sources[0].ResourceTypes = []string{"Condition", "ImagingStudy", "Condition"}
		}, want: []Problem{{sm + "resource_types[2]", `duplicates "Condition"`}}},

		// timeouts
		{name: "request timeout 1s", mutate: func(c *Config) { c.Sources[0].Timeouts.Request = Duration(time.Second) }},
		{name: "request timeout under 1s", mutate: func(c *Config) { c.Sources[0].Timeouts.Request = Duration(999 * time.Millisecond) },
			want: []Problem{{sm + "timeouts.request", "must be between 1s and 5m0s; got 999ms"}}},
		{name: "request timeout 5m", mutate: func(c *Config) {
			c.Sources[0].Timeouts = Timeouts{Request: Duration(5 * time.Minute), Overall: Duration(5 * time.Minute)}
		}},
		{name: "request timeout over 5m", mutate: func(c *Config) {
			c.Sources[0].Timeouts = Timeouts{Request: Duration(5*time.Minute + time.Second), Overall: Duration(10 * time.Minute)}
		}, want: []Problem{{sm + "timeouts.request", "must be between 1s and 5m0s; got 5m1s"}}},
		{name: "overall under request", mutate: func(c *Config) { c.Sources[0].Timeouts.Overall = Duration(10 * time.Second) },
			want: []Problem{{sm + "timeouts.overall", "must be at least timeouts.request (20s); got 10s"}}},
		{name: "overall 1h", mutate: func(c *Config) { c.Sources[0].Timeouts.Overall = Duration(time.Hour) }},
		{name: "overall over 1h", mutate: func(c *Config) { c.Sources[0].Timeouts.Overall = Duration(time.Hour + time.Second) },
			want: []Problem{{sm + "timeouts.overall", "must be at most 1h0m0s; got 1h0m1s"}}},
		{name: "timeouts zero", mutate: func(c *Config) { c.Sources[0].Timeouts = Timeouts{} },
			want: []Problem{{sm + "timeouts.request", "must be between 1s and 5m0s; got 0s"}}},

		// concurrency
		{name: "concurrency 1", mutate: func(c *Config) { c.Sources[0].Concurrency = 1 }},
		{name: "concurrency 64", mutate: func(c *Config) { c.Sources[0].Concurrency = 64 }},
		{name: "concurrency 0", mutate: func(c *Config) { c.Sources[0].Concurrency = 0 },
			want: []Problem{{sm + "concurrency", "must be between 1 and 64; got 0"}}},
		{name: "concurrency 65", mutate: func(c *Config) { c.Sources[0].Concurrency = 65 },
			want: []Problem{{sm + "concurrency", "must be between 1 and 64; got 65"}}},

		// rate_limit
		{name: "rps 1000", mutate: func(c *Config) { c.Sources[0].RateLimit.RequestsPerSecond = 1000 }},
		{name: "rps tiny", mutate: func(c *Config) { c.Sources[0].RateLimit.RequestsPerSecond = 0.001 }},
		{name: "rps 0", mutate: func(c *Config) { c.Sources[0].RateLimit.RequestsPerSecond = 0 },
			want: []Problem{{sm + "rate_limit.requests_per_second", "must be greater than 0 and at most 1000; got 0"}}},
		{name: "rps negative", mutate: func(c *Config) { c.Sources[0].RateLimit.RequestsPerSecond = -1 },
			want: []Problem{{sm + "rate_limit.requests_per_second", "must be greater than 0 and at most 1000; got -1"}}},
		{name: "rps over 1000", mutate: func(c *Config) { c.Sources[0].RateLimit.RequestsPerSecond = 1000.5 },
			want: []Problem{{sm + "rate_limit.requests_per_second", "must be greater than 0 and at most 1000; got 1000.5"}}},
		{name: "rps NaN", mutate: func(c *Config) { c.Sources[0].RateLimit.RequestsPerSecond = math.NaN() },
			want: []Problem{{sm + "rate_limit.requests_per_second", "must be greater than 0 and at most 1000; got NaN"}}},
		{name: "rps infinite", mutate: func(c *Config) { c.Sources[0].RateLimit.RequestsPerSecond = math.Inf(1) },
			want: []Problem{{sm + "rate_limit.requests_per_second", "must be greater than 0 and at most 1000; got +Inf"}}},
		{name: "burst 0", mutate: func(c *Config) { c.Sources[0].RateLimit.Burst = 0 },
			want: []Problem{{sm + "rate_limit.burst", "must be between 1 and 1000; got 0"}}},
		{name: "burst 1001", mutate: func(c *Config) { c.Sources[0].RateLimit.Burst = 1001 },
			want: []Problem{{sm + "rate_limit.burst", "must be between 1 and 1000; got 1001"}}},
		{name: "burst 1000", mutate: func(c *Config) { c.Sources[0].RateLimit.Burst = 1000 }},

		// limits
		{name: "max_pages 0", mutate: func(c *Config) { c.Sources[0].Limits.MaxPages = 0 },
			want: []Problem{{sm + "limits.max_pages", "must be at least 1; got 0"}}},
		{name: "max_resources negative", mutate: func(c *Config) { c.Sources[0].Limits.MaxResources = -5 },
			want: []Problem{{sm + "limits.max_resources", "must be at least 1; got -5"}}},
		{name: "max_bytes 0", mutate: func(c *Config) { c.Sources[0].Limits.MaxBytes = 0 },
			want: []Problem{{sm + "limits.max_bytes", "must be at least 1; got 0"}}},
		{name: "max_body_bytes 0", mutate: func(c *Config) { c.Sources[0].Limits.MaxBodyBytes = 0 },
			want: []Problem{{sm + "limits.max_body_bytes", "must be at least 1; got 0"}}},
		{name: "max_body_bytes equal to max_bytes", mutate: func(c *Config) { c.Sources[0].Limits.MaxBodyBytes = 128 << 20 }},
		{name: "max_body_bytes over max_bytes", mutate: func(c *Config) { c.Sources[0].Limits.MaxBodyBytes = 128<<20 + 1 },
			want: []Problem{{sm + "limits.max_body_bytes", "must be at most limits.max_bytes (134217728); got 134217729"}}},
		{name: "max_attachment_bytes 0", mutate: func(c *Config) { c.Sources[0].Limits.MaxAttachmentBytes = 0 },
			want: []Problem{{sm + "limits.max_attachment_bytes", "must be at least 1; got 0"}}},
		{name: "max_attachment_bytes over max_bytes", mutate: func(c *Config) { c.Sources[0].Limits.MaxAttachmentBytes = 1 << 30 },
			want: []Problem{{sm + "limits.max_attachment_bytes", "must be at most limits.max_bytes (134217728); got 1073741824"}}},
		{name: "max_json_depth 8", mutate: func(c *Config) { c.Sources[0].Limits.MaxJSONDepth = 8 }},
		{name: "max_json_depth 512", mutate: func(c *Config) { c.Sources[0].Limits.MaxJSONDepth = 512 }},
		{name: "max_json_depth 7", mutate: func(c *Config) { c.Sources[0].Limits.MaxJSONDepth = 7 },
			want: []Problem{{sm + "limits.max_json_depth", "must be between 8 and 512; got 7"}}},
		{name: "max_json_depth 513", mutate: func(c *Config) { c.Sources[0].Limits.MaxJSONDepth = 513 },
			want: []Problem{{sm + "limits.max_json_depth", "must be between 8 and 512; got 513"}}},

		// retry
		{name: "max_attempts 1", mutate: func(c *Config) { c.Sources[0].Retry.MaxAttempts = 1 }},
		{name: "max_attempts 10", mutate: func(c *Config) { c.Sources[0].Retry.MaxAttempts = 10 }},
		{name: "max_attempts 0", mutate: func(c *Config) { c.Sources[0].Retry.MaxAttempts = 0 },
			want: []Problem{{sm + "retry.max_attempts", "must be between 1 and 10; got 0"}}},
		{name: "max_attempts 11", mutate: func(c *Config) { c.Sources[0].Retry.MaxAttempts = 11 },
			want: []Problem{{sm + "retry.max_attempts", "must be between 1 and 10; got 11"}}},
		{name: "base_delay 0", mutate: func(c *Config) { c.Sources[0].Retry.BaseDelay = 0 },
			want: []Problem{{sm + "retry.base_delay", "must be between 1ms and 1m0s; got 0s"}}},
		{name: "base_delay over 1m", mutate: func(c *Config) {
			c.Sources[0].Retry = Retry{MaxAttempts: 2, BaseDelay: Duration(2 * time.Minute), MaxDelay: Duration(3 * time.Minute)}
		}, want: []Problem{{sm + "retry.base_delay", "must be between 1ms and 1m0s; got 2m0s"}}},
		{name: "max_delay under base_delay", mutate: func(c *Config) { c.Sources[0].Retry.MaxDelay = Duration(100 * time.Millisecond) },
			want: []Problem{{sm + "retry.max_delay", "must be at least retry.base_delay (250ms); got 100ms"}}},
		{name: "max_delay equal to base_delay", mutate: func(c *Config) { c.Sources[0].Retry.MaxDelay = c.Sources[0].Retry.BaseDelay }},
		{name: "max_delay over 5m", mutate: func(c *Config) { c.Sources[0].Retry.MaxDelay = Duration(6 * time.Minute) },
			want: []Problem{{sm + "retry.max_delay", "must be at most 5m0s; got 6m0s"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := wantExample()
			tt.mutate(cfg)
			if diff := cmp.Diff(tt.want, problemsOf(t, cfg.Validate())); diff != "" {
				t.Errorf("Validate problems mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// brokenConfig has exactly wantBrokenProblems problems spread over the log section and both sources.
func brokenConfig() *Config {
	c := wantExample()
	c.Log.Level = "loud"                                  // 1
	c.Sources[0].ID = "St Mary"                           // 2
	c.Sources[0].Name = ""                                // 3
	c.Sources[0].FHIRBaseURL = "http://user:pw@remote/x/" // 4 user info, 5 https only
	c.Sources[0].Auth.ClientSecret = "pa55word"           // 6 literal secret
	c.Sources[0].Timeouts.Overall = Duration(time.Second) // 7 overall < request
	c.Sources[0].Concurrency = 0                          // 8
	c.Sources[1].Kind = ""                                // 9
	c.Sources[1].Auth.KeyID = ""                          // 10
	c.Sources[1].ResourceTypes = []string{"Patient"}      // 11
	c.Sources[1].Limits.MaxJSONDepth = 1                  // 12
	c.Sources[1].Retry.MaxAttempts = 0                    // 13
	return c
}

const wantBrokenProblems = 13

func TestValidateReportsEveryProblem(t *testing.T) {
	err := brokenConfig().Validate()
	problems := problemsOf(t, err)
	if len(problems) != wantBrokenProblems {
		t.Fatalf("Validate reported %d problems, want %d:\n%v", len(problems), wantBrokenProblems, err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != wantBrokenProblems+1 {
		t.Errorf("Error() has %d lines, want a summary and one per problem (%d):\n%s", len(lines), wantBrokenProblems+1, err)
	}
	if want := fmt.Sprintf("invalid config (%d problems):", wantBrokenProblems); lines[0] != want {
		t.Errorf("Error() first line = %q, want %q", lines[0], want)
	}
	for i, p := range problems {
		if want := "\t" + p.Path + ": " + p.Message; lines[i+1] != want {
			t.Errorf("Error() line %d = %q, want %q", i+1, lines[i+1], want)
		}
	}
}

func TestValidationErrorSingleProblem(t *testing.T) {
	err := &ValidationError{Problems: []Problem{{Path: "log.level", Message: "is required"}}}
	if got, want := err.Error(), "invalid config (1 problem):\n\tlog.level: is required"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestValidateDoesNotModify(t *testing.T) {
	tests := []struct {
		name string
		cfg  func() *Config
	}{
		{name: "valid", cfg: wantExample},
		{name: "broken", cfg: brokenConfig},
		{name: "before defaults", cfg: func() *Config {
			return &Config{Sources: []Source{{ID: "a", FHIRBaseURL: "https://x.example/r4/"}}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg()
			_ = cfg.Validate()
			if diff := cmp.Diff(tt.cfg(), cfg); diff != "" {
				t.Errorf("Validate modified the config (-before +after):\n%s", diff)
			}
		})
	}
}

func TestValidateNeverShowsSecrets(t *testing.T) {
	const (
		secret   = "pa55-w0rd-literal"
		password = "url-pa55"
		pem      = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
	)
	c := wantExample()
	c.Sources[0].Auth.ClientSecret = secret
	c.Sources[0].FHIRBaseURL = "https://gw:" + password + "@fhir.example.org/r4"
	c.Sources[1].Auth.PrivateKey = SecretRef("-----BEGIN PRIVATE KEY-----\n" + pem + "\n-----END PRIVATE KEY-----")
	c.Sources[1].Auth.ClientSecret = secret // forbidden for private_key_jwt

	err := c.Validate()
	if got := len(problemsOf(t, err)); got != 4 {
		t.Fatalf("Validate reported %d problems, want 4:\n%v", got, err)
	}
	outputs := map[string]string{
		"Error()": err.Error(),
		"%v":      fmt.Sprintf("%v", err),
		"%+v":     fmt.Sprintf("%+v", err),
	}
	for name, out := range outputs {
		for _, s := range []string{secret, password, pem} {
			if strings.Contains(out, s) {
				t.Errorf("%s of the validation error contains secret %q:\n%s", name, s, out)
			}
		}
	}
}
