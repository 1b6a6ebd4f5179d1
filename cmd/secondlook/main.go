// Command secondlook is the second-opinion gateway: it retrieves a consenting patient's records from hospital and
// provincial FHIR R4 servers, de-identifies them and assembles review packets. Each subcommand lives in its own file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand: it parses its own flags from args and returns the process exit code.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

// commands lists every subcommand. Add one here when its issue lands; there are no placeholders.
func commands() map[string]command {
	return map[string]command{
		"version": {summary: "print the version", run: runVersion},
		"sandbox": {summary: "run the sandbox hospital FHIR server (test and demo peer)", run: runSandbox},
		"fetch":   {summary: "retrieve one patient's records from a FHIR source into NDJSON files", run: runFetch},
		"deid":    {summary: "de-identify one patient's FHIR R4 records into a review Bundle", run: runDeid},
		"demo":    {summary: "run the whole flow on this machine: sandbox, gateway, Redis", run: runDemo},
		"serve":   {summary: "run the gateway from a config file (API, consent pages, workers)", run: runServe},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "secondlook: unknown command %q\n\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	return c.run(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "usage: secondlook <command> [flags]")
	fmt.Fprintln(w, "\ncommands:")
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'secondlook <command> -h' for a command's flags.")
}

// newFlags returns a subcommand's flag set, reporting to stderr.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// setUsage makes -h print these lines, then the flags.
func setUsage(fs *flag.FlagSet, w io.Writer, lines ...string) {
	fs.Usage = func() {
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
		fs.PrintDefaults()
	}
}

// parseFlags parses a subcommand's flags. It reports false when the command should stop at once, with the exit
// code: 0 after -h, 2 for a usage error (already reported on stderr).
func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	return 0, true
}
