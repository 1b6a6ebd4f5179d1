package api

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	cryptorand "crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"secondlook/fhir/deid"
	"secondlook/packet"
	"secondlook/store"
	"secondlook/store/storetest"
)

// downloadLoad fetches url from 64 goroutines (32 × GOMAXPROCS 2) over keep-alive connections and reports
// throughput and latency percentiles.
func downloadLoad(b *testing.B, url string, header http.Header) {
	tr := &http.Transport{MaxIdleConnsPerHost: 128, DisableCompression: true}
	client := &http.Client{Transport: tr}
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(32)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			req, _ := http.NewRequest("GET", url, nil)
			for k, v := range header {
				req.Header[k] = v
			}
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}

// newAPIEnvB is newAPIEnv for benchmarks: the real Redis at REDIS_URL (or 127.0.0.1:6379) under a fresh prefix,
// and a real packet (Todd315's records de-identified, signed) in place of the small test bundle.
func newAPIEnvB(b *testing.B) (*apiEnv, string, []byte) { return newAPIEnvLoad(b) }

func newAPIEnvLoad(b testing.TB) (*apiEnv, string, []byte) {
	st := storetest.OpenRealRedis(b)
	rdb := st.Client()
	// As the gateway serves: every request is counted against its caller's shared rate bucket, with the default
	// burst (so a replica leases DefaultCallerBurst/10 events per round trip to Redis, as in production), at a rate
	// no load here reaches, so the limit is paid for and never refuses.
	e := newAPIEnvLogging(b, st, io.Discard, func(rc *ReviewsConfig) { rc.Limiter, rc.CallerRate, rc.CallerBurst = st, 1e7, DefaultCallerBurst })
	e.redisCPU = func(ctx context.Context) time.Duration { return storetest.ServerCPU(ctx, rdb) }
	raw, err := os.ReadFile("../testdata/synthea/Todd315_Stamm704_0ce18c7d-fd78-46d9-81b5-8bed231c337a.json")
	if err != nil {
		b.Fatal(err)
	}
	res, err := deid.Deidentify(raw, deid.Options{Key: deid.Key{ID: "k", Secret: bytes.Repeat([]byte("k"), 32)}, Scope: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), cryptorand.Reader)
	pkt, err := packet.Build(packet.Input{ID: "6f1c1a52-3a6e-4c43-9d1a-7d0a3f3b2c11", Created: time.Now(), Records: [][]byte{res.Bundle},
		Sources: []packet.Source{{Kind: "hospital", Retrieved: true}}, Profile: "safe-harbor", ProfileVersion: "1",
		Check: res.Scanner.Scan}, packet.Signer{Key: key, KeyID: "s"})
	if err != nil {
		b.Fatal(err)
	}
	r, _ := readyReview(b, e, "onco")
	// Replace the small test packet with the real one.
	if err := e.store.DeletePacket(context.Background(), r.ID); err != nil {
		b.Fatal(err)
	}
	if _, err := e.store.SavePacket(context.Background(), store.StoredPacket{ID: pkt.ID, ReviewID: r.ID, Provider: "onco", ETag: pkt.ETag,
		Created: time.Now(), Report: []byte("{}")}, pkt.Bundle, r.ExpiresAt); err != nil {
		b.Fatal(err)
	}
	return e, r.ID, pkt.Bundle
}

// BenchmarkPacketDownload downloads a real packet (Todd315's, de-identified and signed by the assembly path's
// parts) through the provider API: bearer JWT verification, access check, audit append and the gzip bytes from
// Redis. BenchmarkPacketDownloadBare serves the same bytes from memory with a bare net/http handler.
func BenchmarkPacketDownload(b *testing.B) {
	e, id, _ := newAPIEnvB(b)
	p, err := e.store.GetPacket(context.Background(), id)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(p.Gzip)))
	tok := e.issuer.Token(b, "onco", audience, nil)
	downloadLoad(b, e.srv.URL+"/api/v1/packets/"+id, http.Header{"Authorization": {"Bearer " + tok}, "Accept-Encoding": {"gzip"}})
}

func BenchmarkPacketDownloadBare(b *testing.B) {
	e, id, _ := newAPIEnvB(b)
	p, err := e.store.GetPacket(context.Background(), id)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(p.Gzip)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", strconv.Itoa(len(p.Gzip)))
		_, _ = w.Write(p.Gzip)
	}))
	defer srv.Close()
	// The very requests the gateway gets (path, bearer token, Accept-Encoding): the comparison is of the servers,
	// so the baseline parses the same request bytes and only the handling differs.
	tok := e.issuer.Token(b, "onco", audience, nil)
	downloadLoad(b, srv.URL+"/api/v1/packets/"+id, http.Header{"Authorization": {"Bearer " + tok}, "Accept-Encoding": {"gzip"}})
}

// BenchmarkPacketHandler serves one packet read through the gateway's handler with no network in between: the
// CPU the gateway spends on a read (token check, access decision, audit append round trip, headers, log line).
func BenchmarkPacketHandler(b *testing.B) {
	e, id, _ := newAPIEnvB(b)
	tok := e.issuer.Token(b, "onco", audience, nil)
	h := e.srv.Config.Handler
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("GET", "/api/v1/packets/"+id, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Accept-Encoding", "gzip")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Errorf("status %d", w.Code)
				return
			}
		}
	})
}
