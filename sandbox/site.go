package sandbox

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxFormBody bounds the body of POST [type]/_search.
const maxFormBody = 1 << 20

// requestInfo is what the request log may say about a request: no path, query, ids or body.
type requestInfo struct {
	interaction string
	typ         string
}

// serve handles one request for this site; rel is the path after /{site}/fhir.
func (s *Site) serve(w http.ResponseWriter, r *http.Request, rel string) {
	s.requests.Add(1)
	start := time.Now()
	info := requestInfo{interaction: "unknown"}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler { //nolint:errorlint // sentinel panic value, compared as net/http does
				panic(v)
			}
			// Log the kind of failure only: a panic value could quote request or resource content.
			s.logger.LogAttrs(r.Context(), slog.LevelError, "sandbox handler panicked",
				slog.String("interaction", info.interaction), slog.String("type", info.typ),
				slog.String("panic", fmt.Sprintf("%T", v)))
			writeResponse(w, r, errorResponse(errorf(http.StatusInternalServerError, "exception", "internal server error")), nil)
		}
	}()

	target := strings.TrimPrefix(rel, "/")
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	latency, fault := s.faults.take(target)
	if latency > 0 && !sleepCtx(r.Context(), latency) {
		return // the client gave up; nothing to send
	}

	var resp *response
	if fault != nil && fault.Status != 0 {
		info.interaction = "fault"
		resp = jsonResponse(fault.Status, outcome(issueCodeForStatus(fault.Status), "injected fault"))
	} else {
		resp = s.route(r, rel, &info)
	}
	if fault != nil {
		resp = fault.apply(resp)
	}
	s.logger.LogAttrs(r.Context(), slog.LevelInfo, "sandbox request",
		slog.String("method", r.Method), slog.String("interaction", info.interaction), slog.String("type", info.typ),
		slog.Int("status", resp.status), slog.Bool("fault", fault != nil), slog.Duration("elapsed", time.Since(start)))
	writeResponse(w, r, resp, fault)
}

// base is the site's FHIR base URL as the client addressed it.
func (s *Site) base(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/" + s.name + "/fhir"
}

func (s *Site) knownType(typ string) bool {
	if !validType(typ) {
		return false
	}
	if _, ok := s.store.types[typ]; ok {
		return true
	}
	for _, t := range coreSearchTypes() {
		if t == typ {
			return true
		}
	}
	return false
}

func readMethod(r *http.Request) bool {
	return r.Method == http.MethodGet || r.Method == http.MethodHead
}

func methodNotAllowed(r *http.Request) *response {
	return errorResponse(errorf(http.StatusMethodNotAllowed, "not-supported", "%s is not supported here; this server is read-only", r.Method))
}

// route maps the request to an interaction and runs it.
func (s *Site) route(r *http.Request, rel string, info *requestInfo) *response {
	rel = strings.Trim(rel, "/")
	var segs []string
	if rel != "" {
		segs = strings.Split(rel, "/")
	}
	switch {
	case len(segs) == 0:
		info.interaction = "base"
		if !readMethod(r) {
			return methodNotAllowed(r)
		}
		return errorResponse(errorf(http.StatusNotFound, "not-supported", "no interaction at the service base"))
	case segs[0] == "metadata" && len(segs) == 1:
		info.interaction = "capabilities"
		if !readMethod(r) {
			return methodNotAllowed(r)
		}
		return s.capabilities(r)
	case s.auth != nil && smartConfigPath(segs):
		info.interaction = "smart-configuration"
		if !readMethod(r) {
			return methodNotAllowed(r)
		}
		return s.auth.smartConfiguration(r)
	}
	// Everything past metadata and SMART discovery needs a token when the site has an authorization server.
	var grant *accessGrant
	if s.auth != nil {
		g, resp := s.auth.authenticate(r)
		if resp != nil {
			info.interaction = "unauthorized"
			return resp
		}
		grant = g
	}
	typ := segs[0]
	info.typ = typ
	if !s.knownType(typ) {
		info.typ = ""
		return errorResponse(errorf(http.StatusNotFound, "not-supported", "unknown resource type"))
	}
	switch {
	case len(segs) == 1:
		info.interaction = "search-type"
		if !readMethod(r) {
			return methodNotAllowed(r)
		}
		return s.search(r, typ, false, grant)
	case len(segs) == 2 && segs[1] == "_search":
		info.interaction = "search-type"
		switch {
		case r.Method == http.MethodPost:
			return s.search(r, typ, true, grant)
		case readMethod(r):
			return s.search(r, typ, false, grant)
		}
		return methodNotAllowed(r)
	case len(segs) == 2:
		info.interaction = "read"
		if !readMethod(r) {
			return methodNotAllowed(r)
		}
		return s.read(r, typ, segs[1], grant)
	}
	info.interaction = "unsupported"
	return errorResponse(errorf(http.StatusNotFound, "not-supported", "this interaction is not supported"))
}

