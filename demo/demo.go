package demo

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.opentelemetry.io/otel/trace"

	"secondlook/auth"
	"secondlook/caller"
	"secondlook/fhir"
	"secondlook/fhir/deid"
	"secondlook/gateway"
	"secondlook/metrics"
	"secondlook/sandbox"
	"secondlook/seal"
	"secondlook/store"
)

// Client ids of the demo's parts.
const (
	GatewayClient  = "secondlook-gateway"
	EHRClient      = "demo-ehr"
	ProviderClient = "demo-oncology"
	// Patient is the demo patient (Synthea's Todd315 Stamm704).
	Patient = "0ce18c7d-fd78-46d9-81b5-8bed231c337a"
)

// Options configure a demo.
type Options struct {
	// Addr and SandboxAddr are the loopback listen addresses of the gateway and the sandbox (":0" picks a port).
	Addr, SandboxAddr string
	// RedisURL names a Redis to use; empty starts an embedded one.
	RedisURL string
	Logger   *slog.Logger
	// Callers are token issuers the gateway trusts besides the sandbox hospital's (tests bring their own, with more
	// clients).
	Callers []caller.Issuer
	// TracerProvider, when set, traces the gateway (tests export to memory through tracing.Redact); nil traces
	// nothing.
	TracerProvider trace.TracerProvider
}

// Demo is a running demo.
type Demo struct {
	GatewayURL, SandboxURL string
	// ReviewID is the review the EHR created; ConsentURL the link for the patient.
	ReviewID, ConsentURL string

	store   *store.Store
	sandbox *sandbox.Server
	csrfKey []byte // the gateway's form-token key (tests forge tokens with it)
	ehrKey  *ecdsa.PrivateKey
	provKey *ecdsa.PrivateKey
	issuer  string
	raw     [][]byte
	closers []func()
	http    *http.Client
	workers chan error
	// tokens caches each backend client's access token until shortly before it expires.
	tokMu  sync.Mutex
	tokens map[string]cachedToken
	cancel context.CancelFunc
}

