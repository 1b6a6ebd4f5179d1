package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const examplePath = "testdata/example.yaml"

// wantExample is testdata/example.yaml as Load should return it: every value written out, nothing left to defaults.
func wantExample() *Config {
	return &Config{
		Log: Log{Level: "info", Format: "json"},
		Server: Server{
			Addr:              "0.0.0.0:8080",
			MetricsAddr:       "10.0.0.5:9090",
			PublicURL:         "https://gateway.example.org/secondlook",
			BodyLimit:         "2M",
			RequestTimeout:    Duration(45 * time.Second),
			ReadHeaderTimeout: Duration(5 * time.Second),
			ShutdownTimeout:   Duration(30 * time.Second),
			CORSOrigins:       []string{"https://ehr.stmary.example.org", "https://portal.onconet.example.org:8443"},
		},
		Redis: Redis{
			URL:          "rediss://secondlook@redis.internal.example.org:6380/2",
			ClusterAddrs: []string{},
			Password:     "env:REDIS_PASSWORD",
			Prefix:       "sl-prod:",
		},
		Keys: Keys{
			TokenEncryption: []SymmetricKey{
				{ID: "tok-2025-06", Secret: "env:SL_TOKEN_KEY_2025_06"},
				{ID: "tok-2026-01", Secret: "file:/run/secrets/secondlook/token-2026-01"},
			},
			TokenEncryptionCurrent: "tok-2026-01",
			Signing:                []SigningKey{{ID: "sig-2026-01", PrivateKey: "file:/etc/secondlook/keys/signing-2026-01.pem"}},
			SigningCurrent:         "sig-2026-01",
			Deid:                   SymmetricKey{ID: "deid-2025", Secret: "env:SL_DEID_KEY"},
			CSRF:                   "env:SL_CSRF_SECRET",
		},
		Consent: Consent{Validity: Duration(336 * time.Hour)},
		Callers: Callers{Issuers: []Issuer{
			{
				ID:       "st-mary-idp",
				URL:      "https://login.stmary.example.org/realms/clinical",
				Audience: "secondlook-gateway",
				Clients:  []CallerClient{{ID: "ehr-st-mary", Name: "St. Mary's EHR", Kind: "ehr"}},
			},
			{
				ID:       "onconet",
				URL:      "https://auth.onconet.example.org/",
				Audience: "https://gateway.example.org/secondlook",
				Clients:  []CallerClient{{ID: "0oa1b2C3onco", Name: "Oncology Second Opinions", Kind: "provider"}},
			},
		}, RateLimit: RateLimit{RequestsPerSecond: 20, Burst: 40}},
		Assembly: Assembly{
			Workers:     new(4),
			MaxAttempts: 6,
			BaseDelay:   Duration(10 * time.Second),
			Visibility:  Duration(5 * time.Minute),
		},
		Sources: []Source{
			{
				ID:                "st-mary",
				Name:              "St. Mary's General Hospital",
				Kind:              "hospital",
				FHIRBaseURL:       "https://fhir.stmary.example.org/r4",
				AllowInsecureHTTP: false,
				Auth: Auth{
					ClientID:     "secondlook-gateway",
					Method:       "client_secret_basic",
					ClientSecret: "env:ST_MARY_CLIENT_SECRET",
				},
				ScopeDialect:  "auto",
				ResourceTypes: []string{"DiagnosticReport", "ImagingStudy", "Condition", "DocumentReference"},
				Timeouts:      Timeouts{Request: Duration(20 * time.Second), Overall: Duration(3 * time.Minute)},
				Concurrency:   8,
				RateLimit:     RateLimit{RequestsPerSecond: 5, Burst: 10},
				Limits: Limits{
					MaxPages:           50,
					MaxResources:       10000,
					MaxBytes:           128 << 20,
					MaxBodyBytes:       16 << 20,
					MaxAttachmentBytes: 8 << 20,
					MaxJSONDepth:       64,
				},
				Retry: Retry{MaxAttempts: 3, BaseDelay: Duration(250 * time.Millisecond), MaxDelay: Duration(5 * time.Second)},
			},
			{
				ID:          "on-hie",
				Name:        "Provincial Health Information Exchange",
				Kind:        "provincial",
				FHIRBaseURL: "https://fhir.hie.example.ca/fhir/R4",
				Auth: Auth{
					ClientID:   "7d1e5b0c-secondlook",
					Method:     "private_key_jwt",
					PrivateKey: "file:/etc/secondlook/keys/on-hie.pem",
					KeyID:      "secondlook-2025-01",
					SigningAlg: "ES384",
				},
				ScopeDialect:  "v2",
				ResourceTypes: []string{"DiagnosticReport", "ImagingStudy", "Condition"},
				Timeouts:      Timeouts{Request: Duration(time.Minute), Overall: Duration(15 * time.Minute)},
				Concurrency:   2,
				RateLimit:     RateLimit{RequestsPerSecond: 0.5, Burst: 2},
				Limits: Limits{
					MaxPages:           200,
					MaxResources:       50000,
					MaxBytes:           512 << 20,
					MaxBodyBytes:       32 << 20,
					MaxAttachmentBytes: 16 << 20,
					MaxJSONDepth:       32,
				},
				Retry: Retry{MaxAttempts: 5, BaseDelay: Duration(time.Second), MaxDelay: Duration(30 * time.Second)},
			},
		},
		Tracing: Tracing{
			Enabled:     true,
			Endpoint:    "https://otel-collector.internal.example.org:4318/v1/traces",
			SampleRatio: 0.25,
			ServiceName: "secondlook-prod",
			Headers:     []TracingHeader{{Name: "Authorization", Value: "env:SL_OTEL_AUTHORIZATION"}},
		},
	}
}

