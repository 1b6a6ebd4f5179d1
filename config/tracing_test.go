package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTracingDefaultsOff(t *testing.T) {
	cfg, err := Load(writeConfig(t, "tracing: {}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Tracing{SampleRatio: 1, ServiceName: "secondlook"}, cfg.Tracing); diff != "" {
		t.Errorf("tracing defaults (-want +got):\n%s", diff)
	}
}

func TestValidateTracing(t *testing.T) {
	tests := []struct {
		name    string
		content string
		environ []string
		want    []Problem
		check   func(t *testing.T, tr Tracing) // what a valid configuration must come out as
	}{
		{name: "enabled with an endpoint", content: "tracing: {enabled: true, endpoint: \"https://otel.example.org\"}\n"},
		{name: "loopback http", content: "tracing: {enabled: true, endpoint: \"http://127.0.0.1:4318/v1/traces\"}\n"},
		{name: "insecure allowed", content: "tracing: {enabled: true, endpoint: \"http://otel:4318\", allow_insecure_http: true}\n"},
		{name: "turned on from the environment", content: "tracing: {endpoint: \"https://otel.example.org\"}\n",
			environ: []string{"SECONDLOOK_TRACING_ENABLED=true", "SECONDLOOK_TRACING_SAMPLE_RATIO=0.5"},
			check: func(t *testing.T, tr Tracing) {
				if !tr.Enabled || tr.SampleRatio != 0.5 {
					t.Errorf("the environment was not applied: %+v", tr)
				}
			}},
		{
			name:    "enabled without an endpoint",
			content: "tracing: {enabled: true}\n",
			want:    []Problem{{Path: "tracing.endpoint", Message: "is required when tracing is enabled"}},
		},
		{
			name:    "every problem at once",
			content: "tracing:\n  enabled: true\n  endpoint: \"http://user:pw@otel.example.org/v1/traces?x=1\"\n  sample_ratio: 1.5\n  service_name: \"second look\"\n  headers:\n    - {name: \"X Api\", value: \"env:A\"}\n    - {name: Authorization, value: \"literal-token\"}\n    - {name: authorization, value: \"env:B\"}\n    - {name: \"\"}\n",
			want: []Problem{
				{Path: "tracing.endpoint", Message: "must not contain user information; credentials belong in tracing.headers"},
				{Path: "tracing.endpoint", Message: "must not have a query"},
				{Path: "tracing.endpoint", Message: "must use https unless the host is loopback (127.0.0.0/8, ::1, localhost) or allow_insecure_http is set"},
				{Path: "tracing.sample_ratio", Message: "must be greater than 0 and at most 1; got 1.5"},
				{Path: "tracing.service_name", Message: `must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$; got "second look"`},
				{Path: "tracing.headers[0].name", Message: "must be an HTTP header name, ^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$"},
				{Path: "tracing.headers[1].value", Message: `must be a reference "env:NAME" or "file:/absolute/path", not a literal secret`},
				{Path: "tracing.headers[2].name", Message: "duplicates tracing.headers[1].name"},
				{Path: "tracing.headers[3].name", Message: "is required"},
				{Path: "tracing.headers[3].value", Message: "is required"},
			},
		},
		{
			name:    "a set endpoint is checked even when off",
			content: "tracing: {endpoint: \"otel:4318\", sample_ratio: -1}\n",
			want: []Problem{
				{Path: "tracing.endpoint", Message: "must be an absolute http or https URL with a host"},
				{Path: "tracing.sample_ratio", Message: "must be greater than 0 and at most 1; got -1"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(writeConfig(t, tt.content), tt.environ)
			if diff := cmp.Diff(tt.want, problemsOf(t, err)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			if tt.check != nil && err == nil {
				tt.check(t, cfg.Tracing)
			}
			if err != nil && strings.Contains(err.Error(), "literal-token") {
				t.Errorf("a problem quotes the secret: %v", err)
			}
		})
	}
}

func TestTracingHeaderSecrets(t *testing.T) {
	t.Setenv("OTEL_KEY", "key-123")
	t.Setenv("OTEL_BAD", "two\nlines")
	tr := Tracing{Enabled: true, Headers: []TracingHeader{{Name: "x-api-key", Value: "env:OTEL_KEY"}}}
	got, err := tr.ResolveHeaders()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"X-Api-Key": "key-123"}, got); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}

	// ValidateForServe reads them when tracing is on, and names the reference, never the value.
	tr.Headers = append(tr.Headers, TracingHeader{Name: "Authorization", Value: "env:OTEL_UNSET"},
		TracingHeader{Name: "X-Other", Value: "env:OTEL_BAD"})
	v := &validator{}
	v.tracingSecrets(&tr)
	want := []Problem{
		{Path: "tracing.headers[1].value", Message: "resolve secret env:OTEL_UNSET: environment variable is not set"},
		{Path: "tracing.headers[2].value", Message: "secret env:OTEL_BAD must be one line of text without control characters"},
	}
	if diff := cmp.Diff(want, v.problems); diff != "" {
		t.Errorf("serve problems (-want +got):\n%s", diff)
	}
	if _, err := tr.ResolveHeaders(); err == nil || strings.Contains(err.Error(), "two") {
		t.Errorf("ResolveHeaders: %v", err)
	}
	// Off, nothing is read.
	tr.Enabled = false
	v = &validator{}
	v.tracingSecrets(&tr)
	if len(v.problems) != 0 {
		t.Errorf("secrets read with tracing off: %v", v.problems)
	}
}
