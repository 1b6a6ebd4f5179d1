package config

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestEnvOverrides(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		want    func(c *Config) // applied to wantExample()
	}{
		{
			name:    "no overrides",
			environ: nil,
			want:    func(*Config) {},
		},
		{
			name:    "top-level scalar",
			environ: []string{"SECONDLOOK_LOG_LEVEL=debug"},
			want:    func(c *Config) { c.Log.Level = "debug" },
		},
		{
			name:    "duration",
			environ: []string{"SECONDLOOK_SOURCES_ST_MARY_TIMEOUTS_REQUEST=10s"},
			want:    func(c *Config) { c.Sources[0].Timeouts.Request = Duration(10 * time.Second) },
		},
		{
			name:    "list, with spaces around elements",
			environ: []string{"SECONDLOOK_SOURCES_ST_MARY_RESOURCE_TYPES=DiagnosticReport, Condition"},
			want:    func(c *Config) { c.Sources[0].ResourceTypes = []string{"DiagnosticReport", "Condition"} },
		},
		{
			name:    "nested auth field",
			environ: []string{"SECONDLOOK_SOURCES_ST_MARY_AUTH_CLIENT_ID=abc"},
			want:    func(c *Config) { c.Sources[0].Auth.ClientID = "abc" },
		},
		{
			name:    "hyphenated id of the second source",
			environ: []string{"SECONDLOOK_SOURCES_ON_HIE_AUTH_KEY_ID=k2"},
			want:    func(c *Config) { c.Sources[1].Auth.KeyID = "k2" },
		},
		{
			name:    "key with underscores, normalised after override",
			environ: []string{"SECONDLOOK_SOURCES_ON_HIE_FHIR_BASE_URL=https://other.example.ca/fhir/"},
			want:    func(c *Config) { c.Sources[1].FHIRBaseURL = "https://other.example.ca/fhir" },
		},
		{
			name:    "float in a section with underscores",
			environ: []string{"SECONDLOOK_SOURCES_ON_HIE_RATE_LIMIT_REQUESTS_PER_SECOND=2.5"},
			want:    func(c *Config) { c.Sources[1].RateLimit.RequestsPerSecond = 2.5 },
		},
		{
			name: "bool",
			environ: []string{
				"SECONDLOOK_SOURCES_ST_MARY_ALLOW_INSECURE_HTTP=true",
				"SECONDLOOK_SOURCES_ST_MARY_FHIR_BASE_URL=http://fhir.lab.internal/r4",
			},
			want: func(c *Config) {
				c.Sources[0].AllowInsecureHTTP = true
				c.Sources[0].FHIRBaseURL = "http://fhir.lab.internal/r4"
			},
		},
		{
			name:    "int64",
			environ: []string{"SECONDLOOK_SOURCES_ON_HIE_LIMITS_MAX_BYTES=1073741824"},
			want:    func(c *Config) { c.Sources[1].Limits.MaxBytes = 1 << 30 },
		},
		{
			name:    "secret reference",
			environ: []string{"SECONDLOOK_SOURCES_ST_MARY_AUTH_CLIENT_SECRET=file:/run/secrets/st-mary"},
			want:    func(c *Config) { c.Sources[0].Auth.ClientSecret = "file:/run/secrets/st-mary" },
		},
		{
			name: "empty value restores the default",
			environ: []string{
				"SECONDLOOK_SOURCES_ST_MARY_CONCURRENCY=",
				"SECONDLOOK_SOURCES_ST_MARY_RESOURCE_TYPES=",
				"SECONDLOOK_SOURCES_ST_MARY_RETRY_BASE_DELAY=",
			},
			want: func(c *Config) {
				c.Sources[0].Concurrency = 4
				c.Sources[0].ResourceTypes = []string{"DiagnosticReport", "ImagingStudy", "Condition"}
				c.Sources[0].Retry.BaseDelay = Duration(200 * time.Millisecond)
			},
		},
		{
			name:    "later assignment wins",
			environ: []string{"SECONDLOOK_LOG_LEVEL=debug", "SECONDLOOK_LOG_LEVEL=warn"},
			want:    func(c *Config) { c.Log.Level = "warn" },
		},
		{
			name: "reserved, foreign, lower-case and malformed entries are ignored",
			environ: []string{
				"SECONDLOOK_CONFIG=/etc/secondlook.yaml",
				"SECONDLOOK_FETCH_TOKEN=abc",
				"HOME=/root",
				"secondlook_log_level=debug",
				"SECONDLOOK_LOG_LEVEL",
			},
			want: func(*Config) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(examplePath, tt.environ)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := wantExample()
			tt.want(want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Load mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEnvOverrideProblems(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		want    []Problem
	}{
		{
			name:    "unknown top-level variable",
			environ: []string{"SECONDLOOK_VERBOSE=1"},
			want:    []Problem{{Path: "SECONDLOOK_VERBOSE", Message: "names no config setting"}},
		},
		{
			name:    "misspelt field",
			environ: []string{"SECONDLOOK_LOG_LEVL=debug"},
			want:    []Problem{{Path: "SECONDLOOK_LOG_LEVL", Message: "names no config setting"}},
		},
		{
			name:    "section rather than setting",
			environ: []string{"SECONDLOOK_LOG=debug"},
			want:    []Problem{{Path: "SECONDLOOK_LOG", Message: "names no config setting"}},
		},
		{
			name:    "the source list itself",
			environ: []string{"SECONDLOOK_SOURCES=st-mary"},
			want:    []Problem{{Path: "SECONDLOOK_SOURCES", Message: "names no config setting"}},
		},
		{
			name:    "source that is not configured",
			environ: []string{"SECONDLOOK_SOURCES_ST_JOSEPH_NAME=St. Joseph's"},
			want: []Problem{{Path: "SECONDLOOK_SOURCES_ST_JOSEPH_NAME",
				Message: "names no configured entry of sources; overrides can change only entries defined in the config file, not create them"}},
		},
		{
			name:    "source id written with a hyphen",
			environ: []string{"SECONDLOOK_SOURCES_ST-MARY_NAME=x"},
			want: []Problem{{Path: "SECONDLOOK_SOURCES_ST-MARY_NAME",
				Message: "names no configured entry of sources; overrides can change only entries defined in the config file, not create them"}},
		},
		{
			name:    "unknown field of a configured source",
			environ: []string{"SECONDLOOK_SOURCES_ST_MARY_AUTH_SECRET=env:X"},
			want:    []Problem{{Path: "SECONDLOOK_SOURCES_ST_MARY_AUTH_SECRET", Message: "names no config setting"}},
		},
		{
			name:    "source without a field",
			environ: []string{"SECONDLOOK_SOURCES_ST_MARY=x"},
			want:    []Problem{{Path: "SECONDLOOK_SOURCES_ST_MARY", Message: "names no config setting"}},
		},
		{
			name:    "source id",
			environ: []string{"SECONDLOOK_SOURCES_ST_MARY_ID=st-joseph"},
			want: []Problem{{Path: "SECONDLOOK_SOURCES_ST_MARY_ID",
				Message: "sources[st-mary].id cannot be overridden: entries are matched by it"}},
		},
		{
			name:    "bad integer",
			environ: []string{"SECONDLOOK_SOURCES_ST_MARY_CONCURRENCY=lots"},
			want: []Problem{{Path: "SECONDLOOK_SOURCES_ST_MARY_CONCURRENCY",
				Message: `sources[st-mary].concurrency: invalid integer "lots"`}},
		},
		{
			name:    "bad duration",
			environ: []string{"SECONDLOOK_SOURCES_ON_HIE_TIMEOUTS_OVERALL=30"},
			want: []Problem{{Path: "SECONDLOOK_SOURCES_ON_HIE_TIMEOUTS_OVERALL",
				Message: `sources[on-hie].timeouts.overall: invalid duration "30": want a number with a unit, such as "30s"`}},
		},
		{
			name:    "bad number",
			environ: []string{"SECONDLOOK_SOURCES_ON_HIE_RATE_LIMIT_REQUESTS_PER_SECOND=fast"},
			want: []Problem{{Path: "SECONDLOOK_SOURCES_ON_HIE_RATE_LIMIT_REQUESTS_PER_SECOND",
				Message: `sources[on-hie].rate_limit.requests_per_second: invalid number "fast"`}},
		},
		{
			name:    "bad bool",
			environ: []string{"SECONDLOOK_SOURCES_ON_HIE_ALLOW_INSECURE_HTTP=yes please"},
			want: []Problem{{Path: "SECONDLOOK_SOURCES_ON_HIE_ALLOW_INSECURE_HTTP",
				Message: `sources[on-hie].allow_insecure_http: invalid boolean "yes please": want true or false`}},
		},
		{
			name:    "empty list element",
			environ: []string{"SECONDLOOK_SOURCES_ST_MARY_RESOURCE_TYPES=Condition,,ImagingStudy"},
			want: []Problem{{Path: "SECONDLOOK_SOURCES_ST_MARY_RESOURCE_TYPES",
				Message: "sources[st-mary].resource_types: list element 1 is empty"}},
		},
		{
			name:    "overridden value that parses but is invalid is reported by Validate",
			environ: []string{"SECONDLOOK_SOURCES_ST_MARY_CONCURRENCY=100"},
			want:    []Problem{{Path: "sources[st-mary].concurrency", Message: "must be between 1 and 64; got 100"}},
		},
		{
			name:    "literal secret given as an override",
			environ: []string{"SECONDLOOK_SOURCES_ST_MARY_AUTH_CLIENT_SECRET=s3cr3t-value"},
			want: []Problem{{Path: "sources[st-mary].auth.client_secret",
				Message: `must be a reference "env:NAME" or "file:/absolute/path", not a literal secret`}},
		},
		{
			name: "every problem is reported",
			environ: []string{
				"SECONDLOOK_A=1",
				"SECONDLOOK_LOG_LEVEL=debug",
				"SECONDLOOK_SOURCES_NOPE_NAME=x",
				"SECONDLOOK_B=2",
			},
			want: []Problem{
				{Path: "SECONDLOOK_A", Message: "names no config setting"},
				{Path: "SECONDLOOK_SOURCES_NOPE_NAME",
					Message: "names no configured entry of sources; overrides can change only entries defined in the config file, not create them"},
				{Path: "SECONDLOOK_B", Message: "names no config setting"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(examplePath, tt.environ)
			if err == nil {
				t.Fatalf("Load succeeded with %+v; want an error", cfg)
			}
			if diff := cmp.Diff(tt.want, problemsOf(t, err)); diff != "" {
				t.Errorf("problems mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEnvOverrideCannotCreateSources(t *testing.T) {
	_, err := Load("", []string{"SECONDLOOK_SOURCES_ST_MARY_NAME=St. Mary's"})
	want := []Problem{{Path: "SECONDLOOK_SOURCES_ST_MARY_NAME",
		Message: "names no configured entry of sources; overrides can change only entries defined in the config file, not create them"}}
	if diff := cmp.Diff(want, problemsOf(t, err)); diff != "" {
		t.Errorf("problems mismatch (-want +got):\n%s", diff)
	}
}

func TestEnvProblemsNeverQuoteUnknownValues(t *testing.T) {
	const value = "tok-8f3a9c"
	_, err := Load(examplePath, []string{"SECONDLOOK_FETCH_TOKN=" + value, "SECONDLOOK_SOURCES_X_AUTH_CLIENT_SECRET=" + value})
	if err == nil {
		t.Fatal("Load succeeded; want unknown-variable errors")
	}
	if strings.Contains(err.Error(), value) {
		t.Errorf("error quotes a variable's value: %v", err)
	}
}

// envLeaves lists the key paths of every leaf setting under t, read independently of the package's own helpers.
// Lists of sections are skipped; callers handle them.
func envLeaves(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("yaml"), ",")[0]
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		switch {
		case f.Type == reflect.TypeFor[Duration]():
			out = append(out, path)
		case f.Type.Kind() == reflect.Struct:
			out = append(out, envLeaves(f.Type, path)...)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
		default:
			out = append(out, path)
		}
	}
	return out
}

// TestEveryLeafHasOneEnvName checks, for every setting including ones added later, that its environment name
// resolves to exactly that setting, even with source ids chosen to collide with key names.
func TestEveryLeafHasOneEnvName(t *testing.T) {
	ids := []string{"st", "st-mary", "st-mary-auth", "a", "a-rate", "a-rate-limit", "fhir", "fhir-base", "limits"}
	cfg := &Config{}
	for _, id := range ids {
		cfg.Sources = append(cfg.Sources, Source{ID: id})
	}
	root := reflect.ValueOf(cfg).Elem()
	envName := func(path string) string {
		return "SECONDLOOK_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(path))
	}

	type entry struct{ name, path string }
	var entries []entry
	for _, p := range envLeaves(reflect.TypeFor[Config](), "") {
		entries = append(entries, entry{envName(p), p})
	}
	sourceLeaves := envLeaves(reflect.TypeFor[Source](), "")
	if len(sourceLeaves) < 20 {
		t.Fatalf("found only %d source settings; the leaf walk is broken", len(sourceLeaves))
	}
	for _, id := range ids {
		for _, p := range sourceLeaves {
			entries = append(entries, entry{envName("sources." + id + "." + p), "sources[" + id + "]." + p})
		}
	}

	for _, e := range entries {
		t.Run(e.name, func(t *testing.T) {
			var r envResolver
			targets := r.resolve(root, strings.TrimPrefix(e.name, EnvPrefix), "")
			var got []string
			for _, tg := range targets {
				got = append(got, tg.path)
			}
			if diff := cmp.Diff([]string{e.path}, got); diff != "" {
				t.Errorf("%s resolves to (-want +got):\n%s", e.name, diff)
			}
		})
	}
}

func TestEnvOverrideAmbiguityIsReported(t *testing.T) {
	// No two settings of Config share an environment name (TestEveryLeafHasOneEnvName), so use a type that does.
	type ambiguous struct {
		A struct {
			BC string `yaml:"b_c"`
		} `yaml:"a"`
		AB struct {
			C string `yaml:"c"`
		} `yaml:"a_b"`
	}
	var v ambiguous
	problems := applyEnvTo(reflect.ValueOf(&v).Elem(), []string{"SECONDLOOK_A_B_C=x", "SECONDLOOK_A_B_C_D=y"})
	want := []Problem{
		{Path: "SECONDLOOK_A_B_C", Message: "is ambiguous: it names a.b_c and a_b.c"},
		{Path: "SECONDLOOK_A_B_C_D", Message: "names no config setting"},
	}
	if diff := cmp.Diff(want, problems); diff != "" {
		t.Errorf("problems mismatch (-want +got):\n%s", diff)
	}
	if v.A.BC != "" || v.AB.C != "" {
		t.Errorf("an ambiguous override was applied: %+v", v)
	}
}

func TestIsReserved(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{name: "SECONDLOOK_CONFIG", want: true},
		{name: "SECONDLOOK_FETCH_TOKEN", want: true},
		{name: "SECONDLOOK_LOG_LEVEL", want: false},
		{name: "secondlook_config", want: false},
		{name: "SECONDLOOK_CONFIG_PATH", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsReserved(tt.name); got != tt.want {
				t.Errorf("IsReserved(%q) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
}

// TestReservedNamesAreNotSettings guards against reserving a name that a setting (or a source named like the rest of
// the variable) would use, which would silently disable that override.
func TestReservedNamesAreNotSettings(t *testing.T) {
	cfg := wantExample()
	root := reflect.ValueOf(cfg).Elem()
	for _, name := range reservedEnvNames() {
		t.Run(name, func(t *testing.T) {
			if !strings.HasPrefix(name, EnvPrefix) {
				t.Errorf("reserved name %q lacks the %s prefix", name, EnvPrefix)
			}
			var r envResolver
			if targets := r.resolve(root, strings.TrimPrefix(name, EnvPrefix), ""); len(targets) != 0 {
				t.Errorf("reserved name %s also names setting %s", name, targets[0].path)
			}
		})
	}
}