// read serves one resource. With a grant, a type the scopes do not cover is 403 and a resource outside the
// patient's compartment is 404, as if it did not exist.
func (s *Site) read(r *http.Request, typ, id string, grant *accessGrant) *response {
	res := s.store.get(typ, id)
	if grant != nil {
		if !grant.canRead(typ, res) {
			return forbidden(errForbidden("the access token's scopes do not cover reading this resource type"))
		}
		if res != nil && !grant.visible(res) {
			res = nil
		}
	}
	if res == nil {
		return errorResponse(errorf(http.StatusNotFound, "not-found", "resource not found"))
	}
	if typ == "Binary" && res.binary != nil && !wantsFHIRJSON(r) {
		return &response{status: http.StatusOK, contentType: res.binary.contentType, body: res.binary.data}
	}
	b := appendResource(nil, res, jsonStringContent(s.base(r)))
	return jsonResponse(http.StatusOK, b)
}

// wantsFHIRJSON reports whether a Binary read asks for the Binary resource rather than its raw content.
func wantsFHIRJSON(r *http.Request) bool {
	if f := r.URL.Query().Get("_format"); strings.Contains(f, "json") {
		return true
	}
	for _, a := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(a, ",") {
			mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
			mt = strings.ToLower(strings.TrimSpace(mt))
			if mt == "application/fhir+json" || mt == "application/json" || mt == "application/json+fhir" {
				return true
			}
		}
	}
	return false
}

// preferStrict reports Prefer: handling=strict.
func preferStrict(h http.Header) bool {
	for _, v := range h.Values("Prefer") {
		for part := range strings.FieldsFuncSeq(v, func(r rune) bool { return r == ',' || r == ';' }) {
			if strings.EqualFold(strings.ReplaceAll(part, " ", ""), "handling=strict") {
				return true
			}
		}
	}
	return false
}

// search runs a type search. With a grant, a type the scopes do not cover for search is 403, a search naming
// another patient is 403, results are limited to the grant's patient (a search without a patient parameter is
// restricted rather than refused), and _include'd resources the grant does not cover are left out.
func (s *Site) search(r *http.Request, typ string, post bool, grant *accessGrant) *response {
	if grant != nil && !grant.perms.canSearch(typ) {
		return forbidden(errForbidden("the access token's scopes do not cover searching this resource type"))
	}
	params, err := parseQueryString(r.URL.RawQuery)
	if err != nil {
		return errorResponse(err)
	}
	if post {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/x-www-form-urlencoded" {
			return errorResponse(errorf(http.StatusUnsupportedMediaType, "not-supported",
				"_search needs an application/x-www-form-urlencoded body"))
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxFormBody+1))
		if err != nil {
			return errorResponse(errorf(http.StatusBadRequest, "invalid", "could not read the request body"))
		}
		if len(body) > maxFormBody {
			return errorResponse(errorf(http.StatusRequestEntityTooLarge, "too-costly", "request body too large"))
		}
		form, err := parseQueryString(string(body))
		if err != nil {
			return errorResponse(err)
		}
		params = append(params, form...)
	}
	if grant != nil {
		if err := grant.checkSearchParams(typ, params); err != nil {
			return forbidden(err)
		}
	}
	q, err := s.parseSearch(typ, params, preferStrict(r.Header))
	if err != nil {
		return errorResponse(err)
	}
	if grant != nil {
		grant.restrict(q, typ)
	}
	matches := q.run(s.store.types[typ])
	total := len(matches)
	lo := min(q.offset, total)
	hi := min(lo+q.count, total)
	page := matches[lo:hi]
	var included []*resource
	if q.include {
		seen := map[*resource]bool{}
		for _, m := range page {
			for _, ref := range m.results {
				t, id, ok := strings.Cut(ref, "/")
				if !ok || t != "Observation" {
					continue
				}
				if o := s.store.get(t, id); o != nil && !seen[o] && (grant == nil || grant.canInclude(o)) {
					seen[o] = true
					included = append(included, o)
				}
			}
		}
	}
	return jsonResponse(http.StatusOK, s.searchset(r, typ, q, total, page, included))
}

