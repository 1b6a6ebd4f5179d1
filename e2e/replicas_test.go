package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"secondlook/caller/callertest"
	"secondlook/demo"
	"secondlook/internal/syncbuf"
	"secondlook/packet"
	"secondlook/sandbox"
	"secondlook/store"
)

// The clients the test's token issuer vouches for, and the audience the gateways expect.
const (
	ehrClient      = "ehr-1"
	providerClient = "onco"
	audience       = "https://gateway.test"
	// clientSecret is the gateways' client secret at both sandbox sites; the test checks it never reaches a log.
	clientSecret = "e2e-client-secret-not-for-logs"
	// visibility is assembly.visibility: the configuration's minimum, so a dead worker's job is taken over soon.
	visibility = 10 * time.Second
	// slowSearch delays every DiagnosticReport request at both sites while a test wants an assembly in progress.
	slowSearch = 5 * time.Second
)

var sources = []string{"hospital", "province"}

// TestReplicasFinishAKilledWorkersJob runs three gateway processes that share nothing but Redis: the review is
// created through A, the patient consents through B, and C, the only replica with workers, starts assembling. C is
// killed with SIGKILL in the middle of the job; D, started afterwards, takes the job over once the visibility timeout
// has passed and finishes it. Nothing is lost and nothing is packed twice: one packet, verifiable, served by every
// replica; one move to assembling and one to ready in an audit trail whose hash chain holds; no job left in the queue.
func TestReplicasFinishAKilledWorkersJob(t *testing.T) {
	c := newCluster(t)
	c.startRedis()
	a := c.gateway("A", 0)
	b := c.gateway("B", 0) // the public URL: the consent pages and the sources' redirects land here
	c.slowSources()
	cw := c.gateway("C", 1)

	id, consentURL := c.createReview(a)
	if !strings.HasPrefix(consentURL, b.url+"/") {
		t.Fatalf("consent link %q does not lead to replica B", consentURL)
	}
	c.consent(consentURL)

	// C has taken the job and is retrieving (the sources answer slowly): kill it there.
	c.waitReview(a, id, 20*time.Second, func(r reviewView) bool { return r.State == "assembling" && r.Progress == "retrieving" })
	cw.kill()
	c.fastSources()
	if r := c.review(a, id); r.State != "assembling" {
		t.Fatalf("after killing C the review is %s (%s), want assembling: C finished before it was killed", r.State, r.Reason)
	}
	if pending, _ := c.queueDepth(); pending != 1 {
		t.Fatalf("after killing C the queue holds %d unacknowledged jobs, want C's one", pending)
	}

	d := c.gateway("D", 1)
	r := c.waitReview(a, id, visibility+30*time.Second, func(r reviewView) bool { return r.State != "assembling" })
	if r.State != "ready" {
		t.Fatalf("review ended %s (%s), want ready", r.State, r.Reason)
	}

	// Every replica serves the same packet, and it verifies against the keys they publish.
	var seen []string
	for _, g := range []*gateway{a, b, d} {
		id, etag, _ := c.fetchPacket(g)
		seen = append(seen, id+" "+etag)
	}
	if len(slices.Compact(seen)) != 1 {
		t.Errorf("replicas serve different packets: %v", seen)
	}

	if got := c.audit(a, id).states; !slices.Equal(got, []string{"consented", "assembling", "ready"}) {
		t.Errorf("state transitions in the audit trail: %v, want consented, assembling, ready once each", got)
	}
	c.verifyChain(id)
	if pending, delayed := c.queueDepth(); pending != 0 || delayed != 0 {
		t.Errorf("queue after the packet: %d pending, %d delayed; want none", pending, delayed)
	}
	if n := strings.Count(c.logs["C"].String(), `"msg":"review assembled"`); n != 0 {
		t.Errorf("C, killed mid-job, logged %d assemblies", n)
	}
	if n := strings.Count(c.logs["D"].String(), `"msg":"review assembled"`); n != 1 {
		t.Errorf("D logged %d assemblies, want 1", n)
	}
	c.checkLogs()
}

