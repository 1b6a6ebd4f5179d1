package gateway

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.opentelemetry.io/otel/trace"

	"secondlook"
	"secondlook/api"
	"secondlook/assembly"
	"secondlook/auth"
	"secondlook/caller"
	"secondlook/fhir"
	"secondlook/fhir/deid"
	"secondlook/metrics"
	"secondlook/packet"
	"secondlook/review"
	"secondlook/seal"
	"secondlook/store"
)

// Source is one configured FHIR source.
type Source struct {
	ID, Name, Kind string
	// FHIR configures retrieval (BaseURL, limits, timeouts...).
	FHIR fhir.Options
	// Auth is the SMART client registration (ID and FHIRBaseURL are filled from above).
	Auth auth.Source
}

// Options is everything a gateway needs.
type Options struct {
	// PublicURL is the gateway's external origin.
	PublicURL string
	Store     *store.Store
	Sources   []Source
	// TokenKeys seal tokens at rest.
	TokenKeys *seal.Keyring
	// Signer signs packets; SignerKID names its key in the JWKS.
	Signer    crypto.Signer
	SignerKID string
	// RetiredSigners are earlier signing keys, by key id, still published in the JWKS so packets they signed verify
	// until they expire.
	RetiredSigners map[string]crypto.Signer
	// DeidKey and Profile de-identify records (Profile nil: safe-harbor).
	DeidKey deid.Key
	Profile *deid.Profile
	// CSRFKey keys the withdrawal form (32 bytes or more).
	CSRFKey []byte
	// Callers are the trusted token issuers and their clients.
	Callers []caller.Issuer
	// ConsentValidity is how long a review, its consent and its packet last (default 30 days).
	ConsentValidity time.Duration
	// Workers is how many assembly workers this process runs; 0 runs none (an API-only replica, while other
	// replicas assemble).
	Workers                int
	MaxAttempts            int
	RetryDelay, Visibility time.Duration
	BodyLimit              string
	RequestTimeout         time.Duration
	// HTTPClient makes the requests to authorization servers and issuers (default: 30 s timeout).
	HTTPClient *http.Client
	Logger     *slog.Logger
	Now        func() time.Time
	// Metrics, when set, instruments the gateway; MetricsOnMainListener also serves /metrics on Handler (the
	// demo), else MetricsHandler serves them on a separate listener.
	Metrics               *metrics.Metrics
	MetricsOnMainListener bool
	// CORSOrigins are the browser origins allowed cross-origin access to the API (none: CORS off).
	CORSOrigins []string
	// CallerRate and CallerBurst limit each API client across every replica (default 50 requests a second, burst
	// 100).
	CallerRate  float64
	CallerBurst int
	// TracerProvider, when set and not the no-op provider, traces the HTTP edge, Redis commands, upstream FHIR and
	// authorization-server requests and assembly jobs (see package tracing); nil installs no instrumentation.
	TracerProvider trace.TracerProvider
}

// Gateway is a running gateway's parts.
type Gateway struct {
	Handler http.Handler
	Auth    *auth.Client
	Store   *store.Store

	opts     Options
	assembly assembly.Config
	jwks     []byte
}

