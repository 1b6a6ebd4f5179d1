package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"secondlook/sandbox"
)

func runSandbox(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("sandbox", stderr)
	addr := fs.String("addr", "127.0.0.1:8090", "listen address (loopback only)")
	data := fs.String("data", "", "directory of Synthea transaction bundles to load into the hospital site (default: the embedded set)")
	latency := fs.Duration("latency", 0, "latency added to every response, to imitate a remote server")
	noInclude := fs.Bool("no-include", false, "do not support _include=DiagnosticReport:result (exercises clients' fallback)")
	externalize := fs.Bool("binary-attachments", false, "serve report attachments as Binary URLs instead of inline data")
	noAuth := fs.Bool("no-auth", false, "serve the FHIR API without the SMART authorization server and without tokens")
	scopeVersion := fs.Int("scope-version", 2, "SMART scope dialect of the authorization server: 1 (patient/X.read) or 2 (patient/X.rs)")
	var redirects stringList
	fs.Var(&redirects, "redirect-uri", "redirect URI of the demo client (repeatable; default "+demoRedirectURI+")")
	setUsage(fs, stderr,
		"usage: secondlook sandbox [--addr 127.0.0.1:PORT] [--data DIR] [--no-auth]",
		"\nA test and demo FHIR R4 server loaded with Synthea patients; never for real data.",
		"By default it also runs a SMART App Launch authorization server with one demo client",
		fmt.Sprintf("(client_id %s, client_secret %s: for local use only) and requires its tokens.", demoClientID, demoClientSecret),
	)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		fmt.Fprintf(stderr, "secondlook sandbox: --addr: %v\n", err)
		return 2
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		fmt.Fprintln(stderr, "secondlook sandbox: --addr must be a loopback address: the sandbox is a test peer")
		return 2
	}
	var bundles [][]byte
	if *data != "" {
		bundles, err = sandbox.LoadDir(*data)
	} else {
		bundles, err = sandbox.DefaultBundles()
	}
	if err != nil {
		fmt.Fprintf(stderr, "secondlook sandbox: %v\n", err)
		return 1
	}
	if *scopeVersion != 1 && *scopeVersion != 2 {
		fmt.Fprintln(stderr, "secondlook sandbox: --scope-version must be 1 or 2")
		return 2
	}
	if len(redirects) == 0 {
		redirects = stringList{demoRedirectURI}
	}
	var auth *sandbox.AuthOptions
	if !*noAuth {
		auth = &sandbox.AuthOptions{
			ScopeVersion: *scopeVersion,
			Clients: []sandbox.Client{{
				ID: demoClientID, Secret: demoClientSecret, RedirectURIs: redirects,
			}},
		}
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	srv, err := sandbox.New(sandbox.Options{
		Logger: logger,
		Sites: []sandbox.SiteOptions{{
			Name: "hospital", Bundles: bundles, DisableInclude: *noInclude, ExternalizeAttachments: *externalize,
			Auth: auth,
		}},
	})
	if err != nil {
		fmt.Fprintf(stderr, "secondlook sandbox: %v\n", err)
		return 1
	}
	site := srv.Site("hospital")
	if *latency > 0 {
		site.Faults().Add(sandbox.Fault{Latency: *latency})
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "secondlook sandbox: listen: %v\n", err)
		return 1
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	base := "http://" + ln.Addr().String() + "/hospital/fhir"
	fmt.Fprintf(stdout, "sandbox hospital FHIR R4 server: %s (%d patients)\n", base, len(site.Patients()))
	fmt.Fprintf(stdout, "try: curl %s/metadata\n", base)
	if auth != nil {
		fmt.Fprintf(stdout, "SMART authorization server: %s/.well-known/smart-configuration (scopes v%d)\n", base, *scopeVersion)
		fmt.Fprintf(stdout, "demo client (local use only): client_id=%s client_secret=%s redirect_uri=%s\n",
			demoClientID, demoClientSecret, strings.Join(redirects, ","))
	} else {
		fmt.Fprintln(stdout, "no authorization: the FHIR API is open (--no-auth)")
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		fmt.Fprintf(stderr, "secondlook sandbox: %v\n", err)
		return 1
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	return 0
}

// The demo client of the sandbox's authorization server. The secret is published on purpose: the sandbox serves
// synthetic data on loopback only, and the client exists so that a local gateway can complete a SMART launch.
const (
	demoClientID     = "secondlook-demo"
	demoClientSecret = "sandbox-demo-secret-local-use-only" //nolint:gosec // G101: published on purpose, as said above
	demoRedirectURI  = "http://127.0.0.1:8080/auth/callback/sandbox-hospital"
)

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}
