package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
)

// TestLoadPacketDownload measures packet download with wrk, in its own process (64 connections, 2 threads), against
// the gateway and against a bare net/http handler serving the same bytes. It runs only when LOAD=1, and prints the
// figures recorded in docs/benchmarks.md:
//
//	LOAD=1 LOAD_DURATION=20s go test -run TestLoadPacketDownload -v ./api
func TestLoadPacketDownload(t *testing.T) {
	if os.Getenv("LOAD") == "" {
		t.Skip("set LOAD=1 to run the load test (needs wrk)")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Skip("wrk not installed (apt-get install -y wrk)")
	}
	duration := os.Getenv("LOAD_DURATION")
	if duration == "" {
		duration = "20s"
	}
	e, id, _ := newAPIEnvLoad(t)
	p, err := e.store.GetPacket(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", strconv.Itoa(len(p.Gzip)))
		_, _ = w.Write(p.Gzip)
	}))
	defer bare.Close()
	tok := e.issuer.Token(t, "onco", audience, nil)
	run := func(name, url string, headers ...string) {
		args := []string{"-t2", "-c64", "-d" + duration, "--latency"}
		for _, h := range headers {
			args = append(args, "-H", h)
		}
		out, err := exec.Command("wrk", append(args, url)...).CombinedOutput()
		if err != nil {
			t.Fatalf("wrk: %v\n%s", err, out)
		}
		rps := regexp.MustCompile(`Requests/sec:\s+([\d.]+)`).FindSubmatch(out)
		p50 := regexp.MustCompile(`(?m)^\s+50%\s+(\S+)`).FindSubmatch(out)
		p99 := regexp.MustCompile(`(?m)^\s+99%\s+(\S+)`).FindSubmatch(out)
		non2xx := regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`).FindSubmatch(out)
		if non2xx != nil {
			t.Errorf("%s: %s non-2xx responses", name, non2xx[1])
		}
		if rps == nil || p50 == nil || p99 == nil {
			t.Fatalf("wrk output:\n%s", out)
		}
		fmt.Printf("%-8s %10s req/s  p50 %8s  p99 %8s  (%d-byte gzip packet)\n", name, rps[1], p50[1], p99[1], len(p.Gzip))
	}
	run("gateway", e.srv.URL+"/api/v1/packets/"+id, "Authorization: Bearer "+tok, "Accept-Encoding: gzip")
	run("bare", bare.URL, "Accept-Encoding: gzip")
}
