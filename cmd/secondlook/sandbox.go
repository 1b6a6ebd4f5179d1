package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"secondlook/sandbox"
)

func runSandbox(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8090", "listen address (loopback only)")
	data := fs.String("data", "", "directory of Synthea transaction bundles to load into the hospital site (default: the embedded set)")
	latency := fs.Duration("latency", 0, "latency added to every response, to imitate a remote server")
	noInclude := fs.Bool("no-include", false, "do not support _include=DiagnosticReport:result (exercises clients' fallback)")
	externalize := fs.Bool("binary-attachments", false, "serve report attachments as Binary URLs instead of inline data")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: secondlook sandbox [--addr 127.0.0.1:PORT] [--data DIR]")
		fmt.Fprintln(stderr, "\nA test and demo FHIR R4 server loaded with Synthea patients; never for real data.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
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
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	srv, err := sandbox.New(sandbox.Options{
		Logger: logger,
		Sites: []sandbox.SiteOptions{{
			Name: "hospital", Bundles: bundles, DisableInclude: *noInclude, ExternalizeAttachments: *externalize,
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
