package main

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"secondlook/auth"
	"secondlook/caller"
	"secondlook/config"
	"secondlook/fhir/deid"
	"secondlook/gateway"
	"secondlook/metrics"
	"secondlook/seal"
	"secondlook/store"
)

func runServe(ctx context.Context, args []string, _, stderr io.Writer) int {
	fs := newFlags("serve", stderr)
	configPath := fs.String("config", os.Getenv("SECONDLOOK_CONFIG"), "config file; default $SECONDLOOK_CONFIG (see docs/configuration.md)")
	setUsage(fs, stderr,
		"usage: secondlook serve --config FILE",
		"\nRuns the gateway: the API, the patient's consent pages and the assembly workers.",
	)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, err := config.Load(*configPath, os.Environ())
	if err == nil {
		err = cfg.ValidateForServe()
	}
	if err != nil {
		fmt.Fprintf(stderr, "secondlook serve: %v\n", err)
		return 1
	}
	logger := newLogger(stderr, cfg.Log)
	if err := serve(ctx, cfg, logger); err != nil {
		logger.Error("gateway stopped", "error", err.Error())
		return 1
	}
	return 0
}

func newLogger(w io.Writer, l config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(l.Level))
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == config.LogFormatText {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// serve runs the gateway until ctx ends, then shuts down gracefully: it stops accepting, lets in-flight requests
// finish within the shutdown timeout, and stops the workers, whose unfinished jobs go back to the stream for
// another replica.
func serve(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	opts, rdb, err := gatewayOptions(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer func() { _ = rdb.Close() }() // shutting down: nothing is left to lose
	tp, stopTracing, err := startTracing(ctx, cfg.Tracing, logger)
	if err != nil {
		return err
	}
	// Deferred after rdb.Close, so it runs first: the last spans are flushed while everything else is still up.
	defer stopTracing()
	opts.TracerProvider = tp
	gw, err := gateway.New(ctx, opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Server.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           gw.Handler,
		ReadHeaderTimeout: time.Duration(cfg.Server.ReadHeaderTimeout),
		ReadTimeout:       time.Duration(cfg.Server.RequestTimeout),
		WriteTimeout:      time.Duration(cfg.Server.RequestTimeout) + 5*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	if cfg.Server.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.Server.MetricsAddr)
		if err != nil {
			return fmt.Errorf("listen for metrics: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", gw.MetricsHandler())
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = msrv.Serve(mln) }()
		defer func() { _ = msrv.Close() }()
		logger.Info("metrics listening", "addr", mln.Addr().String())
	}
	wctx, stopWorkers := context.WithCancel(context.Background())
	workers := make(chan error, 1)
	go func() { workers <- gw.RunWorkers(wctx) }()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("gateway listening", "addr", ln.Addr().String(), "public_url", cfg.Server.PublicURL, "sources", len(cfg.Sources),
		"workers", cfg.Assembly.WorkerCount())

	select {
	case err := <-served:
		stopWorkers()
		return errors.Join(err, <-workers)
	case err := <-workers:
		// The workers end before ctx only when they could not start: a replica that cannot assemble stops
		// rather than keep taking consents it will never serve.
		stopWorkers()
		sctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.Server.ShutdownTimeout))
		defer cancel()
		return errors.Join(fmt.Errorf("assembly workers: %w", err), srv.Shutdown(sctx))
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.Server.ShutdownTimeout))
	defer cancel()
	err = srv.Shutdown(sctx)
	stopWorkers()
	return errors.Join(err, <-workers)
}

