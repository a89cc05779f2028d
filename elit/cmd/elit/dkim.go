package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"elit.local/elit/config"
	"elit.local/elit/dkim"
	"elit.local/elit/dns"
	"elit.local/elit/mailauth"
)

// cmdDKIM makes keys, signs and verifies: elit dkim genkey|sign|verify.
func cmdDKIM(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: elit dkim genkey|sign|verify [flags] (elit dkim CMD -h)")
		return exitUsage
	}
	fs := flag.NewFlagSet("elit dkim "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	state := fs.String("state", config.DefaultStateDir(), "the state `directory` of elit serve (keys in its dkim/)")
	domain := fs.String("domain", "", "the `domain` of the key")
	selector := fs.String("selector", "", "the `selector` of the key (genkey: default elitYYYYMM and r or e; sign: default every key of the domain)")
	algo := fs.String("algo", "rsa", "genkey: rsa or ed25519")
	bits := fs.Int("bits", 0, "genkey: RSA key size (default 2048)")
	resolver := fs.String("resolver", "", "verify: DNS server `host:port` (default: /etc/resolv.conf's)")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 0 {
		return exitUsage
	}
	switch args[0] {
	case "genkey":
		if *domain == "" {
			fmt.Fprintln(stderr, "elit dkim genkey: -domain is required")
			return exitUsage
		}
		keys, err := mailauth.LoadKeys(config.State{Dir: *state}.DKIM())
		if err != nil {
			return fail(stderr, "elit dkim genkey", err)
		}
		sel := *selector
		if sel == "" {
			sel = mailauth.DefaultSelector(*algo, time.Now())
		}
		k, err := keys.Generate(*domain, sel, *algo, *bits)
		if err != nil {
			return fail(stderr, "elit dkim genkey", err)
		}
		fmt.Fprintf(stdout, "%s\n%s. TXT %q\n", k.Path, k.RecordName(), k.Record)
		fmt.Fprintln(stderr, "elit serve signs with it from its next start or SIGHUP; publish the record first")
		return exitOK
	case "sign":
		keys, err := mailauth.LoadKeys(config.State{Dir: *state}.DKIM())
		if err != nil {
			return fail(stderr, "elit dkim sign", err)
		}
		var signers []*dkim.Signer
		for _, s := range keys.Signers(*domain, nil) {
			if *selector == "" || s.Selector == *selector {
				signers = append(signers, s)
			}
		}
		if len(signers) == 0 {
			return fail(stderr, "elit dkim sign", fmt.Errorf("no key for %q in %s", *domain, keys.Dir()))
		}
		msg, err := readMessage(stdin)
		if err != nil {
			return fail(stderr, "elit dkim sign", err)
		}
		sigs, err := dkim.Sign(bytes.NewReader(msg), signers...)
		if err != nil {
			return fail(stderr, "elit dkim sign", err)
		}
		for _, s := range sigs {
			io.WriteString(stdout, s)
		}
		stdout.Write(msg)
		return exitOK
	case "verify":
		msg, err := readMessage(stdin)
		if err != nil {
			return fail(stderr, "elit dkim verify", err)
		}
		results, err := dkim.Verify(context.Background(), cliResolver(*resolver), bytes.NewReader(msg))
		if err != nil {
			return fail(stderr, "elit dkim verify", err)
		}
		code := exitProblems
		for _, r := range results {
			fmt.Fprintf(stdout, "%s d=%s s=%s a=%s i=%s", r.Status, r.Domain, r.Selector, r.Algorithm, r.Identity)
			if r.Err != nil {
				fmt.Fprintf(stdout, ": %v", r.Err)
			}
			fmt.Fprintln(stdout)
			if r.Status == dkim.Pass {
				code = exitOK
			}
		}
		if len(results) == 0 {
			fmt.Fprintln(stdout, "none: no DKIM-Signature")
		}
		return code
	}
	fmt.Fprintf(stderr, "elit dkim: unknown command %q (genkey, sign, verify)\n", args[0])
	return exitUsage
}

// readMessage reads a message, its line ends made CRLF when it has only
// LF (a file written on Unix), as SMTP carries it.
func readMessage(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil || bytes.Contains(b, []byte("\r\n")) {
		return b, err
	}
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n")), nil
}

// cliResolver is the DNS of the tools: -resolver, else resolv.conf's.
func cliResolver(server string) dns.Resolver {
	return &dns.Client{Server: server, ResolvConf: config.ResolvConf}
}

func fail(stderr io.Writer, what string, err error) int {
	fmt.Fprintf(stderr, "%s: %v\n", what, err)
	return exitFailure
}
