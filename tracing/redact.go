package tracing

import (
	"context"
	"net/url"
	"regexp"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	sdkinstrumentation "go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// AttrReviewID is the attribute key the gateway's own spans name a review by: review ids are random and minted by
// the gateway, not PHI.
const AttrReviewID = attribute.Key("secondlook.review_id")

// keep lists the span attributes exported as they are: each carries a method, a status, a host, a protocol, a
// command or type name, or a value the gateway chose. Values of string attributes are still checked for their
// shape (see keepValue).
var keep = map[attribute.Key]bool{
	"http.request.method":       true,
	"http.method":               true,
	"http.response.status_code": true,
	"http.status_code":          true,
	"http.request.resend_count": true,
	"url.scheme":                true,
	"server.address":            true,
	"server.port":               true,
	"net.peer.name":             true,
	"net.peer.port":             true,
	"network.protocol.name":     true,
	"network.protocol.version":  true,
	"network.transport":         true,
	"error.type":                true,
	"exception.type":            true,
	"db.system":                 true,
	"db.system.name":            true,
	"db.redis.num_cmd":          true,
	"db.redis.database_index":   true,
	AttrReviewID:                true,
}

// urlKeys are attributes holding a whole URL: only its origin (scheme://host[:port]) is exported. Path and query
// carry patient ids (Patient/123, ?patient=123) and, on the OAuth callback, the code and state.
var urlKeys = map[attribute.Key]bool{
	"url.full": true,
	"http.url": true,
}

// resourceKeys are the resource attributes exported: what names the service and the SDK. Anything else (from
// OTEL_RESOURCE_ATTRIBUTES, say) is dropped.
var resourceKeys = map[attribute.Key]bool{
	"service.name":                true,
	"service.version":             true,
	"service.namespace":           true,
	"service.instance.id":         true,
	"deployment.environment":      true,
	"deployment.environment.name": true,
	"telemetry.sdk.language":      true,
	"telemetry.sdk.name":          true,
	"telemetry.sdk.version":       true,
}

var (
	// word is a span-name token or event name that cannot be an identifier: letters and a few separators, no
	// digits (patient ids, review ids and Synthea names all have some).
	word = regexp.MustCompile(`^[A-Za-z][A-Za-z_.-]{0,63}$`)
	// segment is a path segment of a route pattern that is not a fixed word: a parameter or a wildcard. A fixed word
	// is kept only if it is one of pathWords.
	segment = regexp.MustCompile(`^(:[A-Za-z_]+|\*)$`)
	// token is a short value naming a type, class, host or protocol.
	token = regexp.MustCompile(`^[A-Za-z0-9_.*:/\[\]-]{0,128}$`)
)

// Redact wraps next so that every span it exports carries only what cannot identify a patient or hold a credential:
//
//   - attributes: only the allow-listed keys; URLs reduced to their origin; string values that do not look like a
//     method, status, host, route pattern or type name dropped; everything else (url.path, url.query, http.target,
//     db.statement, user agents, client addresses, error messages, caller file paths) dropped;
//   - span names: cut at any "?" or "#", and any token that could be an identifier (a digit, a path segment that
//     is not a route parameter or one of pathWords) replaced with "_";
//   - events: names reduced like tokens, attributes filtered like the span's (so exception.message and
//     exception.stacktrace never leave);
//   - status: the code only, never the description (which instrumentations fill with err.Error(), URL included);
//   - links, the resource and the instrumentation scope: attributes filtered.
//
// It trusts no instrumentation library's defaults: a span is made safe here whatever its source recorded.
func Redact(next sdktrace.SpanExporter) sdktrace.SpanExporter {
	return &redactor{next: next}
}

type redactor struct {
	next sdktrace.SpanExporter
	// A provider has one resource: its redacted form is made once and kept with the resource it came from.
	mu       sync.Mutex
	from, to *resource.Resource
}

// ExportSpans redacts each span and passes the batch on.
func (r *redactor) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	out := make([]sdktrace.ReadOnlySpan, len(spans))
	for i, s := range spans {
		out[i] = redactSpan(s, r.resource(s.Resource()))
	}
	return r.next.ExportSpans(ctx, out)
}

// resource returns res as Redact exports it.
func (r *redactor) resource(res *resource.Resource) *resource.Resource {
	r.mu.Lock()
	defer r.mu.Unlock()
	if res != r.from || r.to == nil {
		r.from, r.to = res, redactResource(res)
	}
	return r.to
}

// Shutdown shuts the wrapped exporter down.
func (r *redactor) Shutdown(ctx context.Context) error { return r.next.Shutdown(ctx) }

// redactedSpan is a span as Redact exports it. Methods not overridden (ids, times, kind, counts) come from the
// original, which holds no PHI.
type redactedSpan struct {
	sdktrace.ReadOnlySpan
	name   string
	attrs  []attribute.KeyValue
	events []sdktrace.Event
	links  []sdktrace.Link
	status sdktrace.Status
	res    *resource.Resource
	scope  sdkinstrumentation.Scope
}

func (s *redactedSpan) Name() string                                   { return s.name }
func (s *redactedSpan) Attributes() []attribute.KeyValue               { return s.attrs }
func (s *redactedSpan) Events() []sdktrace.Event                       { return s.events }
func (s *redactedSpan) Links() []sdktrace.Link                         { return s.links }
func (s *redactedSpan) Status() sdktrace.Status                        { return s.status }
func (s *redactedSpan) Resource() *resource.Resource                   { return s.res }
func (s *redactedSpan) InstrumentationScope() sdkinstrumentation.Scope { return s.scope }

