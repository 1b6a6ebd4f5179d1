package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"secondlook/caller/callertest"
	"secondlook/internal/heapwatch"
	"secondlook/store"
)

// maxLoadHeap bounds the gateway's heap during the load runs: the packet cache is 64 MiB, the rest is per
// connection and per request and must not grow with the run's length.
const maxLoadHeap = 512 << 20

// TestLoad drives the provider and EHR APIs with wrk, in its own process, at 64 and 256 connections: review status
// polling (GET /api/v1/reviews/{id}, 200 reviews in turn) and packet download (GET /api/v1/packets/{id}, Todd315's
// real packet in each of the 200), then the bare net/http handler serving the same packet bytes for comparison.
// It fails on any socket error or non-2xx answer, and if the heap grows past maxLoadHeap. It runs only when LOAD=1
// (CI runs it briefly as a smoke test); the figures in docs/benchmarks.md come from:
//
//	LOAD=1 LOAD_DURATION=60s go test -run TestLoad -v ./api
func TestLoad(t *testing.T) {
	if os.Getenv("LOAD") == "" {
		t.Skip("set LOAD=1 to run the load test (needs wrk)")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("wrk not installed (.ci/run installs it)")
		}
		t.Skip("wrk not installed (apt-get install -y wrk)")
	}
	duration := os.Getenv("LOAD_DURATION")
	if duration == "" {
		duration = "60s"
	}
	e, id, _ := newAPIEnvLoad(t)
	ctx := context.Background()
	p, err := e.store.GetPacket(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := p.Bundle()
	if err != nil {
		t.Fatal(err)
	}
	// 200 ready reviews, each with the real packet.
	var ids []string
	for range 200 {
		r, _ := readyReview(t, e, "onco")
		if err := e.store.DeletePacket(ctx, r.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.SavePacket(ctx, store.StoredPacket{ID: "p-" + r.ID, ReviewID: r.ID, Provider: "onco", ETag: p.ETag,
			Created: time.Now(), Report: []byte("{}")}, bundle, r.ExpiresAt); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", strconv.Itoa(len(p.Gzip)))
		_, _ = w.Write(p.Gzip)
	}))
	defer bare.Close()
	script := func(prefix string) string {
		var b strings.Builder
		b.WriteString("paths = {")
		for i, id := range ids {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%q", prefix+id)
		}
		b.WriteString("}\nn = 0\nrequest = function()\n  n = n + 1\n  return wrk.format(nil, paths[(n % #paths) + 1])\nend\n")
		f := filepath.Join(t.TempDir(), "paths.lua")
		if err := os.WriteFile(f, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	reviewsScript, packetsScript := script("/api/v1/reviews/"), script("/api/v1/packets/")
	// Tokens that outlast the runs (the gateway caps lifetimes at an hour).
	long := func(c *callertest.Claims) { c.Expiry = jwt.NewNumericDate(time.Now().Add(30 * time.Minute)) }
	ehr, onco := e.issuer.Token(t, "ehr-1", audience, long), e.issuer.Token(t, "onco", audience, long)

	fmt.Printf("%-26s %5s %10s %9s %9s %10s %26s\n", "target", "conns", "req/s", "p50", "p99", "peak heap", "CPU µs/req: server redis wrk")
	connections := []int{64, 256}
	if v := os.Getenv("LOAD_CONNS"); v != "" { // e.g. LOAD_CONNS=64 for a quicker comparison
		connections = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				t.Fatalf("LOAD_CONNS: %q is not a number of connections", f)
			}
			connections = append(connections, n)
		}
	}
	for _, conns := range connections {
		for _, tc := range []struct {
			name, url, script string
			headers           []string
		}{
			{"review status polling", e.srv.URL, reviewsScript, []string{"Authorization: Bearer " + ehr}},
			{"packet download", e.srv.URL, packetsScript, []string{"Authorization: Bearer " + onco, "Accept-Encoding: gzip"}},
			// The baseline gets the very requests the packet download sends (the same paths in turn, the bearer
			// token, Accept-Encoding), so that wrk does the same work in both runs and only the servers differ.
			{"bare handler, same bytes", bare.URL, packetsScript, []string{"Authorization: Bearer " + onco, "Accept-Encoding: gzip"}},
		} {
			if !selected(tc.name) {
				continue
			}
			args := []string{"-t2", "-c" + strconv.Itoa(conns), "-d" + duration, "--latency", "--timeout", "10s"}
			if tc.script != "" {
				args = append(args, "-s", tc.script)
			}
			for _, h := range tc.headers {
				args = append(args, "-H", h)
			}
			runtime.GC()
			stop := heapwatch.Start()
			self0, redis0 := processCPU(), e.redisCPU(ctx)
			cmd := exec.Command("wrk", append(args, tc.url)...)
			out, err := cmd.CombinedOutput()
			self, redis := processCPU()-self0, e.redisCPU(ctx)-redis0
			heap := stop()
			if err != nil {
				t.Fatalf("wrk: %v\n%s", err, out)
			}
			rps := regexp.MustCompile(`Requests/sec:\s+([\d.]+)`).FindSubmatch(out)
			p50 := regexp.MustCompile(`(?m)^\s+50%\s+(\S+)`).FindSubmatch(out)
			p99 := regexp.MustCompile(`(?m)^\s+99%\s+(\S+)`).FindSubmatch(out)
			if rps == nil || p50 == nil || p99 == nil {
				t.Fatalf("wrk output:\n%s", out)
			}
			if m := regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`).FindSubmatch(out); m != nil {
				t.Errorf("%s at %d connections: %s non-2xx responses", tc.name, conns, m[1])
			}
			if m := regexp.MustCompile(`Socket errors: .*`).Find(out); m != nil {
				t.Errorf("%s at %d connections: %s", tc.name, conns, m)
			}
			if heap > maxLoadHeap {
				t.Errorf("%s at %d connections: heap reached %d MiB", tc.name, conns, heap>>20)
			}
			// CPU per request of the server process (this test's), of Redis (from INFO) and of wrk: the three share
			// the machine's processors, so a cost moved from one to another shows here and not in req/s alone.
			wrkCPU := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			n := requestsIn(out)
			perReq := func(d time.Duration) float64 { return float64(d.Microseconds()) / max(float64(n), 1) }
			fmt.Printf("%-26s %5d %10s %9s %9s %7d MiB %12.1f %6.1f %5.1f\n", tc.name, conns, rps[1], p50[1], p99[1], heap>>20,
				perReq(self), perReq(redis), perReq(wrkCPU))
		}
	}
}

// processCPU is the CPU time this process has used (user and system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// requestsIn reads the number of requests wrk completed from its summary ("N requests in ...").
func requestsIn(out []byte) int64 {
	m := regexp.MustCompile(`(\d+) requests in`).FindSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}

// selected reports whether a run is named by LOAD_ONLY (comma-separated parts of run names, e.g.
// LOAD_ONLY=packet,bare); with LOAD_ONLY unset, every run is.
func selected(name string) bool {
	only := os.Getenv("LOAD_ONLY")
	if only == "" {
		return true
	}
	for _, part := range strings.Split(only, ",") {
		if part = strings.TrimSpace(part); part != "" && strings.Contains(name, part) {
			return true
		}
	}
	return false
}
