package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"secondlook/demo"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo", stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "gateway listen address (loopback)")
	sandboxAddr := fs.String("sandbox-addr", "127.0.0.1:8090", "sandbox listen address (loopback)")
	walkthrough := fs.Bool("walkthrough", false, "play the whole flow over HTTP without a browser, then exit (0 only if the packet verified and carries no PHI)")
	verbose := fs.Bool("v", false, "log the gateway's and sandbox's requests to stderr")
	setUsage(fs, stderr,
		"usage: secondlook demo [--walkthrough] [--addr 127.0.0.1:8080] [--sandbox-addr 127.0.0.1:8090]",
		"\nRuns the sandbox hospital and provincial repository, the gateway and Redis (embedded unless REDIS_URL is set) in one process.",
	)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	logger := slog.New(slog.DiscardHandler)
	if *verbose {
		logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	// The sandbox's OpenID provider library logs only through the process-wide default logger.
	slog.SetDefault(logger)
	d, err := demo.Start(ctx, demo.Options{Addr: *addr, SandboxAddr: *sandboxAddr, RedisURL: os.Getenv("REDIS_URL"), Logger: logger})
	if err != nil {
		fmt.Fprintf(stderr, "secondlook demo: %v\n", err)
		return 1
	}
	defer d.Close()
	fmt.Fprintf(stdout, "secondlook demo\n  gateway: %s\n  sandbox: %s (hospital and province sites, synthetic patients)\n\n", d.GatewayURL, d.SandboxURL)
	if *walkthrough {
		if err := d.Walkthrough(ctx, stdout); err != nil {
			fmt.Fprintf(stderr, "secondlook demo: walkthrough failed: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, "\nWalkthrough complete: the packet verified and carries no PHI.")
		return 0
	}
	fmt.Fprintf(stdout, "A hospital asked for a second opinion for the demo patient. Open the patient's consent link:\n\n  %s\n\n", d.ConsentURL)
	fmt.Fprintln(stdout, "At each source, sign in as \"Todd315 Stamm704\" and approve. When both are done the gateway assembles")
	fmt.Fprintf(stdout, "the packet; then see it as the provider would:\n\n  %s\n\nPress Ctrl-C to stop.\n", d.GatewayURL+"/demo/provider")
	<-ctx.Done()
	return 0
}
