package sandbox

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFaults(t *testing.T) {
	bundles, err := DefaultBundles()
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, Options{Sites: []SiteOptions{{Name: "hospital", Bundles: bundles}}})
	site := ts.srv.Site("hospital")
	base := ts.base("hospital")
	search := u(base, "DiagnosticReport", "patient", toddID, "_count", "5")
	read := base + "/Patient/" + toddID

	t.Run("status, Retry-After and Times", func(t *testing.T) {
		site.Faults().Reset()
		site.Faults().Add(Fault{Path: "DiagnosticReport", Times: 2, Status: http.StatusTooManyRequests, RetryAfter: "3"})
		before := site.Requests()
		if r := ts.get(t, base+"/metadata"); r.status != http.StatusOK {
			t.Errorf("metadata hit by a DiagnosticReport fault: %d", r.status)
		}
		for i := range 2 {
			r := ts.get(t, search)
			if code := operationOutcomeCode(t, r); r.status != http.StatusTooManyRequests || code != "throttled" || r.header.Get("Retry-After") != "3" {
				t.Errorf("request %d: %d %q Retry-After %q, want 429 throttled 3", i, r.status, code, r.header.Get("Retry-After"))
			}
		}
		if r := ts.get(t, search); r.status != http.StatusOK {
			t.Errorf("after Times ran out: %d, want 200", r.status)
		}
		if got := site.Requests() - before; got != 4 {
			t.Errorf("Requests grew by %d, want 4 (faulted requests count)", got)
		}
	})

	t.Run("order of faults and Reset", func(t *testing.T) {
		site.Faults().Reset()
		site.Faults().Add(Fault{Times: 1, Status: http.StatusInternalServerError})
		site.Faults().Add(Fault{Status: http.StatusServiceUnavailable})
		var got []int
		for range 3 {
			got = append(got, ts.get(t, read).status)
		}
		if want := []int{500, 503, 503}; !slices.Equal(got, want) {
			t.Errorf("statuses %v, want %v", got, want)
		}
		site.Faults().Reset()
		if r := ts.get(t, read); r.status != http.StatusOK {
			t.Errorf("after Reset: %d", r.status)
		}
	})

	t.Run("path prefix includes the query", func(t *testing.T) {
		site.Faults().Reset()
		defer site.Faults().Reset()
		dr := site.store.types["DiagnosticReport"].byPatient[toddID][0].id
		site.Faults().Add(Fault{Path: "DiagnosticReport?", Status: http.StatusBadRequest})
		if r := ts.get(t, base+"/DiagnosticReport/"+dr); r.status != http.StatusOK {
			t.Errorf("read hit by a search-only fault: %d", r.status)
		}
		if r := ts.get(t, search); r.status != http.StatusBadRequest {
			t.Errorf("search not hit: %d", r.status)
		}
	})

	t.Run("latency", func(t *testing.T) {
		site.Faults().Reset()
		site.Faults().Add(Fault{Path: "metadata", Times: 1, Latency: 150 * time.Millisecond})
		start := time.Now()
		r := ts.get(t, base+"/metadata")
		if el := time.Since(start); el < 150*time.Millisecond || r.status != http.StatusOK || !bytes.Contains(r.body, []byte("CapabilityStatement")) {
			t.Errorf("latency-only fault: %v elapsed, status %d", el, r.status)
		}
		// A latency-only fault combines with the next matching fault.
		site.Faults().Add(Fault{Times: 1, Latency: 100 * time.Millisecond})
		site.Faults().Add(Fault{Times: 1, Status: http.StatusServiceUnavailable})
		start = time.Now()
		r = ts.get(t, read)
		if el := time.Since(start); el < 100*time.Millisecond || r.status != http.StatusServiceUnavailable {
			t.Errorf("latency + status: %v elapsed, status %d", el, r.status)
		}
		// A client that gives up is not held for the whole latency.
		site.Faults().Add(Fault{Times: 1, Latency: 5 * time.Second})
		client := &http.Client{Timeout: 100 * time.Millisecond}
		start = time.Now()
		if _, _, _, err := fetchRaw(client, read); err == nil {
			t.Error("client timeout did not fire during a 5s latency")
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("client waited %v", el)
		}
	})

	t.Run("replaced body and content type", func(t *testing.T) {
		site.Faults().Reset()
		html := []byte("<html><body>502 Bad Gateway</body></html>")
		site.Faults().Add(Fault{Times: 1, Status: http.StatusBadGateway, ContentType: "text/html", Body: html})
		r := ts.get(t, read)
		if r.status != http.StatusBadGateway || r.header.Get("Content-Type") != "text/html" || !bytes.Equal(r.body, html) {
			t.Errorf("HTML error page: %d %q %q", r.status, r.header.Get("Content-Type"), r.body)
		}
		deep := []byte(strings.Repeat("[", 20000) + strings.Repeat("]", 20000))
		site.Faults().Add(Fault{Times: 1, Body: deep})
		r = ts.get(t, search)
		if r.status != http.StatusOK || r.header.Get("Content-Type") != fhirJSON || !bytes.Equal(r.body, deep) {
			t.Errorf("body replacement on a real response: %d %q, %d bytes", r.status, r.header.Get("Content-Type"), len(r.body))
		}
	})

	t.Run("rewrite", func(t *testing.T) {
		site.Faults().Reset()
		site.Faults().Add(Fault{Path: "DiagnosticReport", Times: 1, Rewrite: func(b []byte) []byte {
			return bytes.ReplaceAll(b, []byte(ts.http.URL), []byte("http://attacker.example"))
		}})
		b := decodeSearchset(t, ts.get(t, search))
		if next := b.link("next"); !strings.HasPrefix(next, "http://attacker.example/hospital/fhir/DiagnosticReport?") {
			t.Errorf("rewritten next link %q", next)
		}
		if b = decodeSearchset(t, ts.get(t, search)); !strings.HasPrefix(b.link("next"), ts.http.URL) {
			t.Errorf("rewrite outlived Times: %q", b.link("next"))
		}
	})

	t.Run("truncate", func(t *testing.T) {
		site.Faults().Reset()
		site.Faults().Add(Fault{Path: "Patient/", Times: 1, TruncateAfter: 100})
		status, _, body, err := fetchRaw(ts.client, read)
		if status != http.StatusOK || !errors.Is(err, io.ErrUnexpectedEOF) || len(body) != 100 {
			t.Errorf("truncated read: status %d, %d bytes, err %v; want 200, 100 bytes, unexpected EOF", status, len(body), err)
		}
		if r := ts.get(t, read); r.status != http.StatusOK || !bytes.Contains(r.body, []byte(toddID)) {
			t.Errorf("the server does not recover after a truncation: %d", r.status)
		}
	})

	t.Run("slow body", func(t *testing.T) {
		site.Faults().Reset()
		want := ts.get(t, base+"/metadata").body
		chunks := (len(want) + 511) / 512
		site.Faults().Add(Fault{Path: "metadata", Times: 1, SlowBody: 30 * time.Millisecond})
		start := time.Now()
		r := ts.get(t, base+"/metadata")
		if el, least := time.Since(start), time.Duration(chunks-1)*30*time.Millisecond; el < least || !bytes.Equal(r.body, want) {
			t.Errorf("slow body: %v elapsed (want at least %v), body intact %v", el, least, bytes.Equal(r.body, want))
		}
		// Headers come at once; the body outlasts a short client timeout.
		site.Faults().Add(Fault{Path: "metadata", Times: 1, SlowBody: 200 * time.Millisecond, ChunkSize: 64})
		client := &http.Client{Timeout: 300 * time.Millisecond}
		status, _, _, err := fetchRaw(client, base+"/metadata")
		if status != http.StatusOK || err == nil {
			t.Errorf("slow body with client timeout: status %d err %v, want 200 then a read error", status, err)
		}
	})

	t.Run("concurrent consumption", func(t *testing.T) {
		site.Faults().Reset()
		site.Faults().Add(Fault{Times: 5, Status: http.StatusServiceUnavailable})
		before := site.Requests()
		var mu sync.Mutex
		faulted := 0
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				status, _, _, err := fetchRaw(ts.client, base+"/metadata")
				if err != nil {
					t.Errorf("request: %v", err)
				}
				mu.Lock()
				defer mu.Unlock()
				if status == http.StatusServiceUnavailable {
					faulted++
				}
			})
		}
		wg.Wait()
		if faulted != 5 {
			t.Errorf("%d requests faulted, want exactly 5", faulted)
		}
		if got := site.Requests() - before; got != 20 {
			t.Errorf("Requests grew by %d, want 20", got)
		}
	})
}

// fetchRaw does a GET and returns whatever arrived, with the body read error (if any).
func fetchRaw(client *http.Client, url string) (int, http.Header, []byte, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}