// InstrumentationLibrary is the deprecated form of InstrumentationScope, redacted the same way.
//
//nolint:staticcheck // The interface still has the method; exporters may call it.
func (s *redactedSpan) InstrumentationLibrary() sdkinstrumentation.Library {
	return sdkinstrumentation.Library{Name: s.scope.Name, Version: s.scope.Version, SchemaURL: s.scope.SchemaURL}
}

func redactSpan(s sdktrace.ReadOnlySpan, res *resource.Resource) sdktrace.ReadOnlySpan {
	rs := &redactedSpan{
		ReadOnlySpan: s,
		name:         SafeName(s.Name()),
		attrs:        Attributes(s.Attributes()),
		status:       sdktrace.Status{Code: s.Status().Code},
		res:          res,
	}
	for _, e := range s.Events() {
		rs.events = append(rs.events, sdktrace.Event{Name: safeWord(e.Name), Attributes: Attributes(e.Attributes),
			DroppedAttributeCount: e.DroppedAttributeCount, Time: e.Time})
	}
	for _, l := range s.Links() {
		rs.links = append(rs.links, sdktrace.Link{SpanContext: l.SpanContext, Attributes: Attributes(l.Attributes),
			DroppedAttributeCount: l.DroppedAttributeCount})
	}
	sc := s.InstrumentationScope()
	rs.scope = sdkinstrumentation.Scope{Name: sc.Name, Version: sc.Version, SchemaURL: sc.SchemaURL}
	return rs
}

func redactResource(r *resource.Resource) *resource.Resource {
	if r == nil {
		return nil
	}
	var kept []attribute.KeyValue
	for _, kv := range r.Attributes() {
		if resourceKeys[kv.Key] && keepValue(kv) {
			kept = append(kept, kv)
		}
	}
	return resource.NewWithAttributes(r.SchemaURL(), kept...)
}

// Attributes returns the attributes of attrs that Redact exports, reduced as it reduces them.
func Attributes(attrs []attribute.KeyValue) []attribute.KeyValue {
	var out []attribute.KeyValue
	for _, kv := range attrs {
		switch {
		case urlKeys[kv.Key]:
			if o := origin(kv.Value.AsString()); o != "" {
				out = append(out, attribute.String(string(kv.Key), o))
			}
		case kv.Key == "http.route":
			if kv.Value.Type() == attribute.STRING {
				out = append(out, attribute.String("http.route", safePath(kv.Value.AsString())))
			}
		case keep[kv.Key] && keepValue(kv):
			out = append(out, kv)
		}
	}
	return out
}

// keepValue checks an allow-listed attribute's value: numbers and booleans pass; strings must be short tokens (a
// method, host, type name, id the gateway minted), never free text.
func keepValue(kv attribute.KeyValue) bool {
	switch kv.Value.Type() {
	case attribute.BOOL, attribute.INT64, attribute.FLOAT64:
		return true
	case attribute.STRING:
		return token.MatchString(kv.Value.AsString())
	}
	return false
}

// origin reduces a URL to scheme://host[:port], or "" when it has none.
func origin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// pathWords are the fixed words of the gateway's routes, the only paths a span is named by (server spans by route
// pattern; client spans by operation, never by URL). Every path in openapi.yaml must pass SafeName unchanged
// (TestSafeNameKeepsEveryRoute). Any other path segment is replaced: a word in a path may be a name
// ("/Patient/smith") and a short one an id ("/Patient/p7"), so path words are listed, not guessed.
var pathWords = map[string]bool{
	"api": true, "v1": true, "reviews": true, "packets": true, "report": true, "audit": true, "consent": true,
	"authorize": true, "verify": true, "withdraw": true, "auth": true, "callback": true, "launch": true,
	"healthz": true, "readyz": true, "metrics": true, "openapi.yaml": true, ".well-known": true, "jwks.json": true,
	"static": true,
}

// SafeName returns a span name as Redact exports it: cut at "?" or "#", each path-like token reduced to route
// pattern segments and pathWords, each other token kept only if it is a word (no digits), else "_". Names the gateway and its
// instrumentation choose ("GET /api/v1/packets/:id", "FHIR search DiagnosticReport", "hgetall") pass unchanged.
func SafeName(name string) string {
	name, _, _ = strings.Cut(name, "?")
	name, _, _ = strings.Cut(name, "#")
	fields := strings.Fields(name)
	if len(fields) > 8 {
		fields = fields[:8]
	}
	for i, f := range fields {
		if strings.Contains(f, "/") {
			fields[i] = safePath(f)
		} else {
			fields[i] = safeWord(f)
		}
	}
	if len(fields) == 0 {
		return "span"
	}
	return strings.Join(fields, " ")
}

func safeWord(w string) string {
	if word.MatchString(w) {
		return w
	}
	return "_"
}

// safePath keeps the segments of a path that a route pattern would have and replaces the others with "_"; a URL's
// scheme and host are dropped with it.
func safePath(p string) string {
	p, _, _ = strings.Cut(p, "?")
	p, _, _ = strings.Cut(p, "#")
	if i := strings.Index(p, "://"); i >= 0 {
		rest := p[i+3:]
		j := strings.IndexByte(rest, '/')
		if j < 0 {
			return "/"
		}
		p = rest[j:]
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if s != "" && !pathWords[s] && !segment.MatchString(s) {
			segs[i] = "_"
		}
	}
	return strings.Join(segs, "/")
}
