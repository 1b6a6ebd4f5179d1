package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"secondlook/config"
	"secondlook/fhir"

	"golang.org/x/time/rate"
)

// staticToken is a TokenSource for a token an integrator already holds.
type staticToken string

func (t staticToken) Token(context.Context) (string, error) { return string(t), nil }

func runFetch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("fetch", stderr)
	base := fs.String("base", "", "FHIR base URL of the source (instead of --source)")
	sourceID := fs.String("source", "", "id of a source in the config file (instead of --base)")
	configPath := fs.String("config", os.Getenv("SECONDLOOK_CONFIG"), "config file (for --source); default $SECONDLOOK_CONFIG")
	patient := fs.String("patient", "", "the Patient's logical id at the source (required)")
	token := fs.String("token", "", "bearer token (visible to other local users in the process list: prefer --token-file or $SECONDLOOK_FETCH_TOKEN)")
	tokenFile := fs.String("token-file", "", "file holding the bearer token")
	out := fs.String("out", "", "directory for the NDJSON files (required)")
	types := fs.String("types", "", "comma-separated resource types (default: the source's, or "+strings.Join(fhir.DefaultTypes(), ",")+")")
	timeout := fs.Duration("timeout", 0, "overall deadline (default: the source's overall timeout, or 5m)")
	verbose := fs.Bool("v", false, "log each upstream request (operation and status only) to stderr")
	setUsage(fs, stderr,
		"usage: secondlook fetch (--base URL | --source ID) --patient ID [--token-file F] --out DIR",
		"\nRetrieves what the gateway would for one patient and writes DIR/<Type>.ndjson, one resource a line.",
	)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	var problems []string
	if (*base == "") == (*sourceID == "") {
		problems = append(problems, "give exactly one of --base and --source")
	}
	if *patient == "" {
		problems = append(problems, "--patient is required")
	}
	if *out == "" {
		problems = append(problems, "--out is required")
	}
	if *token != "" && *tokenFile != "" {
		problems = append(problems, "give at most one of --token and --token-file")
	}
	if fs.NArg() > 0 {
		problems = append(problems, "unexpected arguments after the flags")
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(stderr, "secondlook fetch:", p)
		}
		return 2
	}

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var opts fhir.Options
	overall := 5 * time.Minute
	var queryTypes []string
	if *sourceID != "" {
		cfg, err := config.Load(*configPath, os.Environ())
		if err != nil {
			fmt.Fprintf(stderr, "secondlook fetch: %v\n", err)
			return 1
		}
		src, ok := cfg.Source(*sourceID)
		if !ok {
			fmt.Fprintf(stderr, "secondlook fetch: no source %q in the config\n", *sourceID)
			return 1
		}
		opts = clientOptions(src)
		overall = time.Duration(src.Timeouts.Overall)
		queryTypes = src.ResourceTypes
	} else {
		opts = fhir.Options{BaseURL: *base}
	}
	opts.Logger = logger
	if *types != "" {
		queryTypes = strings.Split(*types, ",")
	}
	if *timeout > 0 {
		overall = *timeout
	}

	tok := *token
	if tok == "" {
		tok = os.Getenv("SECONDLOOK_FETCH_TOKEN")
	}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintln(stderr, "secondlook fetch: cannot read the token file")
			return 1
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok != "" {
		opts.Tokens = staticToken(tok)
	}

	client, err := fhir.NewClient(opts)
	if err != nil {
		fmt.Fprintf(stderr, "secondlook fetch: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(ctx, overall)
	defer cancel()
	rec, err := client.Retrieve(ctx, fhir.Query{PatientID: *patient, Types: queryTypes})
	if err != nil {
		fmt.Fprintf(stderr, "secondlook fetch: %v\n", err)
		return 1
	}
	counts, err := writeNDJSON(*out, rec)
	if err != nil {
		fmt.Fprintf(stderr, "secondlook fetch: %v\n", err)
		return 1
	}
	names := make([]string, 0, len(counts))
	for t := range counts {
		names = append(names, t)
	}
	slices.Sort(names)
	for _, t := range names {
		fmt.Fprintf(stdout, "%-20s %6d\n", t, counts[t])
	}
	for _, w := range rec.Warnings {
		fmt.Fprintf(stdout, "warning: %s %s ×%d\n", w.Code, w.ResourceType, w.Count)
	}
	fmt.Fprintf(stdout, "HTTP requests: %d (retries %d), pages: %d, bytes: %d\n", rec.Stats.Requests, rec.Stats.Retries, rec.Stats.Pages, rec.Stats.Bytes)
	return 0
}

// clientOptions maps a configured source onto the FHIR client's options.
func clientOptions(src *config.Source) fhir.Options {
	return fhir.Options{
		BaseURL:        src.FHIRBaseURL,
		RequestTimeout: time.Duration(src.Timeouts.Request),
		Concurrency:    src.Concurrency,
		RateLimit:      rateLimit(src.RateLimit.RequestsPerSecond),
		RateBurst:      src.RateLimit.Burst,
		Limits: fhir.Limits{
			MaxPages:           src.Limits.MaxPages,
			MaxResources:       src.Limits.MaxResources,
			MaxBytes:           src.Limits.MaxBytes,
			MaxBodyBytes:       src.Limits.MaxBodyBytes,
			MaxAttachmentBytes: src.Limits.MaxAttachmentBytes,
			MaxJSONDepth:       src.Limits.MaxJSONDepth,
		},
		Retry: fhir.Retry{
			MaxAttempts: src.Retry.MaxAttempts,
			BaseDelay:   time.Duration(src.Retry.BaseDelay),
			MaxDelay:    time.Duration(src.Retry.MaxDelay),
		},
	}
}

// writeNDJSON writes DIR/<Type>.ndjson for the Patient and each retrieved type, one resource per line, exactly as
// the server sent it (compacted). Files are written to a temporary name and renamed, so a failed run leaves no
// half-written file behind.
func writeNDJSON(dir string, rec *fhir.Record) (map[string]int, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create output directory: %w", errors.Unwrap(err))
	}
	all := map[string][]fhir.Resource{fhir.TypePatient: {rec.Patient}}
	for t, list := range rec.Resources {
		all[t] = list
	}
	counts := map[string]int{}
	for t, list := range all {
		if err := writeOne(filepath.Join(dir, t+".ndjson"), list); err != nil {
			return nil, err
		}
		counts[t] = len(list)
	}
	return counts, nil
}

func writeOne(name string, list []fhir.Resource) error {
	f, err := os.CreateTemp(filepath.Dir(name), ".fetch-*")
	if err != nil {
		return fmt.Errorf("create output file: %w", errors.Unwrap(err))
	}
	// After the rename there is nothing left to remove; before it, the half-written file goes.
	defer func() { _ = os.Remove(f.Name()) }()
	w := bufio.NewWriter(f)
	for _, r := range list {
		line, err := compact(r.Raw)
		if err != nil {
			_ = f.Close() // the file is discarded
			return fmt.Errorf("write %s: %w", filepath.Base(name), err)
		}
		// A write error sticks in w and comes back from Flush.
		_, _ = w.Write(line)
		_ = w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", filepath.Base(name), errors.Unwrap(err))
	}
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", filepath.Base(name), errors.Unwrap(err))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(name), errors.Unwrap(err))
	}
	return os.Rename(f.Name(), name)
}

func rateLimit(rps float64) rate.Limit { return rate.Limit(rps) }
