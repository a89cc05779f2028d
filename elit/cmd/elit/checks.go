package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"

	"elit.local/elit/arc"
	"elit.local/elit/dmarc"
	"elit.local/elit/spf"
)

// checkFlags are the flags the checking tools share.
func checkFlags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs, fs.String("resolver", "", "DNS server `host:port` (default: /etc/resolv.conf's)")
}

// cmdSPF: elit spf check -ip IP -helo NAME -from ADDR.
func cmdSPF(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: elit spf check -ip IP -helo NAME -from ADDR [-resolver HOST:PORT]")
		return exitUsage
	}
	fs, resolver := checkFlags("elit spf check", stderr)
	ipFlag := fs.String("ip", "", "the client's `address`")
	helo := fs.String("helo", "", "the HELO/EHLO `name`")
	from := fs.String("from", "", "the MAIL FROM `address` (\"\": the null sender)")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 0 {
		return exitUsage
	}
	ip, err := netip.ParseAddr(*ipFlag)
	if err != nil {
		return fail(stderr, "elit spf check", fmt.Errorf("-ip: %w", err))
	}
	r := cliResolver(*resolver)
	ctx := context.Background()
	for _, res := range []spf.Result{spf.Check(ctx, r, ip, *helo, *from), spf.CheckHelo(ctx, r, ip, *helo)} {
		fmt.Fprintf(stdout, "%s: %s (%s, domain %s", res.Identity, res.Result, res.Sender, res.Domain)
		if res.Mechanism != "" {
			fmt.Fprintf(stdout, ", matched %s", res.Mechanism)
		}
		fmt.Fprint(stdout, ")")
		if res.Explanation != "" {
			fmt.Fprintf(stdout, " explanation: %q", res.Explanation)
		}
		if res.Err != nil {
			fmt.Fprintf(stdout, ": %v", res.Err)
		}
		fmt.Fprintln(stdout)
	}
	return exitOK
}

// cmdDMARC: elit dmarc lookup DOMAIN.
func cmdDMARC(args []string, stdout, stderr io.Writer) int {
	fs, resolver := checkFlags("elit dmarc lookup", stderr)
	if len(args) == 0 || args[0] != "lookup" || fs.Parse(args[1:]) != nil || fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: elit dmarc lookup [-resolver HOST:PORT] DOMAIN")
		return exitUsage
	}
	f, err := dmarc.Lookup(context.Background(), cliResolver(*resolver), fs.Arg(0))
	if err != nil {
		return fail(stderr, "elit dmarc lookup", err)
	}
	if f.Record == nil {
		fmt.Fprintf(stdout, "no DMARC record for %s (organizational domain %s): dmarc=none\n", fs.Arg(0), f.Org)
		return exitProblems
	}
	r := f.Record
	fmt.Fprintf(stdout, "_dmarc.%s: %s\n", f.RecordDomain, f.Text)
	sp := r.SubdomainPolicy
	if sp == "" {
		sp = r.Policy // sp= absent: p= for subdomains too (RFC 7489 §6.3)
	}
	fmt.Fprintf(stdout, "p=%s sp=%s adkim=%s aspf=%s pct=%d (organizational domain %s)\n", r.Policy, sp, r.ADKIM, r.ASPF, r.Percent, f.Org)
	return exitOK
}

// cmdARC: elit arc verify < message.
func cmdARC(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, resolver := checkFlags("elit arc verify", stderr)
	if len(args) == 0 || args[0] != "verify" || fs.Parse(args[1:]) != nil || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: elit arc verify [-resolver HOST:PORT] < message")
		return exitUsage
	}
	msg, err := readMessage(stdin)
	if err != nil {
		return fail(stderr, "elit arc verify", err)
	}
	res, err := arc.Verify(context.Background(), cliResolver(*resolver), bytes.NewReader(msg))
	if err != nil {
		return fail(stderr, "elit arc verify", err)
	}
	fmt.Fprintf(stdout, "cv=%s, %d sets", res.Status, res.Sets)
	if res.Err != nil {
		fmt.Fprintf(stdout, ": %v", res.Err)
	}
	fmt.Fprintln(stdout)
	for _, s := range res.Seals {
		fmt.Fprintf(stdout, "i=%d cv=%s d=%s s=%s\n", s.Instance, s.CV, s.Domain, s.Selector)
	}
	if res.Status == arc.Fail {
		return exitProblems
	}
	return exitOK
}
