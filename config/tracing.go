package config

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// Tracing configures OpenTelemetry tracing of the gateway: spans of the HTTP edge (named by route pattern), Redis
// commands (by command name), upstream FHIR and authorization-server requests (by operation) and assembly jobs,
// exported over OTLP/HTTP. Off by default. Whatever the instrumentation records, only allow-listed attributes are
// exported: no patient id, name, URL path or query, Redis statement, authorization code, state or token.
type Tracing struct {
	// Enabled turns tracing on; default false: no exporter is created and no connection is made.
	Enabled bool `yaml:"enabled"`
	// Endpoint is the collector's OTLP/HTTP traces URL, e.g. https://otel-collector.internal:4318/v1/traces (a URL
	// without a path gets /v1/traces); required when Enabled. No user information, query or fragment; https unless
	// the host is loopback or AllowInsecureHTTP is set.
	Endpoint string `yaml:"endpoint"`
	// AllowInsecureHTTP permits an http Endpoint on a non-loopback host (a collector on the same private network).
	AllowInsecureHTTP bool `yaml:"allow_insecure_http"`
	// SampleRatio is the share of traces started by the gateway that are recorded; default 1, greater than 0 and at
	// most 1. A request carrying a W3C traceparent follows its caller's sampling decision.
	SampleRatio float64 `yaml:"sample_ratio"`
	// ServiceName is the service.name of the spans; default "secondlook".
	ServiceName string `yaml:"service_name"`
	// Headers are sent with every export, for a collector that requires authentication; each value is a secret
	// reference.
	Headers []TracingHeader `yaml:"headers"`
}

// TracingHeader is one HTTP header sent to the trace collector.
type TracingHeader struct {
	// Name is the header name, e.g. Authorization or X-Api-Key; unique (ignoring case).
	Name string `yaml:"name"`
	// Value refers to the header's value: "env:NAME" or "file:/abs/path".
	Value SecretRef `yaml:"value"`
}

const (
	defaultTracingSampleRatio = 1.0
	defaultTracingServiceName = "secondlook"
	maxTracingHeaders         = 16
)

var (
	// headerNameRE is an HTTP header field name (RFC 9110 token).
	headerNameRE = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
	// serviceNameRE is the syntax of tracing.service_name.
	serviceNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)
)

func (t *Tracing) applyDefaults() {
	setDefault(&t.SampleRatio, defaultTracingSampleRatio)
	setDefault(&t.ServiceName, defaultTracingServiceName)
}

// tracing checks the section. The endpoint is required only when tracing is on, but a set one is always checked.
func (v *validator) tracing(t *Tracing) {
	switch {
	case t.Endpoint != "":
		v.httpURL("tracing.endpoint", t.Endpoint, urlRules{
			userInfo:      userInfoForbidden + "; credentials belong in tracing.headers",
			https:         httpsUnlessLoopback + " or allow_insecure_http is set",
			allowInsecure: t.AllowInsecureHTTP,
		})
	case t.Enabled:
		v.add("tracing.endpoint", "is required when tracing is enabled")
	}
	if r := t.SampleRatio; math.IsNaN(r) || r <= 0 || r > 1 {
		v.add("tracing.sample_ratio", "must be greater than 0 and at most 1; got %v", r)
	}
	if !serviceNameRE.MatchString(t.ServiceName) {
		v.add("tracing.service_name", "must match %s; got %q", serviceNameRE.String(), t.ServiceName)
	}
	if len(t.Headers) > maxTracingHeaders {
		v.add("tracing.headers", "must list at most %d headers; got %d", maxTracingHeaders, len(t.Headers))
	}
	for i, h := range t.Headers {
		p := fmt.Sprintf("tracing.headers[%d]", i)
		switch {
		case h.Name == "":
			v.add(p+".name", "is required")
		case !headerNameRE.MatchString(h.Name):
			v.add(p+".name", "must be an HTTP header name, %s", headerNameRE.String())
		default:
			if j := slices.IndexFunc(t.Headers[:i], func(o TracingHeader) bool { return strings.EqualFold(o.Name, h.Name) }); j >= 0 {
				v.add(p+".name", "duplicates tracing.headers[%d].name", j)
			}
		}
		if h.Value == "" {
			v.add(p+".value", "is required")
		} else {
			v.secretRef(p+".value", h.Value)
		}
	}
}

// tracingSecrets reads the header secrets `secondlook serve` will send, when tracing is on.
func (v *validator) tracingSecrets(t *Tracing) {
	if !t.Enabled {
		return
	}
	for i, h := range t.Headers {
		if !h.Value.wellFormed() {
			continue
		}
		if _, err := h.resolve(); err != nil {
			v.add(fmt.Sprintf("tracing.headers[%d].value", i), "%v", err)
		}
	}
}

// ResolveHeaders reads every header's secret, keyed by canonical header name. Errors name the reference, never the
// secret.
func (t Tracing) ResolveHeaders() (map[string]string, error) {
	if len(t.Headers) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(t.Headers))
	var problems []error
	for _, h := range t.Headers {
		val, err := h.resolve()
		if err != nil {
			problems = append(problems, fmt.Errorf("tracing header %s: %w", h.Name, err))
			continue
		}
		out[http.CanonicalHeaderKey(h.Name)] = val
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	return out, nil
}

func (h TracingHeader) resolve() (string, error) {
	b, err := h.Value.Resolve()
	if err != nil {
		return "", err
	}
	val := string(b)
	if strings.ContainsFunc(val, unicode.IsControl) {
		return "", fmt.Errorf("secret %s must be one line of text without control characters", h.Value)
	}
	return val, nil
}
