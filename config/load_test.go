package config

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoadRejectsUnknownKeys(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []Problem
	}{
		{
			name:    "top level",
			content: "log:\n  level: info\nlogging: true\n",
			want:    []Problem{{Path: "logging", Message: "line 3: unknown key"}},
		},
		{
			name:    "nested in log",
			content: "log:\n  levle: debug\n",
			want:    []Problem{{Path: "log.levle", Message: "line 2: unknown key"}},
		},
		{
			name:    "in a source",
			content: minimalYAML + "    timeout: 30s\n",
			want:    []Problem{{Path: "sources[0].timeout", Message: "line 9: unknown key"}},
		},
		{
			name:    "in a source's auth",
			content: minimalYAML + "      clientsecret: env:X\n",
			want:    []Problem{{Path: "sources[0].auth.clientsecret", Message: "line 9: unknown key"}},
		},
		{
			name: "in the second source",
			content: minimalYAML + `  - id: b
    name: B
    kind: provincial
    fhir_base_url: https://b.example.ca/fhir
    auth: {method: none}
    limits: {max_page: 3}
`,
			want: []Problem{{Path: "sources[1].limits.max_page", Message: "line 14: unknown key"}},
		},
		{
			name:    "key differing only in case",
			content: "log:\n  Level: info\n",
			want:    []Problem{{Path: "log.Level", Message: "line 2: unknown key"}},
		},
		{
			name:    "every unknown key is reported",
			content: "lg: 1\nlog:\n  lvl: x\n  fmt: y\n" + minimalYAML + "      secret: z\n    idd: a\n",
			want: []Problem{
				{Path: "lg", Message: "line 1: unknown key"},
				{Path: "log.lvl", Message: "line 3: unknown key"},
				{Path: "log.fmt", Message: "line 4: unknown key"},
				{Path: "sources[0].auth.secret", Message: "line 13: unknown key"},
				{Path: "sources[0].idd", Message: "line 14: unknown key"},
			},
		},
		{
			name:    "top-level key holding only an anchor",
			content: "defaults: &d {request: 1s}\n",
			want:    []Problem{{Path: "defaults", Message: "line 1: unknown key"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(writeConfig(t, tt.content), nil)
			if err == nil {
				t.Fatalf("Load succeeded with %+v; want unknown-key error", cfg)
			}
			if diff := cmp.Diff(tt.want, problemsOf(t, err)); diff != "" {
				t.Errorf("problems mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadReportsMistypedValues(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []Problem
	}{
		{
			name:    "string for an integer",
			content: minimalYAML + "    concurrency: many\n",
			want:    []Problem{{Path: "sources[0].concurrency", Message: "line 9: want an integer in range"}},
		},
		{
			name:    "bare number for a duration",
			content: minimalYAML + "    timeouts: {request: 30}\n",
			want:    []Problem{{Path: "sources[0].timeouts.request", Message: `line 9: want a duration such as "30s"`}},
		},
		{
			name:    "unparsable duration",
			content: minimalYAML + "    retry:\n      max_delay: soon\n",
			want:    []Problem{{Path: "sources[0].retry.max_delay", Message: `line 10: want a duration such as "30s"`}},
		},
		{
			name:    "list for a duration",
			content: minimalYAML + "    timeouts: {overall: [1s]}\n",
			want:    []Problem{{Path: "sources[0].timeouts.overall", Message: `line 9: want a duration such as "30s"`}},
		},
		{
			name:    "string for an optional integer",
			content: "assembly: {workers: none}\n",
			want:    []Problem{{Path: "assembly.workers", Message: "line 1: want an integer in range"}},
		},
		{
			name:    "scalar for a section",
			content: "log: debug\n",
			want:    []Problem{{Path: "log", Message: "line 1: want a mapping"}},
		},
		{
			name:    "mapping for the source list",
			content: "sources: {id: a}\n",
			want:    []Problem{{Path: "sources", Message: "line 1: want a list"}},
		},
		{
			name:    "scalar for a list of strings",
			content: minimalYAML + "    resource_types: Condition\n",
			want:    []Problem{{Path: "sources[0].resource_types", Message: "line 9: want a list"}},
		},
		{
			name:    "mapping inside a list of strings",
			content: minimalYAML + "    resource_types: [Condition, {a: b}]\n",
			want:    []Problem{{Path: "sources[0].resource_types[1]", Message: "line 9: want a string"}},
		},
		{
			name:    "bool for a bool is fine, string is not",
			content: minimalYAML + "    allow_insecure_http: maybe\n",
			want:    []Problem{{Path: "sources[0].allow_insecure_http", Message: "line 9: want true or false"}},
		},
		{
			name:    "duplicate key",
			content: "log:\n  level: info\n  level: debug\n",
			want:    []Problem{{Path: "log.level", Message: "line 3: duplicate key (first at line 2)"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tt.content), nil)
			if diff := cmp.Diff(tt.want, problemsOf(t, err)); diff != "" {
				t.Errorf("problems mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadMistypedValueNotQuoted(t *testing.T) {
	_, err := Load(writeConfig(t, minimalYAML+"    concurrency: hunter2-secret\n"), nil)
	if err == nil {
		t.Fatal("Load succeeded; want a type error")
	}
	if strings.Contains(err.Error(), "hunter2-secret") {
		t.Errorf("error quotes the mistyped value: %v", err)
	}
}

func TestLoadAnchorsAndMergeKeys(t *testing.T) {
	content := `sources:
  - &base
    id: st-mary
    name: St. Mary's
    kind: hospital
    fhir_base_url: https://fhir.example.org/r4
    auth:
      client_id: gw
      client_secret: env:SECRET
  - <<: *base
    id: st-joseph
    timeouts: {<<: {request: 10s}}
`
	cfg, err := Load(writeConfig(t, content), nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	s, ok := cfg.Source("st-joseph")
	if !ok {
		t.Fatal("source st-joseph missing")
	}
	if s.Name != "St. Mary's" || s.Timeouts.Request.String() != "10s" {
		t.Errorf("merged source = name %q, request %s; want name %q, request 10s", s.Name, s.Timeouts.Request, "St. Mary's")
	}

	_, err = Load(writeConfig(t, minimalYAML+"    <<: {idd: a}\n"), nil)
	want := []Problem{{Path: "sources[0].idd", Message: "line 9: unknown key"}}
	if diff := cmp.Diff(want, problemsOf(t, err)); diff != "" {
		t.Errorf("unknown key in merge: problems mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadRejectsMultipleDocuments(t *testing.T) {
	tests := []struct {
		name    string
		content string
	}{
		{name: "two documents", content: "log: {level: info}\n---\nlog: {level: debug}\n"},
		{name: "second document is a source list", content: minimalYAML + "---\n" + minimalYAML},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(writeConfig(t, tt.content), nil)
			if err == nil {
				t.Fatalf("Load succeeded with %+v; want an error", cfg)
			}
			if !strings.Contains(err.Error(), "more than one YAML document") {
				t.Errorf("error = %v; want it to say there is more than one YAML document", err)
			}
		})
	}
}

func TestLoadFileSizeLimit(t *testing.T) {
	// A comment padded to the size wanted; comments do not affect the config.
	pad := func(size int) string {
		return "#" + strings.Repeat("x", size-2) + "\n"
	}
	tests := []struct {
		name    string
		size    int
		wantErr bool
	}{
		{name: "exactly 1 MiB", size: 1 << 20},
		{name: "1 MiB plus one byte", size: 1<<20 + 1, wantErr: true},
		{name: "10 MiB", size: 10 << 20, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content := pad(tt.size)
			if len(content) != tt.size {
				t.Fatalf("test file is %d bytes, want %d", len(content), tt.size)
			}
			_, err := Load(writeConfig(t, content), nil)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("Load error = %v, want error: %v", err, tt.wantErr)
			}
			if tt.wantErr && !strings.Contains(err.Error(), "larger than the 1048576 byte limit") {
				t.Errorf("error = %v; want it to name the size limit", err)
			}
		})
	}
}

func TestLoadFileErrors(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing file) error = %v, want fs.ErrNotExist", err)
	}

	_, err = Load(writeConfig(t, "log: [unclosed\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "parse yaml") {
		t.Errorf("Load(malformed YAML) error = %v, want a parse error", err)
	}
}

func TestLoadReportsFileOverrideAndValidationProblemsTogether(t *testing.T) {
	content := `sources:
  - id: st-mary
    name: St. Mary's
    kind: hospital
    fhir_base_url: https://fhir.example.org/r4
    concurrency: 65
    auth:
      client_id: gw
      clientsecret: env:SECRET
    timeouts: {request: 30}
`
	path := writeConfig(t, content)
	_, err := Load(path, []string{"SECONDLOOK_LOG_LEVL=debug", "SECONDLOOK_LOG_FORMAT=xml"})
	want := []Problem{
		// From the file, in document order.
		{Path: "sources[0].auth.clientsecret", Message: "line 9: unknown key"},
		{Path: "sources[0].timeouts.request", Message: `line 10: want a duration such as "30s"`},
		// From the environment, in environ order.
		{Path: "SECONDLOOK_LOG_LEVL", Message: "names no config setting"},
		// From Validate, on the config as far as it decoded (the mistyped request timeout took its default).
		{Path: "log.format", Message: `must be one of json, text; got "xml"`},
		{Path: "sources[st-mary].auth.client_secret", Message: `is required when method is "client_secret_basic"`},
		{Path: "sources[st-mary].concurrency", Message: "must be between 1 and 64; got 65"},
	}
	if diff := cmp.Diff(want, problemsOf(t, err)); diff != "" {
		t.Errorf("problems mismatch (-want +got):\n%s", diff)
	}
	if err != nil && !strings.HasPrefix(err.Error(), "load config "+path+": invalid config (6 problems):") {
		t.Errorf("error = %q; want it to name the file and count the problems", err)
	}
}