// gatewayOptions turns the validated configuration into the gateway's options, resolving every secret.
func gatewayOptions(ctx context.Context, cfg *config.Config, logger *slog.Logger) (gateway.Options, redis.UniversalClient, error) {
	var problems []error
	var o gateway.Options
	keys := map[string][]byte{}
	for _, k := range cfg.Keys.TokenEncryption {
		m, err := k.Material()
		if err != nil {
			problems = append(problems, err)
			continue
		}
		keys[k.ID] = m
	}
	current := cfg.Keys.TokenEncryptionCurrent
	if current == "" && len(cfg.Keys.TokenEncryption) == 1 {
		current = cfg.Keys.TokenEncryption[0].ID
	}
	ring, err := seal.NewKeyring(keys, current)
	if err != nil {
		problems = append(problems, err)
	}
	sigID := cfg.Keys.SigningCurrent
	if sigID == "" && len(cfg.Keys.Signing) == 1 {
		sigID = cfg.Keys.Signing[0].ID
	}
	o.RetiredSigners = map[string]crypto.Signer{}
	for _, k := range cfg.Keys.Signing {
		s, err := k.Signer()
		if err != nil {
			problems = append(problems, err)
			continue
		}
		if k.ID == sigID {
			o.Signer, o.SignerKID = s, k.ID
		} else {
			o.RetiredSigners[k.ID] = s
		}
	}
	deidKey, err := cfg.Keys.Deid.Material()
	if err != nil {
		problems = append(problems, err)
	}
	csrf, err := cfg.Keys.CSRF.Resolve()
	if err != nil {
		problems = append(problems, err)
	}
	for i := range cfg.Sources {
		s := &cfg.Sources[i]
		as := auth.Source{ClientID: s.Auth.ClientID, Method: s.Auth.Method, KeyID: s.Auth.KeyID, Alg: s.Auth.SigningAlg,
			ScopeDialect: s.ScopeDialect, ResourceTypes: append([]string{"Patient", "Observation"}, s.ResourceTypes...)}
		switch s.Auth.Method {
		case config.AuthClientSecretBasic:
			sec, err := s.Auth.ClientSecret.Resolve()
			if err != nil {
				problems = append(problems, err)
			}
			as.Secret = sec
		case config.AuthPrivateKeyJWT:
			k, err := s.Auth.Signer()
			if err != nil {
				problems = append(problems, err)
			}
			as.Key = k
		}
		o.Sources = append(o.Sources, gateway.Source{ID: s.ID, Name: s.Name, Kind: s.Kind, FHIR: clientOptions(s), Auth: as})
	}
	for _, is := range cfg.Callers.Issuers {
		ci := caller.Issuer{URL: is.URL, Audience: is.Audience}
		for _, c := range is.Clients {
			ci.Clients = append(ci.Clients, caller.Client{ID: c.ID, Name: c.Name, Kind: caller.Kind(c.Kind)})
		}
		o.Callers = append(o.Callers, ci)
	}
	if err := errors.Join(problems...); err != nil {
		return o, nil, err
	}
	rdb, err := openRedis(ctx, cfg.Redis)
	if err != nil {
		return o, nil, err
	}
	o.PublicURL = cfg.Server.PublicURL
	o.Store = store.New(rdb, cfg.Redis.Prefix)
	o.TokenKeys = ring
	o.DeidKey = deid.Key{ID: cfg.Keys.Deid.ID, Secret: deidKey}
	o.CSRFKey = csrf
	o.ConsentValidity = time.Duration(cfg.Consent.Validity)
	o.Workers, o.MaxAttempts = cfg.Assembly.WorkerCount(), cfg.Assembly.MaxAttempts
	o.RetryDelay, o.Visibility = time.Duration(cfg.Assembly.BaseDelay), time.Duration(cfg.Assembly.Visibility)
	o.BodyLimit, o.RequestTimeout = cfg.Server.BodyLimit, time.Duration(cfg.Server.RequestTimeout)
	o.Logger = logger
	o.Metrics = metrics.New()
	o.CORSOrigins = cfg.Server.CORSOrigins
	o.CallerRate, o.CallerBurst = cfg.Callers.RateLimit.RequestsPerSecond, cfg.Callers.RateLimit.Burst
	return o, rdb, nil
}

// openRedis connects to a single node (redis.url) or a cluster (redis.cluster_addrs).
func openRedis(ctx context.Context, r config.Redis) (redis.UniversalClient, error) {
	raw := r.URL
	if len(r.ClusterAddrs) > 0 {
		raw = "redis://" + r.ClusterAddrs[0] + "?addr=" + strings.Join(r.ClusterAddrs[1:], "&addr=")
		if len(r.ClusterAddrs) == 1 {
			raw = "redis://" + r.ClusterAddrs[0] + "?addr=" + r.ClusterAddrs[0]
		}
	}
	if r.Password != "" {
		pw, err := r.Password.Resolve()
		if err != nil {
			return nil, err
		}
		u := strings.Replace(raw, "://", "://:"+urlEscape(string(pw))+"@", 1)
		raw = u
	}
	return store.Open(ctx, raw)
}

func urlEscape(s string) string { return (&url.URL{User: url.UserPassword("", s)}).User.String()[1:] }