// TestReplicasSurviveRedisRestart kills Redis (append-only file, fsync on every write) with SIGKILL twice and
// restarts it from the same directory: once after the patient consented, while no replica runs workers, and once
// while a worker is assembling. The replicas report themselves unready while Redis is down and ready once it is
// back, and the flow completes: the consents, the grants, the queued job and every audit entry written before each
// crash are still there, and the packet is stored once.
func TestReplicasSurviveRedisRestart(t *testing.T) {
	c := newCluster(t)
	c.startRedis()
	a := c.gateway("A", 0)
	b := c.gateway("B", 0)

	id, consentURL := c.createReview(a)
	done := c.consent(consentURL)
	if r := c.review(a, id); r.State != "consented" {
		t.Fatalf("after consent the review is %s, want consented", r.State)
	}
	if pending, _ := c.queueDepth(); pending != 1 {
		t.Fatalf("after consent the queue holds %d jobs, want 1", pending)
	}
	before := c.audit(a, id)

	// 1. Redis dies with the job queued and nobody to work on it.
	c.restartRedis(id, a, b)
	if status := c.status(a, "/api/v1/reviews/"+id); status != http.StatusOK {
		t.Fatalf("GET review after the restart: HTTP %d", status)
	}
	afterFirst := c.audit(a, id)
	afterFirst.mustExtend(t, before, "first restart")
	if r := c.review(a, id); r.State != "consented" {
		t.Fatalf("after the restart the review is %s, want consented", r.State)
	}
	if pending, _ := c.queueDepth(); pending != 1 {
		t.Fatalf("after the restart the queue holds %d jobs, want the one queued before", pending)
	}
	// The patient's consents survived: the consent page, in a new browser session, shows each source as it did
	// right after the patient approved there, with no link to authorize again.
	c.checkConsentPage(consentURL, done)

	// 2. A worker takes the job that survived, and Redis dies again while it assembles.
	c.slowSources()
	cw := c.gateway("C", 1)
	c.waitReview(a, id, 20*time.Second, func(r reviewView) bool { return r.State == "assembling" && r.Progress == "retrieving" })
	beforeSecond := c.audit(a, id)
	c.fastSources()
	c.restartRedis(id, a, cw)
	r := c.waitReview(a, id, visibility+30*time.Second, func(r reviewView) bool { return r.State != "assembling" })
	if r.State != "ready" {
		t.Fatalf("review ended %s (%s), want ready", r.State, r.Reason)
	}
	// The grants survived both restarts: the packet holds both sources' records (a source without its grant would
	// be retried, then named as missing).
	_, _, pkt := c.fetchPacket(cw)
	if bytes.Contains(pkt, []byte("could not be retrieved")) {
		t.Error("the packet says a source could not be retrieved")
	}

	final := c.audit(a, id)
	final.mustExtend(t, beforeSecond, "second restart")
	final.mustExtend(t, afterFirst, "both restarts")
	if got := final.states; !slices.Equal(got, []string{"consented", "assembling", "ready"}) {
		t.Errorf("state transitions in the audit trail: %v, want consented, assembling, ready once each", got)
	}
	c.verifyChain(id)
	if pending, delayed := c.queueDepth(); pending != 0 || delayed != 0 {
		t.Errorf("queue after the packet: %d pending, %d delayed; want none", pending, delayed)
	}
	c.checkLogs()
}

