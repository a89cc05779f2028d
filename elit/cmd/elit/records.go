package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"

	"elit.local/elit/certs"
	"elit.local/elit/config"
	"elit.local/elit/dns"
	"elit.local/elit/mailauth"
)

// cmdDNSRecords: elit dns-records -domain D [-hostname H] [-state DIR]
// and the settings of elit serve the records depend on, the list of the
// status page.
func cmdDNSRecords(args []string, stdout, stderr io.Writer) int {
	c := config.Default()
	fs := flag.NewFlagSet("elit dns-records", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Domain, "domain", "", "the mail `domain`")
	fs.StringVar(&c.Hostname, "hostname", "", "the server's host `name` (default: mail.DOMAIN)")
	fs.StringVar(&c.State.Dir, "state", c.State.Dir, "the state `directory` of elit serve (its DKIM keys, its TLS key)")
	tlsCert := fs.String("tls-cert", "", "the certificate `file` elit serve is given (-tls-cert), for its TLSA record; default: the server's own key")
	fs.BoolVar(&c.TLSRPT.Enabled, "tlsrpt", c.TLSRPT.Enabled, "as elit serve's -tlsrpt")
	fs.StringVar(&c.TLSRPT.Address, "tlsrpt-address", "", "as elit serve's -tlsrpt-address")
	fs.StringVar(&c.TLSPolicy.Publish, "mta-sts-publish", c.TLSPolicy.Publish, "as elit serve's -mta-sts-publish")
	fs.DurationVar(&c.TLSPolicy.PublishMaxAge, "mta-sts-max-age", c.TLSPolicy.PublishMaxAge, "as elit serve's -mta-sts-max-age")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || c.Domain == "" {
		fmt.Fprintln(stderr, "usage: elit dns-records -domain DOMAIN [-hostname HOST] [-state DIR] [-tls-cert FILE] [serve's -tlsrpt, -mta-sts flags]")
		return exitUsage
	}
	if c.Hostname == "" {
		c.Hostname = "mail." + c.Domain
	}
	keys, err := mailauth.LoadKeys(c.State.DKIM())
	if err != nil {
		return fail(stderr, "elit dns-records", err)
	}
	// The TLSA record of the key the MX serves: the given certificate's,
	// or the server's own (made at its first start).
	var tlsa dns.TLSA
	if *tlsCert != "" {
		tlsa, err = certs.FileTLSA(*tlsCert)
	} else if key, kerr := certs.ReadKey(c.State.SelfSigned()); kerr == nil {
		tlsa, err = certs.KeyTLSA(&key.PublicKey)
	} else if !errors.Is(kerr, iofs.ErrNotExist) {
		err = kerr
	}
	if err != nil {
		return fail(stderr, "elit dns-records", err)
	}
	data := ""
	if tlsa.Data != nil {
		data = tlsa.String()
	}
	for _, r := range c.DNSRecords(keys.For(c.Domain), data) {
		fmt.Fprintln(stdout, r.String())
	}
	return exitOK
}