// searchset renders a searchset Bundle from stored raw JSON, without re-encoding any resource.
func (s *Site) searchset(r *http.Request, typ string, q *searchQuery, total int, page, included []*resource) []byte {
	base := s.base(r)
	baseJS := jsonStringContent(base)
	// Size the page up front: a large page would otherwise be copied a dozen times as it grows.
	size := 4096
	for _, list := range [][]*resource{page, included} {
		for _, res := range list {
			size += len(res.raw) + (len(res.holes)+1)*len(baseJS) + len(res.typ) + len(res.id) + 64
		}
	}
	b := make([]byte, 0, size)
	b = append(b, `{"resourceType":"Bundle","type":"searchset"`...)
	if !q.omitTotal {
		b = append(b, `,"total":`...)
		b = strconv.AppendInt(b, int64(total), 10)
	}
	link := func(b []byte, first bool, rel string, offset int, withPaging bool) []byte {
		if !first {
			b = append(b, ',')
		}
		b = append(b, `{"relation":`...)
		b = append(b, quote(rel)...)
		b = append(b, `,"url":`...)
		b = append(b, quote(searchURL(base, typ, q, offset, withPaging))...)
		return append(b, '}')
	}
	b = append(b, `,"link":[`...)
	b = link(b, true, "self", q.offset, false)
	if q.count > 0 {
		b = link(b, false, "first", 0, true)
		if q.offset > 0 {
			b = link(b, false, "previous", max(0, q.offset-q.count), true)
		}
		if q.offset+q.count < total {
			b = link(b, false, "next", q.offset+q.count, true)
		}
	}
	b = append(b, ']')
	if len(page)+len(included) > 0 {
		b = append(b, `,"entry":[`...)
		for i, res := range page {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendEntry(b, res, baseJS, "match")
		}
		for i, res := range included {
			if i > 0 || len(page) > 0 {
				b = append(b, ',')
			}
			b = appendEntry(b, res, baseJS, "include")
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func appendEntry(b []byte, res *resource, baseJS, mode string) []byte {
	b = append(b, `{"fullUrl":"`...)
	b = append(b, baseJS...)
	b = append(b, '/')
	b = append(b, res.typ...)
	b = append(b, '/')
	b = append(b, res.id...) // validated FHIR id: no characters that need escaping
	b = append(b, `","resource":`...)
	b = appendResource(b, res, baseJS)
	b = append(b, `,"search":{"mode":"`...)
	b = append(b, mode...)
	return append(b, `"}}`...)
}

// appendResource writes the stored JSON, inserting the base URL at each hole.
func appendResource(b []byte, res *resource, baseJS string) []byte {
	prev := 0
	for _, h := range res.holes {
		b = append(b, res.raw[prev:h]...)
		b = append(b, baseJS...)
		prev = h
	}
	return append(b, res.raw[prev:]...)
}

// jsonStringContent escapes s for use inside a JSON string literal (without the quotes).
func jsonStringContent(s string) string {
	q := quote(s)
	return string(q[1 : len(q)-1])
}

// searchURL builds a self or paging link: the kept parameters in request order, then _count and the offset.
func searchURL(base, typ string, q *searchQuery, offset int, paging bool) string {
	var sb strings.Builder
	sb.WriteString(base)
	sb.WriteByte('/')
	sb.WriteString(typ)
	params := q.kept
	if paging || q.countGiven {
		params = append(params[:len(params):len(params)], kv{"_count", strconv.Itoa(q.count)})
	}
	if paging || offset > 0 {
		params = append(params[:len(params):len(params)], kv{offsetParam, strconv.Itoa(offset)})
	}
	for i, p := range params {
		if i == 0 {
			sb.WriteByte('?')
		} else {
			sb.WriteByte('&')
		}
		sb.WriteString(queryEscape(p.key))
		sb.WriteByte('=')
		sb.WriteString(queryEscape(p.value))
	}
	return sb.String()
}

// queryEscape escapes a query component but leaves the FHIR search punctuation : | , / readable.
func queryEscape(s string) string {
	return strings.NewReplacer("%3A", ":", "%7C", "|", "%2C", ",", "%2F", "/").Replace(url.QueryEscape(s))
}

// sleepCtx waits for d or until ctx is done, reporting whether the full wait elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
