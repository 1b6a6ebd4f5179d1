package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"log/slog"
	"net/http"
	"net/url"
	"secondlook/internal/syncbuf"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"secondlook/seal"
	"secondlook/store"
	"secondlook/store/storetest"
)

// Compile-time checks: *store.Store is what the client stores into.
var (
	_ StateStore = (*store.Store)(nil)
	_ GrantStore = (*store.Store)(nil)
)

const (
	testPublicURL = "http://127.0.0.1:9"
	testSecret    = "s3cret-Client-Secret"
	testBinding   = "binding-hash-of-browser-A-cookie"
)

var (
	clientRSAKey, _ = rsa.GenerateKey(rand.Reader, 2048)
	clientECKey, _  = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
)

type syncBuffer = syncbuf.Buffer

// testClock is an adjustable clock.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

type env struct {
	t      testing.TB
	fake   *fakeSMART
	store  *store.Store
	keys   *seal.Keyring
	cfg    Config
	client *Client
	logs   *syncBuffer
	clock  *testClock
}

type envOptions struct {
	fake     func(*fakeOptions)
	config   func(*Config)
	newStore storetest.NewStore
	// store, when set, is used instead of newStore (fuzz targets, which have no *testing.T to give it).
	store *store.Store
}

// newEnv starts a fake SMART server and a Client registered at it as source "h1" (client_secret_basic).
func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	e := &env{t: t, logs: &syncBuffer{}, clock: &testClock{}}
	redirect := testPublicURL + "/auth/callback/h1"
	e.fake = newFakeSMART(t, func(fo *fakeOptions) {
		fo.clients = map[string]fakeClient{
			"gw-basic": {secret: testSecret, redirects: []string{redirect}},
			"gw-rsa":   {publicKey: clientRSAKey.Public(), redirects: []string{redirect}},
			"gw-ec":    {publicKey: clientECKey.Public(), redirects: []string{redirect}},
		}
		fo.now = e.clock.Now
		if o.fake != nil {
			o.fake(fo)
		}
	})
	if e.store = o.store; e.store == nil {
		newStore := o.newStore
		if newStore == nil {
			newStore = storetest.EmbeddedRedis
		}
		tt, ok := t.(*testing.T)
		if !ok {
			t.Fatal("newEnv: pass envOptions.store outside a test")
		}
		e.store, _ = newStore(tt)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	var err error
	e.keys, err = seal.NewKeyring(map[string][]byte{"k1": key}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = Config{
		PublicURL: testPublicURL,
		Sources: []Source{{
			ID: "h1", FHIRBaseURL: e.fake.base(), ClientID: "gw-basic", Method: MethodClientSecretBasic,
			Secret: []byte(testSecret),
		}},
		Keys:       e.keys,
		HTTPClient: &http.Client{Timeout: 10 * time.Second},
		Now:        e.clock.Now,
		Logger:     slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if o.config != nil {
		o.config(&e.cfg)
	}
	e.client, err = New(e.cfg, e.store, e.store)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// newReplica returns a second Client (another gateway replica) sharing the same store and configuration.
func (e *env) newReplica() *Client {
	c, err := New(e.cfg, e.store, e.store)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// begin starts an authorization and follows the authorize redirect at the fake server, returning the callback's
// query and the authorization URL.
func (e *env) begin(req BeginRequest) (url.Values, string) {
	e.t.Helper()
	if req.SourceID == "" {
		req.SourceID = "h1"
	}
	if req.ReviewID == "" {
		req.ReviewID = "rev-1"
	}
	if req.Binding == "" {
		req.Binding = testBinding
	}
	authURL, err := e.client.Begin(e.t.Context(), req)
	if err != nil {
		e.t.Fatalf("Begin: %v", err)
	}
	return e.follow(authURL, "h1"), authURL
}

func (e *env) follow(authURL, wantSource string) url.Values {
	e.t.Helper()
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(authURL)
	if err != nil {
		e.t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		e.t.Fatalf("authorize: status %d", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		e.t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != testPublicURL+"/auth/callback/"+wantSource {
		e.t.Fatalf("redirected to %s", got)
	}
	return loc.Query()
}

// authorize runs a whole standalone launch and returns the grant.
func (e *env) authorize() *Grant {
	e.t.Helper()
	cb, _ := e.begin(BeginRequest{})
	g, err := e.client.Complete(e.t.Context(), "h1", cb, testBinding)
	if err != nil {
		e.t.Fatalf("Complete: %v", err)
	}
	return g
}

// rawRedisValues returns every value stored under the env's prefix.
func (e *env) rawRedisValues() map[string]string {
	e.t.Helper()
	ctx := context.Background()
	rdb := e.store.Client()
	out := map[string]string{}
	keys, err := storetest.Keys(ctx, rdb, e.store.Prefix()+"*")
	if err != nil {
		e.t.Fatal(err)
	}
	for _, k := range keys {
		v, err := rdb.Get(ctx, k).Result()
		if err != nil {
			e.t.Fatal(err)
		}
		out[k] = v
	}
	return out
}

// record returns the stored record of a grant, for tests that look at the tokens.
func (e *env) record(key string) *record {
	e.t.Helper()
	rec, err := e.client.loadRecord(e.t.Context(), key)
	if err != nil {
		e.t.Fatal(err)
	}
	return rec
}

func containsAny(haystack string, needles ...string) string {
	for _, n := range needles {
		if n != "" && strings.Contains(haystack, n) {
			return n
		}
	}
	return ""
}