// wantDefaults is the empty config after ApplyDefaults. The defaults are spelled out here rather than taken from the
// package's constants, so changing a default fails this test.
func wantDefaults() *Config {
	return &Config{
		Log: Log{Level: "info", Format: "json"},
		Server: Server{
			Addr:              "127.0.0.1:8080",
			BodyLimit:         "1M",
			RequestTimeout:    Duration(30 * time.Second),
			ReadHeaderTimeout: Duration(10 * time.Second),
			ShutdownTimeout:   Duration(20 * time.Second),
		},
		Redis:    Redis{URL: "redis://127.0.0.1:6379/0", Prefix: "secondlook:"},
		Consent:  Consent{Validity: Duration(720 * time.Hour)},
		Callers:  Callers{RateLimit: RateLimit{RequestsPerSecond: 50, Burst: 100}},
		Assembly: Assembly{Workers: new(2), MaxAttempts: 5, BaseDelay: Duration(5 * time.Second), Visibility: Duration(2 * time.Minute)},
		Tracing:  Tracing{SampleRatio: 1, ServiceName: "secondlook"},
	}
}

func withSources(c *Config, sources ...Source) *Config {
	c.Sources = sources
	return c
}

// wantDefaultSource is a source with only its required fields set, after ApplyDefaults. The defaults are spelled out
// here rather than taken from the package's constants, so changing a default fails this test.
func wantDefaultSource() Source {
	return Source{
		ID:            "st-mary",
		Name:          "St. Mary's",
		Kind:          "hospital",
		FHIRBaseURL:   "https://fhir.example.org/r4",
		Auth:          Auth{ClientID: "gw", Method: "client_secret_basic", ClientSecret: "env:SECRET"},
		ScopeDialect:  "auto",
		ResourceTypes: []string{"DiagnosticReport", "ImagingStudy", "Condition"},
		Timeouts:      Timeouts{Request: Duration(30 * time.Second), Overall: Duration(5 * time.Minute)},
		Concurrency:   4,
		RateLimit:     RateLimit{RequestsPerSecond: 10, Burst: 10},
		Limits: Limits{
			MaxPages:           100,
			MaxResources:       20000,
			MaxBytes:           256 << 20,
			MaxBodyBytes:       32 << 20,
			MaxAttachmentBytes: 16 << 20,
			MaxJSONDepth:       64,
		},
		Retry: Retry{MaxAttempts: 4, BaseDelay: Duration(200 * time.Millisecond), MaxDelay: Duration(10 * time.Second)},
	}
}

// minimalYAML is the smallest valid config with one source; its fields are those of wantDefaultSource.
const minimalYAML = `sources:
  - id: st-mary
    name: St. Mary's
    kind: hospital
    fhir_base_url: https://fhir.example.org/r4/
    auth:
      client_id: gw
      client_secret: env:SECRET
`

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secondlook.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// problemsOf returns the problems in err, which must be nil or wrap a *ValidationError.
func problemsOf(t *testing.T, err error) []Problem {
	t.Helper()
	if err == nil {
		return nil
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error is not a *ValidationError: %v", err)
	}
	return ve.Problems
}

