package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"elit.local/elit/config"
	"elit.local/elit/server"
)

// cmdServe is elit serve: the settings from the flags and the -config
// file, then the server until SIGINT or SIGTERM. An invalid configuration
// exits 125 (gokrazy's "do not restart me"), another failure 1.
func cmdServe(args []string, stderr io.Writer) int {
	cfg := config.Default()
	cfg.Version = version
	fs := cfg.FlagSet("elit serve", stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: elit serve -domain DOMAIN (-db IMG | -db-json FILE) [flags]")
		fmt.Fprintln(stderr, "\nOne process: MX on port 25, submission on 587 (STARTTLS) and 465 (TLS).")
		fmt.Fprintln(stderr, "SIGHUP reloads the user database; SIGTERM stops. Exit 125: invalid configuration.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitFailure
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "elit serve: unexpected argument %q\n", fs.Arg(0))
		return exitFailure
	}
	if err := cfg.ApplyFile(fs); err != nil {
		fmt.Fprintf(stderr, "elit serve: %v\n", err)
		return exitFailure
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	// ELIT_CPUPROFILE=FILE profiles the server until it stops (make bench:
	// profile before optimising).
	if path := os.Getenv("ELIT_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			defer f.Close()
			defer pprof.StopCPUProfile()
		}
	}
	if err := server.Run(ctx, cfg, log); err != nil {
		fmt.Fprintf(stderr, "elit serve: %v\n", err)
		if config.IsInvalid(err) {
			return exitFailure
		}
		return 1
	}
	return exitOK
}