// Start runs the sandbox, the gateway and its workers, and has the EHR create a review for the demo patient.
func Start(ctx context.Context, o Options) (*Demo, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:8080"
	}
	if o.SandboxAddr == "" {
		o.SandboxAddr = "127.0.0.1:8090"
	}
	d := &Demo{http: &http.Client{Timeout: 30 * time.Second}}
	ok := false
	defer func() {
		if !ok {
			d.Close()
		}
	}()
	gln, err := listenLoopback(o.Addr)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, func() { _ = gln.Close() })
	sln, err := listenLoopback(o.SandboxAddr)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, func() { _ = sln.Close() })
	d.GatewayURL = "http://" + gln.Addr().String()
	d.SandboxURL = "http://" + sln.Addr().String()

	// Redis: the one named, or an embedded one for this process only.
	var st *store.Store
	if o.RedisURL != "" {
		rdb, err := store.Open(ctx, o.RedisURL)
		if err != nil {
			return nil, err
		}
		d.closers = append(d.closers, func() { _ = rdb.Close() })
		st = store.New(rdb, "secondlook-demo-"+randomID()+":")
	} else {
		rdb, mr, err := store.Embedded()
		if err != nil {
			return nil, err
		}
		d.closers = append(d.closers, func() { _ = rdb.Close(); mr.Close() })
		st = store.New(rdb, "secondlook:")
	}
	d.store = st

	// Keys, all fresh for this run.
	gwKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader) // private_key_jwt at the provincial repository
	sigKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d.ehrKey, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	d.provKey, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tokenKey, deidKey, csrfKey := randomBytes(32), randomBytes(32), randomBytes(32)
	d.csrfKey = csrfKey
	keyring, err := seal.NewKeyring(map[string][]byte{"demo-1": tokenKey}, "demo-1")
	if err != nil {
		return nil, err
	}

	// The sandbox: the demo patients' records split between a hospital and a provincial laboratory repository.
	bundles, err := sandbox.DefaultBundles()
	if err != nil {
		return nil, err
	}
	var hospital, province [][]byte
	for _, b := range bundles {
		h, p, err := split(b)
		if err != nil {
			return nil, err
		}
		hospital, province = append(hospital, h), append(province, p)
	}
	d.raw = bundles
	const secret = "demo-gateway-secret-local-only"
	sb, err := sandbox.New(sandbox.Options{Logger: o.Logger, Sites: []sandbox.SiteOptions{
		{Name: "hospital", Bundles: hospital, Auth: &sandbox.AuthOptions{ScopeVersion: 2, Clients: []sandbox.Client{
			{ID: GatewayClient, Secret: secret, RedirectURIs: []string{d.GatewayURL + "/auth/callback/hospital"}},
			{ID: EHRClient, JWKS: jwks(d.ehrKey, "ehr-1"), BackendAudience: d.GatewayURL},
			{ID: ProviderClient, JWKS: jwks(d.provKey, "prov-1"), BackendAudience: d.GatewayURL},
		}}},
		{Name: "province", Bundles: province, Auth: &sandbox.AuthOptions{ScopeVersion: 1, Clients: []sandbox.Client{
			{ID: GatewayClient, JWKS: jwks(gwKey, "gw-1"), RedirectURIs: []string{d.GatewayURL + "/auth/callback/province"}},
		}}},
	}})
	if err != nil {
		return nil, err
	}
	d.sandbox = sb
	ssrv := &http.Server{Handler: sb.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = ssrv.Serve(sln) }()
	d.closers = append(d.closers, func() { _ = ssrv.Close() })
	d.issuer = d.SandboxURL + "/hospital/auth"

	gw, err := gateway.New(ctx, gateway.Options{
		PublicURL: d.GatewayURL, Store: st, TokenKeys: keyring, Signer: sigKey, SignerKID: "packet-1",
		DeidKey: deid.Key{ID: "demo-deid-1", Secret: deidKey}, CSRFKey: csrfKey, Logger: o.Logger,
		Sources: []gateway.Source{
			{ID: "hospital", Name: "Riverside General Hospital (sandbox)", Kind: "hospital",
				FHIR: fhir.Options{BaseURL: d.SandboxURL + "/hospital/fhir"},
				Auth: auth.Source{ClientID: GatewayClient, Method: auth.MethodClientSecretBasic, Secret: []byte(secret)}},
			{ID: "province", Name: "Provincial Laboratory Repository (sandbox)", Kind: "provincial",
				FHIR: fhir.Options{BaseURL: d.SandboxURL + "/province/fhir"},
				Auth: auth.Source{ClientID: GatewayClient, Method: auth.MethodPrivateKeyJWT, Key: gwKey, KeyID: "gw-1", Alg: auth.AlgES384}},
		},
		Callers: append([]caller.Issuer{{URL: d.issuer, Audience: d.GatewayURL, Clients: []caller.Client{
			{ID: EHRClient, Name: "Riverside General Hospital EHR", Kind: caller.EHR},
			{ID: ProviderClient, Name: "Demo Oncology Second Opinions", Kind: caller.Provider},
		}}}, o.Callers...),
		Workers: 2, RetryDelay: time.Second, Metrics: metrics.New(), MetricsOnMainListener: true,
		TracerProvider: o.TracerProvider,
	})
	if err != nil {
		return nil, err
	}
	// Every path but the demo's provider view goes to the gateway as it comes, as in production (an http.ServeMux
	// would clean and redirect odd paths before the gateway saw them).
	view := viewer{d: d}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/demo/provider" {
			view.ServeHTTP(w, r)
			return
		}
		gw.Handler.ServeHTTP(w, r)
	})
	gsrv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
	go func() { _ = gsrv.Serve(gln) }()
	d.closers = append(d.closers, func() { _ = gsrv.Close() })
	wctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	d.workers = make(chan error, 1)
	go func() { d.workers <- gw.RunWorkers(wctx) }()

	if err := d.createReview(ctx); err != nil {
		return nil, err
	}
	ok = true
	return d, nil
}