// cluster is one test's Redis server, sandbox sites, token issuer and gateway processes.
type cluster struct {
	t       *testing.T
	ctx     context.Context
	bin     string
	dir     string
	cfgPath string
	env     []string
	issuer  *callertest.Issuer
	sandbox *sandbox.Server
	http    *http.Client

	redisServer string
	redisAddr   string
	redis       *process
	store       *store.Store
	prefix      string

	addrs map[string]string
	logs  map[string]*syncbuf.Buffer
	order []string
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	redisServer, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is not installed (.ci/run installs it)")
		}
		t.Skip("redis-server is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	c := &cluster{t: t, ctx: ctx, bin: secondlookBinary(t), dir: t.TempDir(), http: &http.Client{Timeout: 30 * time.Second},
		redisServer: redisServer, redisAddr: freeAddr(t), prefix: "e2e:", addrs: map[string]string{}, logs: map[string]*syncbuf.Buffer{}}
	// Registered first, so it runs last: every process has been killed by then and its output is complete.
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("E2E_LOGS") != "" {
			for _, name := range c.order {
				t.Logf("---- output of %s ----\n%s", name, c.logs[name].String())
			}
		}
	})

	bundles, err := sandbox.DefaultBundles()
	if err != nil {
		t.Fatal(err)
	}
	publicURL := "http://" + c.addr("B")
	var sites []sandbox.SiteOptions
	for _, src := range sources {
		sites = append(sites, sandbox.SiteOptions{Name: src, Bundles: bundles, Auth: &sandbox.AuthOptions{Clients: []sandbox.Client{
			{ID: "secondlook", Secret: clientSecret, RedirectURIs: []string{publicURL + "/auth/callback/" + src}},
		}}})
	}
	c.sandbox, err = sandbox.New(sandbox.Options{Sites: sites})
	if err != nil {
		t.Fatal(err)
	}
	sb := httptest.NewServer(c.sandbox.Handler())
	t.Cleanup(sb.Close)
	c.issuer = callertest.NewIssuer(t)

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	sigPath := filepath.Join(c.dir, "signing.pem")
	if err := os.WriteFile(sigPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := func() string { b := make([]byte, 32); _, _ = rand.Read(b); return base64.StdEncoding.EncodeToString(b) }
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SECONDLOOK_") {
			c.env = append(c.env, kv)
		}
	}
	c.env = append(c.env, "E2E_TOKEN_KEY="+secret(), "E2E_DEID_KEY="+secret(), "E2E_CSRF="+secret(), "E2E_CLIENT_SECRET="+clientSecret)
	cfg := `
log: {level: info, format: json}
server:
  public_url: ` + publicURL + `
redis:
  url: redis://` + c.redisAddr + `/0
  prefix: "` + c.prefix + `"
keys:
  token_encryption: [{id: t1, secret: "env:E2E_TOKEN_KEY"}]
  signing: [{id: s1, private_key: "file:` + sigPath + `"}]
  deid: {id: d1, secret: "env:E2E_DEID_KEY"}
  csrf: "env:E2E_CSRF"
callers:
  issuers:
    - id: test
      url: ` + c.issuer.URL + `
      audience: ` + audience + `
      clients:
        - {id: ` + ehrClient + `, name: Test EHR, kind: ehr}
        - {id: ` + providerClient + `, name: Test Oncology, kind: provider}
assembly:
  base_delay: 500ms
  visibility: ` + visibility.String() + `
sources:
  - id: hospital
    name: Sandbox Hospital
    kind: hospital
    fhir_base_url: ` + sb.URL + `/hospital/fhir
    auth: {client_id: secondlook, method: client_secret_basic, client_secret: "env:E2E_CLIENT_SECRET"}
  - id: province
    name: Sandbox Provincial Repository
    kind: provincial
    fhir_base_url: ` + sb.URL + `/province/fhir
    auth: {client_id: secondlook, method: client_secret_basic, client_secret: "env:E2E_CLIENT_SECRET"}
`
	c.cfgPath = filepath.Join(c.dir, "secondlook.yaml")
	if err := os.WriteFile(c.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// addr is the loopback address kept for a named replica, chosen on first use.
func (c *cluster) addr(name string) string {
	if c.addrs[name] == "" {
		c.addrs[name] = freeAddr(c.t)
	}
	return c.addrs[name]
}

// startRedis starts the test's own redis-server, with an append-only file fsynced on every write and no RDB
// snapshots, in the test's directory, and waits until it answers (after loading the file, on a restart).
func (c *cluster) startRedis() {
	c.t.Helper()
	host, port, _ := net.SplitHostPort(c.redisAddr)
	data := filepath.Join(c.dir, "redis")
	if err := os.MkdirAll(data, 0o700); err != nil {
		c.t.Fatal(err)
	}
	c.redis = c.start("redis", nil, c.redisServer, "--bind", host, "--port", port, "--dir", data,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no")
	deadline := time.Now().Add(15 * time.Second)
	for {
		rdb, err := store.Open(c.ctx, "redis://"+c.redisAddr+"/0")
		if err == nil {
			if c.store == nil {
				c.store = store.New(rdb, c.prefix)
				c.t.Cleanup(func() { _ = rdb.Close() })
			} else {
				_ = rdb.Close()
			}
			return
		}
		if time.Now().After(deadline) || c.redis.exited() {
			c.t.Fatalf("redis-server did not come up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// restartRedis kills Redis with SIGKILL, checks that each replica then reports itself unready and answers the
// review's status with a server error (never a 404: the review exists), restarts Redis from the same directory and
// port, and waits until each replica is ready again.
func (c *cluster) restartRedis(reviewID string, replicas ...*gateway) {
	c.t.Helper()
	c.redis.kill()
	for _, g := range replicas {
		c.waitStatus(g, "/readyz", http.StatusServiceUnavailable, 15*time.Second)
		if status := c.status(g, "/api/v1/reviews/"+reviewID); status < 500 {
			c.t.Errorf("GET review through %s while Redis is down: HTTP %d, want a server error", g.name, status)
		}
	}
	c.startRedis()
	for _, g := range replicas {
		c.waitStatus(g, "/readyz", http.StatusOK, 15*time.Second)
	}
}

// gateway is one running `secondlook serve` process.
type gateway struct {
	name string
	url  string
	*process
}

// gateway starts a replica with the shared configuration file, its own listen address and number of workers given
// as environment overrides, and waits until it is ready.
func (c *cluster) gateway(name string, workers int) *gateway {
	c.t.Helper()
	g := &gateway{name: name, url: "http://" + c.addr(name)}
	g.process = c.start(name, []string{"SECONDLOOK_SERVER_ADDR=" + c.addr(name), "SECONDLOOK_ASSEMBLY_WORKERS=" + strconv.Itoa(workers)},
		c.bin, "serve", "--config", c.cfgPath)
	c.waitStatus(g, "/readyz", http.StatusOK, 20*time.Second)
	if !strings.Contains(c.logs[name].String(), `"workers":`+strconv.Itoa(workers)+`}`) {
		c.t.Fatalf("%s does not say it runs %d workers", name, workers)
	}
	return g
}

// process is a child process of the test, killed with SIGKILL when the test ends.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// start runs bin with the cluster's environment plus env, its output kept for the test log.
func (c *cluster) start(name string, env []string, bin string, args ...string) *process {
	c.t.Helper()
	out := c.logs[name]
	if out == nil {
		out = &syncbuf.Buffer{}
		c.logs[name] = out
		c.order = append(c.order, name)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(slices.Clone(c.env), env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	c.t.Cleanup(p.kill)
	return p
}

// kill sends SIGKILL and waits until the process is gone.
func (p *process) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// slowSources makes every DiagnosticReport request at both sites slow, so that an assembly stays in progress
// long enough to be interrupted; fastSources removes the delay.
func (c *cluster) slowSources() {
	for _, src := range sources {
		c.sandbox.Site(src).Faults().Add(sandbox.Fault{Path: "DiagnosticReport", Latency: slowSearch})
	}
}

func (c *cluster) fastSources() {
	for _, src := range sources {
		c.sandbox.Site(src).Faults().Reset()
	}
}

// call makes an API request as client and decodes a 2xx JSON answer into out (when not nil); it returns the status.
func (c *cluster) call(g *gateway, client, method, path string, body, out any) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(c.ctx, method, g.url+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if client != "" {
		req.Header.Set("Authorization", "Bearer "+c.issuer.Token(c.t, client, audience, nil))
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s on %s: %v", method, path, g.name, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		c.t.Fatalf("%s %s on %s: %v", method, path, g.name, err)
	}
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatalf("%s %s on %s: %v", method, path, g.name, err)
		}
	}
	return resp.StatusCode, raw
}

// status is the status of an API request as the EHR.
func (c *cluster) status(g *gateway, path string) int {
	c.t.Helper()
	status, _ := c.call(g, ehrClient, http.MethodGet, path, nil, nil)
	return status
}

// waitStatus polls an unauthenticated path of a replica until it answers want.
func (c *cluster) waitStatus(g *gateway, path string, want int, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		req, _ := http.NewRequestWithContext(c.ctx, http.MethodGet, g.url+path, nil)
		resp, err := c.http.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if g.exited() {
			c.t.Fatalf("%s exited while waiting for %s to answer %d", g.name, path, want)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s %s: still %s after %s, want %d", g.name, path, last, timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// createReview has the EHR create a review of the sandbox patient at both sources, through g.
func (c *cluster) createReview(g *gateway) (id, consentURL string) {
	c.t.Helper()
	var src []map[string]string
	for _, s := range sources {
		src = append(src, map[string]string{"source": s, "patient": demo.Patient})
	}
	var r struct {
		ID         string `json:"id"`
		ConsentURL string `json:"consentUrl"`
	}
	status, raw := c.call(g, ehrClient, http.MethodPost, "/api/v1/reviews",
		map[string]any{"sources": src, "provider": providerClient, "question": "Is follow-up imaging indicated?"}, &r)
	if status != http.StatusCreated {
		c.t.Fatalf("create review through %s: HTTP %d: %s", g.name, status, raw)
	}
	return r.ID, r.ConsentURL
}

// consent plays the patient in a browser: the consent page, then, per source, sign-in and approval at the sandbox
// and the way back. It returns what the page says of each source afterwards.
func (c *cluster) consent(consentURL string) map[string]string {
	c.t.Helper()
	b := demo.NewBrowser()
	if err := b.Get(c.ctx, consentURL); err != nil {
		c.t.Fatalf("open the consent page: %v", err)
	}
	done := map[string]string{}
	for _, src := range sources {
		if err := b.Follow(c.ctx, "authorize-"+src); err != nil {
			c.t.Fatalf("authorize at %s: %v", src, err)
		}
		if err := b.Submit(c.ctx, "approve", map[string][]string{"patient": {demo.Patient}}); err != nil {
			c.t.Fatalf("approve at %s: %v", src, err)
		}
		text, err := b.Text("state-" + src)
		if err != nil {
			c.t.Fatalf("back from %s: %v", src, err)
		}
		done[src] = text
	}
	return done
}

// checkConsentPage opens the consent page in a new browser session and checks that each source shows as done.
func (c *cluster) checkConsentPage(consentURL string, done map[string]string) {
	c.t.Helper()
	b := demo.NewBrowser()
	if err := b.Get(c.ctx, consentURL); err != nil {
		c.t.Fatalf("open the consent page: %v", err)
	}
	for _, src := range sources {
		if got, err := b.Text("state-" + src); err != nil || got != done[src] {
			c.t.Errorf("consent page, %s: %q (%v), want %q as right after the approval", src, got, err, done[src])
		}
		if _, err := b.Text("authorize-" + src); err == nil {
			c.t.Errorf("consent page, %s: asks to authorize again", src)
		}
	}
}

type reviewView struct {
	State    string `json:"state"`
	Progress string `json:"progress"`
	Reason   string `json:"reason"`
}

func (c *cluster) review(g *gateway, id string) reviewView {
	c.t.Helper()
	var r reviewView
	if status, raw := c.call(g, ehrClient, http.MethodGet, "/api/v1/reviews/"+id, nil, &r); status != http.StatusOK {
		c.t.Fatalf("GET review through %s: HTTP %d: %s", g.name, status, raw)
	}
	return r
}

// waitReview polls the review through g until done says so.
func (c *cluster) waitReview(g *gateway, id string, timeout time.Duration, done func(reviewView) bool) reviewView {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := c.review(g, id)
		if done(r) {
			return r
		}
		if r.State == "ready" || r.State == "failed" {
			c.t.Fatalf("review is %s (%s) before the awaited point", r.State, r.Reason)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("review still %s (%s) after %s", r.State, r.Progress, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fetchPacket lists the provider's packets through g (exactly one), downloads it and verifies its signature against
// the keys g publishes; it returns the packet's id, its ETag and the packet.
func (c *cluster) fetchPacket(g *gateway) (id, etag string, pkt []byte) {
	c.t.Helper()
	var list struct {
		Packets []struct {
			ID string `json:"id"`
		} `json:"packets"`
	}
	if status, raw := c.call(g, providerClient, http.MethodGet, "/api/v1/packets", nil, &list); status != http.StatusOK {
		c.t.Fatalf("list packets through %s: HTTP %d: %s", g.name, status, raw)
	}
	if len(list.Packets) != 1 {
		c.t.Fatalf("the provider sees %d packets through %s, want 1", len(list.Packets), g.name)
	}
	id = list.Packets[0].ID
	req, _ := http.NewRequestWithContext(c.ctx, http.MethodGet, g.url+"/api/v1/packets/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+c.issuer.Token(c.t, providerClient, audience, nil))
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	pkt, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		c.t.Fatalf("download the packet through %s: HTTP %d %v", g.name, resp.StatusCode, err)
	}
	etag = resp.Header.Get("ETag")
	var keys jose.JSONWebKeySet
	req, _ = http.NewRequestWithContext(c.ctx, http.MethodGet, g.url+"/.well-known/jwks.json", nil)
	resp, err = c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&keys)
	resp.Body.Close()
	if err != nil {
		c.t.Fatalf("keys of %s: %v", g.name, err)
	}
	if err := packet.Verify(pkt, &keys); err != nil {
		c.t.Errorf("the packet served by %s does not verify: %v", g.name, err)
	}
	return id, etag, pkt
}

// trail is a review's audit trail as the API serves it.
type trail struct {
	hashes []string
	states []string // the new state of each lifecycle entry, in order
}

// audit reads the review's audit trail through g (the read is itself audited, after what it returns).
func (c *cluster) audit(g *gateway, id string) trail {
	c.t.Helper()
	var b struct {
		Entry []struct {
			Resource struct {
				Subtype []struct {
					System string `json:"system"`
					Code   string `json:"code"`
				} `json:"subtype"`
			} `json:"resource"`
			Extension []struct {
				URL         string `json:"url"`
				ValueString string `json:"valueString"`
			} `json:"extension"`
		} `json:"entry"`
	}
	if status, raw := c.call(g, ehrClient, http.MethodGet, "/api/v1/reviews/"+id+"/audit", nil, &b); status != http.StatusOK {
		c.t.Fatalf("audit trail through %s: HTTP %d: %s", g.name, status, raw)
	}
	var tr trail
	for _, e := range b.Entry {
		for _, x := range e.Extension {
			if x.URL == "urn:secondlook:audit-chain-hash" {
				tr.hashes = append(tr.hashes, x.ValueString)
			}
		}
		for _, st := range e.Resource.Subtype {
			if st.System == "urn:secondlook:review-state" {
				tr.states = append(tr.states, st.Code)
			}
		}
	}
	if len(tr.hashes) != len(b.Entry) || len(tr.hashes) == 0 {
		c.t.Fatalf("audit trail through %s: %d entries, %d chain hashes", g.name, len(b.Entry), len(tr.hashes))
	}
	return tr
}

// mustExtend checks that every entry of earlier is still there, in order, at the start of tr.
func (tr trail) mustExtend(t *testing.T, earlier trail, when string) {
	t.Helper()
	if len(tr.hashes) < len(earlier.hashes) || !slices.Equal(tr.hashes[:len(earlier.hashes)], earlier.hashes) {
		t.Errorf("after the %s the audit trail (%d entries) does not start with the %d entries read before it",
			when, len(tr.hashes), len(earlier.hashes))
	}
}

// verifyChain reads the trail from Redis directly and checks that every entry's hash links to the one before.
func (c *cluster) verifyChain(id string) {
	c.t.Helper()
	if _, err := c.store.Audit(c.ctx, id); err != nil {
		c.t.Errorf("audit chain: %v", err)
	}
}

// queueDepth is the assembly queue's unacknowledged or undelivered jobs and scheduled retries.
func (c *cluster) queueDepth() (pending, delayed int64) {
	c.t.Helper()
	pending, delayed, err := c.store.QueueDepth(c.ctx)
	if err != nil {
		c.t.Fatalf("queue depth: %v", err)
	}
	return pending, delayed
}

// checkLogs checks that no process wrote a secret of the test to its output.
func (c *cluster) checkLogs() {
	c.t.Helper()
	for _, name := range c.order {
		out := c.logs[name].String()
		if strings.Contains(out, clientSecret) || strings.Contains(out, demo.Patient) {
			c.t.Errorf("the output of %s holds the client secret or the patient id", name)
		}
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

// binary is the secondlook command, built once for every test of the package into binDir.
var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func secondlookBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "secondlook-e2e-")
		if binErr != nil {
			return
		}
		path := filepath.Join(binDir, "secondlook")
		out, err := exec.Command("go", "build", "-o", path, "secondlook/cmd/secondlook").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		binPath = path
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}