func TestLoadExample(t *testing.T) {
	got, err := Load(examplePath, nil)
	if err != nil {
		t.Fatalf("Load(%q): %v", examplePath, err)
	}
	if diff := cmp.Diff(wantExample(), got); diff != "" {
		t.Errorf("Load(%q) mismatch (-want +got):\n%s", examplePath, diff)
	}
}

func TestLoadAppliesDefaults(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    *Config
	}{
		{
			name:    "empty file",
			content: "",
			want:    wantDefaults(),
		},
		{
			name:    "comments only",
			content: "# nothing configured yet\n",
			want:    wantDefaults(),
		},
		{
			name:    "null document",
			content: "~\n",
			want:    wantDefaults(),
		},
		{
			name:    "minimal source",
			content: minimalYAML,
			want:    withSources(wantDefaults(), wantDefaultSource()),
		},
		{
			name:    "workers 0 is kept: an API-only replica",
			content: "assembly: {workers: 0}\n",
			want:    func() *Config { c := wantDefaults(); c.Assembly.Workers = new(0); return c }(),
		},
		{
			name:    "workers null gets the default",
			content: "assembly: {workers: ~}\n",
			want:    wantDefaults(),
		},
		{
			name: "private_key_jwt gets RS384",
			content: `sources:
  - id: on-hie
    name: HIE
    kind: provincial
    fhir_base_url: https://hie.example.ca/fhir
    auth: {method: private_key_jwt, client_id: gw, private_key: "file:/k.pem", key_id: k1}
    resource_types: []
`,
			want: func() *Config {
				s := wantDefaultSource()
				s.ID, s.Name, s.Kind, s.FHIRBaseURL = "on-hie", "HIE", "provincial", "https://hie.example.ca/fhir"
				s.Auth = Auth{ClientID: "gw", Method: "private_key_jwt", PrivateKey: "file:/k.pem", KeyID: "k1", SigningAlg: "RS384"}
				return withSources(wantDefaults(), s)
			}(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(writeConfig(t, tt.content), nil)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Load mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadEmptyPath(t *testing.T) {
	got, err := Load("", []string{"SECONDLOOK_LOG_FORMAT=text"})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := wantDefaults()
	want.Log.Format = "text"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load mismatch (-want +got):\n%s", diff)
	}
}

func TestApplyDefaultsIsIdempotentAndKeepsValues(t *testing.T) {
	got := wantExample()
	got.ApplyDefaults()
	got.ApplyDefaults()
	if diff := cmp.Diff(wantExample(), got); diff != "" {
		t.Errorf("ApplyDefaults changed set values (-want +got):\n%s", diff)
	}

	fresh := &Config{Sources: []Source{{}, {}}}
	fresh.ApplyDefaults()
	fresh.Sources[0].ResourceTypes[0] = "Changed"
	if got := fresh.Sources[1].ResourceTypes[0]; got != "DiagnosticReport" {
		t.Errorf("sources share the default resource_types slice: second source has %q", got)
	}
}

func TestSource(t *testing.T) {
	cfg := wantExample()
	tests := []struct {
		id       string
		wantName string
		wantOK   bool
	}{
		{id: "st-mary", wantName: "St. Mary's General Hospital", wantOK: true},
		{id: "on-hie", wantName: "Provincial Health Information Exchange", wantOK: true},
		{id: "ST-MARY"},
		{id: ""},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			s, ok := cfg.Source(tt.id)
			if ok != tt.wantOK {
				t.Fatalf("Source(%q) ok = %v, want %v", tt.id, ok, tt.wantOK)
			}
			if !ok {
				if s != nil {
					t.Errorf("Source(%q) = %v, want nil", tt.id, s)
				}
				return
			}
			if s.Name != tt.wantName {
				t.Errorf("Source(%q).Name = %q, want %q", tt.id, s.Name, tt.wantName)
			}
		})
	}

	s, _ := cfg.Source("on-hie")
	s.Concurrency = 7
	if cfg.Sources[1].Concurrency != 7 {
		t.Errorf("Source returned a copy; want a pointer into Config.Sources")
	}
}