// Close stops everything the demo started.
func (d *Demo) Close() {
	if d.cancel != nil {
		d.cancel()
		<-d.workers //nolint:errcheck // the demo is ending; workers that failed to start already showed as a review never assembled
	}
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

func listenLoopback(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("listen %s: the demo listens on loopback addresses only", addr)
	}
	return net.Listen("tcp", addr)
}

type cachedToken struct {
	token string
	until time.Time
}

// Token returns an access token for the gateway as a backend client of the sandbox issuer (SMART Backend Services:
// client_credentials with a private_key_jwt assertion), reusing it until 30 s before it expires.
func (d *Demo) Token(ctx context.Context, clientID string) (string, error) {
	d.tokMu.Lock()
	defer d.tokMu.Unlock()
	if c, ok := d.tokens[clientID]; ok && time.Now().Before(c.until) {
		return c.token, nil
	}
	tok, expiresIn, err := d.requestToken(ctx, clientID)
	if err != nil {
		return "", err
	}
	if d.tokens == nil {
		d.tokens = map[string]cachedToken{}
	}
	d.tokens[clientID] = cachedToken{token: tok, until: time.Now().Add(time.Duration(expiresIn)*time.Second - 30*time.Second)}
	return tok, nil
}

func (d *Demo) requestToken(ctx context.Context, clientID string) (string, int, error) {
	key, kid := d.ehrKey, "ehr-1"
	if clientID == ProviderClient {
		key, kid = d.provKey, "prov-1"
	}
	tokenURL := d.issuer + "/token"
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", 0, err
	}
	now := time.Now()
	claims, _ := json.Marshal(map[string]any{"iss": clientID, "sub": clientID, "aud": tokenURL, "jti": randomID(),
		"iat": now.Unix(), "exp": now.Add(4 * time.Minute).Unix()})
	obj, err := signer.Sign(claims)
	if err != nil {
		return "", 0, err
	}
	assertion, err := obj.CompactSerialize()
	if err != nil {
		return "", 0, err
	}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := d.http.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
		Error       string `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tr); err != nil || tr.AccessToken == "" {
		return "", 0, fmt.Errorf("backend services token for %s: HTTP %d %s", clientID, resp.StatusCode, tr.Error)
	}
	return tr.AccessToken, tr.ExpiresIn, nil
}

// API calls the gateway's API as a client and decodes the JSON answer into out (when not nil).
func (d *Demo) API(ctx context.Context, clientID, method, path string, body any, out any) (*http.Response, []byte, error) {
	tok, err := d.Token(ctx, clientID)
	if err != nil {
		return nil, nil, err
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, _ := http.NewRequestWithContext(ctx, method, d.GatewayURL+path, rd)
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, nil, err
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp, raw, err
		}
	}
	return resp, raw, nil
}

func (d *Demo) createReview(ctx context.Context) error {
	var r struct {
		ID         string `json:"id"`
		ConsentURL string `json:"consentUrl"`
	}
	resp, raw, err := d.API(ctx, EHRClient, http.MethodPost, "/api/v1/reviews", map[string]any{
		"sources":  []map[string]string{{"source": "hospital", "patient": Patient}, {"source": "province", "patient": Patient}},
		"provider": ProviderClient,
		"question": "Left forearm fracture in 2013 with recurrent sinusitis: is any follow-up imaging or surgery indicated?",
	}, &r)
	if err != nil {
		return fmt.Errorf("create review: %w", err)
	}
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("create review: HTTP %d: %s", resp.StatusCode, raw)
	}
	d.ReviewID, d.ConsentURL = r.ID, r.ConsentURL
	return nil
}

func jwks(k *ecdsa.PrivateKey, kid string) []byte {
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.Public(), KeyID: kid, Algorithm: "ES384", Use: "sig"}}})
	return b
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func randomID() string { return rand.Text() }