// New builds a gateway. It reports every problem with the options at once.
func New(ctx context.Context, o Options) (*Gateway, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ConsentValidity <= 0 {
		o.ConsentValidity = 30 * 24 * time.Hour
	}
	var problems []error
	if o.Workers < 0 {
		problems = append(problems, errors.New("gateway: the number of workers cannot be negative"))
	}
	if o.PublicURL == "" {
		problems = append(problems, errors.New("gateway: the public URL is required"))
	}
	if o.Store == nil || o.TokenKeys == nil || o.Signer == nil {
		problems = append(problems, errors.New("gateway: store, token keys and signer are required"))
	}
	if len(o.Sources) == 0 {
		problems = append(problems, errors.New("gateway: at least one source is required"))
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	if err := o.Store.EnsureQueue(ctx); err != nil {
		return nil, err
	}
	// What the gateway keeps about patients (the clinical question, patient ids, consents) is sealed at rest with the
	// same keyring as the tokens.
	o.Store.SealRecords(o.TokenKeys)
	tp := activeTracer(o.TracerProvider)
	if tp != nil {
		if err := o.Store.InstrumentTracing(ctx, tp); err != nil {
			return nil, err
		}
	}
	if o.Profile == nil {
		// Compile the default profile once, not on every assembly.
		p, err := deid.LoadProfile(deid.DefaultProfile)
		if err != nil {
			return nil, err
		}
		o.Profile = p
	}

	var authSources []auth.Source
	fhirSources := map[string]assembly.Source{}
	info := map[string]api.SourceInfo{}
	for _, s := range o.Sources {
		as := s.Auth
		as.ID, as.FHIRBaseURL = s.ID, s.FHIR.BaseURL
		authSources = append(authSources, as)
		fo := s.FHIR
		fo.TracerProvider = tp
		if fo.Logger == nil {
			fo.Logger = o.Logger.With(slog.String("source", s.ID))
		}
		if o.Metrics != nil {
			fo.Observer = o.Metrics.Upstream(s.ID)
		}
		if fo.RateLimit > 0 {
			// The source's rate limit holds for all replicas together.
			fo.SharedLimit = o.Store.Waiter("source:"+s.ID, float64(fo.RateLimit), max(fo.RateBurst, 1))
		}
		c, err := fhir.NewClient(fo)
		if err != nil {
			problems = append(problems, fmt.Errorf("source %s: %w", s.ID, err))
			continue
		}
		fhirSources[s.ID] = assembly.Source{Client: c, Kind: s.Kind}
		info[s.ID] = api.SourceInfo{Name: s.Name, Kind: s.Kind}
	}
	ac, err := auth.New(auth.Config{
		PublicURL: o.PublicURL, Sources: authSources, Keys: o.TokenKeys, HTTPClient: o.HTTPClient,
		Now: o.Now, Logger: o.Logger.With(slog.String("component", "smart")), GrantTTL: o.ConsentValidity,
		TracerProvider: tp,
	}, o.Store, o.Store)
	if err != nil {
		problems = append(problems, err)
	}
	verifier, err := caller.New(o.Callers, caller.Options{HTTPClient: o.HTTPClient, Now: o.Now})
	if err != nil {
		problems = append(problems, err)
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}

	providers, requesters := map[string]string{}, map[string]string{}
	for _, is := range o.Callers {
		for _, c := range is.Clients {
			switch c.Kind {
			case caller.Provider:
				providers[c.ID] = c.Name
			case caller.EHR:
				requesters[c.ID] = c.Name
			}
		}
	}
	jwks, err := mergeJWKS(ac, o.Signer, o.SignerKID, o.RetiredSigners)
	if err != nil {
		return nil, err
	}
	g := &Gateway{Auth: ac, Store: o.Store, opts: o, jwks: jwks}
	var rec api.Recorder
	var consentEvent func(string)
	var observer assembly.Observer
	if o.Metrics != nil {
		rec, consentEvent, observer = o.Metrics, o.Metrics.Consent, o.Metrics
		o.Metrics.QueueGauges(o.Store.QueueDepth)
		var live []string
		for _, st := range review.States() {
			if !st.Final() {
				live = append(live, string(st))
			}
		}
		o.Metrics.ReviewGauges(func(ctx context.Context) (map[string]int64, error) {
			counts, err := o.Store.ReviewCounts(ctx)
			out := make(map[string]int64, len(counts))
			for st, n := range counts {
				out[string(st)] = n
			}
			return out, err
		}, live)
	}
	h, err := api.New(api.Config{
		Metrics: rec, ServeMetrics: o.MetricsOnMainListener, CORSOrigins: o.CORSOrigins, TracerProvider: tp,
		Logger: o.Logger, BodyLimit: o.BodyLimit, RequestTimeout: o.RequestTimeout, OpenAPI: secondlook.OpenAPI,
		JWKS:  func() ([]byte, error) { return g.jwks, nil },
		Ready: func(ctx context.Context) error { return ready(ctx, o.Store, fhirSources) },
		Consent: &api.ConsentConfig{
			Reviews: o.Store, Consents: o.Store, Auth: ac, Sources: info, Providers: providers, Requesters: requesters,
			CSRFKey: o.CSRFKey, SecureCookies: isHTTPS(o.PublicURL), Now: o.Now, Logger: o.Logger,
			OweAssembly: o.Store.OweJob,
			OnConsented: func(ctx context.Context, id string) error { _, err := o.Store.PayJob(ctx, id); return err },
			OnWithdrawn: func(ctx context.Context, id string) error { return o.Store.DeletePacket(ctx, id) },
			Launch:      ac, LaunchStore: o.Store, PublicURL: o.PublicURL, Validity: o.ConsentValidity, Event: consentEvent,
			Types: fhir.SearchableTypes(),
		},
		Reviews: &api.ReviewsConfig{
			Callers: verifier, Store: o.Store, PublicURL: o.PublicURL, Validity: o.ConsentValidity, Now: o.Now, Logger: o.Logger,
			Limiter: o.Store, CallerRate: o.CallerRate, CallerBurst: o.CallerBurst,
			Catalog: review.Catalog{
				Sources:   func(id string) bool { _, ok := info[id]; return ok },
				Providers: func(id string) bool { _, ok := providers[id]; return ok },
				Types:     fhir.SearchableTypes(),
			},
		},
	})
	if err != nil {
		return nil, err
	}
	g.Handler = h
	g.assembly = assembly.Config{
		Reviews: o.Store, Consents: o.Store, Queue: o.Store, Packets: o.Store, Sources: fhirSources,
		Tokens:   func(key string) fhir.TokenSource { return ac.Tokens(key) },
		GrantKey: auth.GrantKey,
		Key:      o.DeidKey, Profile: o.Profile,
		Signer:      packet.Signer{Key: o.Signer, KeyID: o.SignerKID},
		MaxAttempts: o.MaxAttempts, BaseDelay: o.RetryDelay, Visibility: o.Visibility,
		Now: o.Now, Logger: o.Logger.With(slog.String("component", "assembly")), Observer: observer,
		TracerProvider: tp,
	}
	return g, nil
}

// RunWorkers runs the assembly workers (none in an API-only replica), and the sweeper that ends reviews whose
// consent period is over, until ctx is done.
func (g *Gateway) RunWorkers(ctx context.Context) error {
	host, _ := os.Hostname()
	// Every worker is built before anything starts, so a refused configuration leaves nothing running.
	workers := make([]*assembly.Worker, g.opts.Workers)
	for i := range workers {
		cfg := g.assembly
		cfg.Consumer = host + "-" + strconv.Itoa(os.Getpid()) + "-" + strconv.Itoa(i)
		w, err := assembly.New(cfg)
		if err != nil {
			return err
		}
		workers[i] = w
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		g.sweep(ctx)
	}()
	errs := make([]error, len(workers))
	for i, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.Run(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ready reports whether the replica can serve: Redis answers, and every source's CapabilityStatement is cached or
// can be read now. Once read, a source's metadata stays cached, so a source that goes down later does not take the
// replica out of service (its assemblies fail and are retried on their own); one never reached since start does.
func ready(ctx context.Context, st *store.Store, sources map[string]assembly.Source) error {
	if err := st.Ping(ctx); err != nil {
		return err
	}
	errs := make(chan error, len(sources))
	for id, s := range sources {
		go func() {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			if _, err := s.Client.Capabilities(cctx); err != nil {
				errs <- &sourceUnavailable{id: id}
				return
			}
			errs <- nil
		}()
	}
	var first error
	for range sources {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// sourceUnavailable names, for /readyz, a source whose metadata could not be read; never its URL or the error.
type sourceUnavailable struct{ id string }

func (e *sourceUnavailable) Error() string     { return "source " + e.id + " unavailable" }
func (e *sourceUnavailable) Component() string { return "source " + e.id }

// MetricsHandler serves the Prometheus metrics, or is nil without Options.Metrics.
func (g *Gateway) MetricsHandler() http.Handler {
	if g.opts.Metrics == nil {
		return nil
	}
	return g.opts.Metrics.Handler()
}

// JWKS returns the gateway's public keys: its packet signing key and every client-assertion key.
func (g *Gateway) JWKS() []byte { return g.jwks }

func mergeJWKS(ac *auth.Client, signer crypto.Signer, kid string, retired map[string]crypto.Signer) ([]byte, error) {
	raw, err := ac.JWKS()
	if err != nil {
		return nil, err
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, err
	}
	publish := func(k crypto.Signer, id string) error {
		alg, err := packet.Algorithm(k)
		if err != nil {
			return fmt.Errorf("signing key %s: %w", id, err)
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Public(), KeyID: id, Use: "sig", Algorithm: string(alg)})
		return nil
	}
	if err := publish(signer, kid); err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(retired))
	for id := range retired {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if id != kid {
			if err := publish(retired[id], id); err != nil {
				return nil, err
			}
		}
	}
	return json.Marshal(set)
}

func isHTTPS(u string) bool { return len(u) > 8 && u[:8] == "https://" }

// sweepEvery is how often a replica looks for reviews whose consent period has ended, and for consented reviews
// whose assembly job was never queued.
const sweepEvery = 30 * time.Second

// owedGrace is how long a consent has to queue the assembly job it owes before a sweeper queues it instead; only
// a failure between the move to consented and the queuing leaves a debt that old.
const owedGrace = time.Minute

// sweep expires due reviews (their packets go at once) and revokes their grants at the sources, and queues the
// assembly jobs that consents owe but did not queue.
func (g *Gateway) sweep(ctx context.Context) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		paid, err := g.Store.PayOwedJobs(ctx, g.opts.Now().Add(-owedGrace))
		if err != nil && ctx.Err() == nil {
			g.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "queue owed assembly jobs failed", slog.String("error", err.Error()))
		}
		for _, id := range paid {
			g.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "queued the assembly job a consent left unqueued", slog.String("review", id))
		}
		ids, err := g.Store.ExpireDue(ctx, g.opts.Now())
		if err != nil && ctx.Err() == nil {
			g.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "expire reviews failed", slog.String("error", err.Error()))
		}
		for _, id := range ids {
			for _, s := range g.opts.Sources {
				if err := g.Auth.Revoke(ctx, auth.GrantKey(id, s.ID)); err != nil && !errors.Is(err, auth.ErrNoGrant) {
					g.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "revoke expired grant failed", slog.String("source", s.ID), slog.String("error", err.Error()))
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
