package sandbox

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// defaultSlowChunk is the SlowBody chunk size when Fault.ChunkSize is zero.
const defaultSlowChunk = 512

// Fault describes one misbehaviour of a site. Effects combine: Latency is always added first; Status replaces the
// real response with an OperationOutcome; Body then replaces and Rewrite then transforms whatever body is left;
// ContentType and RetryAfter set headers; TruncateAfter and SlowBody change how the body is written.
type Fault struct {
	// Path selects requests whose path relative to the base, plus "?query" if any, starts with it: "" matches
	// every request, "metadata" the CapabilityStatement, "DiagnosticReport" every DiagnosticReport read and
	// search, "DiagnosticReport?" only searches.
	Path string
	// Times is how many matching requests the fault affects before it is used up; 0 (or less) means forever.
	Times int
	// Latency is added before responding (cut short if the client goes away).
	Latency time.Duration
	// Status, if set, replaces the real response with this status and an OperationOutcome body.
	Status int
	// RetryAfter is sent as the Retry-After header.
	RetryAfter string
	// ContentType overrides the response Content-Type.
	ContentType string
	// Body, if non-nil, replaces the response body entirely (HTML error pages, deeply nested or huge JSON).
	Body []byte
	// Rewrite transforms the response body (e.g. to point next links at another host).
	Rewrite func([]byte) []byte
	// TruncateAfter, if positive and shorter than the body, sends the full Content-Length but only this many body
	// bytes, then aborts the connection: the client sees an unexpected EOF.
	TruncateAfter int
	// SlowBody writes the body in chunks of ChunkSize bytes (0 means 512), flushing each and waiting this long
	// between them.
	SlowBody  time.Duration
	ChunkSize int
}

// latencyOnly reports whether the fault only delays, so that it combines with whatever comes next.
func (f *Fault) latencyOnly() bool {
	return f.Status == 0 && f.RetryAfter == "" && f.ContentType == "" && f.Body == nil && f.Rewrite == nil &&
		f.TruncateAfter <= 0 && f.SlowBody <= 0
}

// apply changes a built response as the fault says (everything except latency and the way the body is written).
func (f *Fault) apply(resp *response) *response {
	if f.Body != nil {
		resp.body = f.Body
	}
	if f.Rewrite != nil {
		resp.body = f.Rewrite(resp.body)
	}
	if f.ContentType != "" {
		resp.contentType = f.ContentType
	}
	if f.RetryAfter != "" {
		if resp.header == nil {
			resp.header = http.Header{}
		}
		resp.header.Set("Retry-After", f.RetryAfter)
	}
	return resp
}

type faultState struct {
	fault Fault
	left  int // remaining uses; ignored when forever
}

// Faults is a site's ordered list of injected faults. It is safe for concurrent use; the zero value has none.
type Faults struct {
	mu   sync.Mutex
	list []*faultState
}

// Add appends a fault. Faults are tried in the order added.
func (f *Faults) Add(fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = append(f.list, &faultState{fault: fault, left: fault.Times})
}

// Reset removes every fault.
func (f *Faults) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = nil
}

// take consumes the faults that apply to a request: every matching latency-only fault up to and including the
// first matching fault with another effect. It returns the summed latency and that fault, if any.
func (f *Faults) take(target string) (time.Duration, *Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var latency time.Duration
	kept := f.list[:0]
	var effect *Fault
	for _, st := range f.list {
		if effect == nil && strings.HasPrefix(target, st.fault.Path) {
			latency += st.fault.Latency
			if !st.fault.latencyOnly() {
				c := st.fault
				effect = &c
			}
			if st.fault.Times > 0 {
				st.left--
				if st.left <= 0 {
					continue // used up
				}
			}
		}
		kept = append(kept, st)
	}
	clear(f.list[len(kept):])
	f.list = kept
	return latency, effect
}

// writeResponse sends resp, honouring a fault's TruncateAfter and SlowBody.
func writeResponse(w http.ResponseWriter, r *http.Request, resp *response, f *Fault) {
	h := w.Header()
	for k, vs := range resp.header {
		h[k] = vs
	}
	h.Set("Content-Type", resp.contentType)
	h.Set("Content-Length", strconv.Itoa(len(resp.body)))
	w.WriteHeader(resp.status)

	body := resp.body
	truncate := f != nil && f.TruncateAfter > 0 && f.TruncateAfter < len(body)
	if truncate {
		body = body[:f.TruncateAfter]
	}
	rc := http.NewResponseController(w)
	if f != nil && f.SlowBody > 0 {
		chunk := f.ChunkSize
		if chunk <= 0 {
			chunk = defaultSlowChunk
		}
		for len(body) > 0 {
			n := min(chunk, len(body))
			if _, err := w.Write(body[:n]); err != nil { //nolint:gosec // G705: a FHIR response the handler built, sent with its own Content-Type (JSON, or a Binary's)
				return
			}
			_ = rc.Flush()
			body = body[n:]
			if len(body) > 0 && !sleepCtx(r.Context(), f.SlowBody) {
				return
			}
		}
	} else if _, err := w.Write(body); err != nil { //nolint:gosec // G705: as above
		return
	}
	if truncate {
		_ = rc.Flush()
		panic(http.ErrAbortHandler) // net/http closes the connection mid-body without logging a stack
	}
}
