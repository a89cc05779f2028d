package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"time"
)

// FlagSet returns the flags of elit serve, named name, bound to c's fields
// with c's values as their defaults (the defaults for a Config from
// Default); errors and usage go to output.
func (c *Config) FlagSet(name string, output io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(output)
	fs.StringVar(&c.File, "config", c.File, "JSON `file` of settings: the flag names as keys (\"max-size\": 1000000), plus \"domains\": [...] for more local domains, \"transports\": {name: {type, host, tls, user, password, mechanism, ca-file, socks5}} and \"routes\": [{user, from-domains, to-domains, min-attempt, transport}]; flags given on the command line win")
	fs.StringVar(&c.Domain, "domain", c.Domain, "the mail `domain`: names without @ in the user database are at it (required)")
	fs.StringVar(&c.Hostname, "hostname", c.Hostname, "host `name` in the greeting, EHLO, Received and the self-signed certificate (default: the system host name if it has a dot, else mail.DOMAIN)")
	fs.TextVar(&c.LogLevel, "log-level", c.LogLevel, "log `level`: debug, info, warn or error")

	fs.StringVar(&c.State.Dir, "state", c.State.Dir, "state `directory`: queue, certificate, cached database")

	d := &c.Database
	fs.StringVar(&d.Image, "db", d.Image, "user database: a OneFFS image `file` or block device holding the JSON, or partname:NAME / partuuid:UUID to find the partition (default on the appliance, where /perm exists: partname:oneffs)")
	fs.StringVar(&d.JSON, "db-json", d.JSON, "user database as a plain JSON `file` (development)")
	fs.IntVar(&d.SectorSize, "db-sector-size", d.SectorSize, "OneFFS sector size of -db (default: the device's, or 512 for a file)")
	fs.DurationVar(&d.CheckInterval, "db-check-interval", d.CheckInterval, "how often to look for a changed database (SIGHUP reloads at once); 0 disables")

	r := &c.Receive
	fs.StringVar(&r.MXAddr, "mx-addr", r.MXAddr, "MX listen `address` (\"\" disables)")
	fs.StringVar(&r.SubmissionAddr, "submission-addr", r.SubmissionAddr, "submission (STARTTLS) listen `address` (\"\" disables)")
	fs.StringVar(&r.SubmissionsAddr, "submissions-addr", r.SubmissionsAddr, "submission over implicit TLS listen `address` (\"\" disables)")
	fs.StringVar(&r.Postmaster, "postmaster", r.Postmaster, "`address` that mail to postmaster@ goes to when the database has no postmaster (default: the mailboxes of the first user that can log in)")
	fs.BoolVar(&r.SRS, "srs", r.SRS, "rewrite the envelope sender of forwarded mail (SRS) so that SPF passes at the destination; the key is STATE/srs.key")
	fs.BoolVar(&r.RequireTLS, "requiretls", r.RequireTLS, "offer REQUIRETLS (RFC 8689) inside TLS: mail sent with it is then delivered only over TLS verified by MTA-STS or DANE to servers that offer it, else bounced")
	fs.Int64Var(&r.MaxSize, "max-size", r.MaxSize, "maximum message size in `bytes`")
	fs.IntVar(&r.MaxRecipients, "max-recipients", r.MaxRecipients, "maximum recipients per message")
	fs.IntVar(&r.MaxLineLength, "max-line-length", r.MaxLineLength, "maximum line length in bytes, commands and message")
	fs.IntVar(&r.MaxConns, "max-conns", r.MaxConns, "maximum concurrent connections")
	fs.IntVar(&r.MaxConnsPerIP, "max-conns-per-ip", r.MaxConnsPerIP, "maximum concurrent connections from one client address")
	fs.DurationVar(&r.ReadTimeout, "read-timeout", r.ReadTimeout, "time allowed for each command or piece of message")
	fs.DurationVar(&r.WriteTimeout, "write-timeout", r.WriteTimeout, "time allowed for each reply")
	fs.DurationVar(&r.MaxSessionTime, "max-session-time", r.MaxSessionTime, "maximum length of a connection")
	fs.IntVar(&r.MaxAuthFailures, "max-auth-failures", r.MaxAuthFailures, "failed authentications per connection before it is closed")
	fs.IntVar(&r.MaxAuthFailuresPerIP, "max-auth-failures-per-ip", r.MaxAuthFailuresPerIP, "failed authentications per client address within -auth-failure-window before AUTH is refused")
	fs.DurationVar(&r.AuthFailureWindow, "auth-failure-window", r.AuthFailureWindow, "window for -max-auth-failures-per-ip")
	fs.DurationVar(&r.AuthFailureDelay, "auth-failure-delay", r.AuthFailureDelay, "delay before answering a failed authentication, times the failures so far on the connection (negative: none)")
	fs.IntVar(&r.MaxHops, "max-hops", r.MaxHops, "Received header fields after which a message is refused as a loop")
	fs.IntVar(&r.SoftErrorLimit, "soft-error-limit", r.SoftErrorLimit, "error replies on a connection (unknown user, relay refused, bad command...) after which each error reply waits -error-sleep (Postfix's smtpd_soft_error_limit)")
	fs.IntVar(&r.HardErrorLimit, "hard-error-limit", r.HardErrorLimit, "error replies on a connection after which it is closed with 421 (Postfix's smtpd_hard_error_limit); a message accepted resets the count")
	fs.DurationVar(&r.ErrorSleep, "error-sleep", r.ErrorSleep, "delay of each error reply past -soft-error-limit (negative: none)")
	fs.IntVar(&r.MaxErrorsPerIP, "max-errors-per-ip", r.MaxErrorsPerIP, "error replies to one client (an IPv4 address, an IPv6 /64) within -error-window after which its connections are closed and refused with 421")
	fs.DurationVar(&r.ErrorWindow, "error-window", r.ErrorWindow, "window for -max-errors-per-ip")

	ma := &c.MailAuth
	fs.BoolVar(&ma.Checks, "mail-checks", ma.Checks, "check SPF, DKIM, DMARC, ARC and iprev on the MX and write Authentication-Results")
	fs.BoolVar(&ma.DMARCReject, "dmarc-reject", ma.DMARCReject, "refuse (550) mail that its From domain's DMARC policy rejects (false: mark it, as for p=quarantine)")
	fs.BoolVar(&ma.ARC, "arc", ma.ARC, "ARC-seal the mail the MX forwards to mailboxes elsewhere, with -domain's rsa key (RFC 8617)")
	fs.BoolVar(&ma.Sign, "dkim", ma.Sign, "DKIM-sign submitted mail, notices and forwards with the keys of STATE/dkim/DOMAIN/ (an rsa key for -domain is made at the first start)")
	fs.BoolVar(&ma.Ed25519, "dkim-ed25519", ma.Ed25519, "make and sign with an ed25519 key as well (RFC 8463)")
	fs.StringVar(&ma.AuthServID, "authserv-id", ma.AuthServID, "our `name` in Authentication-Results (default: -hostname)")

	tp := &c.TLSPolicy
	fs.BoolVar(&tp.DANE, "dane", tp.DANE, "follow the destinations' DNSSEC-signed TLSA records (DANE, RFC 7672); needs a validating -resolver on loopback, or -resolver-trust-ad")
	fs.BoolVar(&tp.ResolverTrustAD, "resolver-trust-ad", tp.ResolverTrustAD, "believe the DNSSEC verdict (AD bit) of -resolver even off loopback: only for a validating resolver on a network you trust")
	fs.BoolVar(&tp.MTASTS, "mta-sts", tp.MTASTS, "follow the destinations' MTA-STS policies (RFC 8461), cached in STATE/mta-sts")
	fs.StringVar(&tp.Publish, "mta-sts-publish", tp.Publish, "`mode` of the MTA-STS policy served for our domains at https://mta-sts.DOMAIN/ (testing, enforce, none, off); served only with -acme")
	fs.DurationVar(&tp.PublishMaxAge, "mta-sts-max-age", tp.PublishMaxAge, "max_age of the MTA-STS policy we publish")

	o := &c.Delivery
	fs.BoolVar(&o.Enabled, "deliver", o.Enabled, "deliver queued mail (false: only queue it)")
	fs.StringVar(&o.Resolver, "resolver", o.Resolver, "DNS server `host:port` for outgoing mail (default: the first nameserver of /etc/resolv.conf, read at each lookup)")
	fs.StringVar(&o.Smarthost, "smarthost", o.Smarthost, "relay all outgoing mail through this `host:port` (no MX lookups)")
	fs.StringVar(&o.Port, "delivery-port", o.Port, "destination `port` of direct delivery (tests use another)")
	fs.DurationVar(&o.RetryFirst, "retry-first", o.RetryFirst, "delay before the first retry of a temporary failure; it doubles each time")
	fs.DurationVar(&o.RetryMax, "retry-max", o.RetryMax, "longest delay between two attempts")
	fs.DurationVar(&o.QueueLifetime, "queue-lifetime", o.QueueLifetime, "how long to retry before bouncing")
	fs.IntVar(&o.MaxDeliveries, "max-deliveries", o.MaxDeliveries, "messages in delivery at once")
	fs.IntVar(&o.MaxPerDestination, "max-per-destination", o.MaxPerDestination, "connections to one destination domain or relay at once")
	fs.DurationVar(&o.DelayWarning, "delay-warning", o.DelayWarning, "tell the sender when a message is still undelivered after this long (negative: never)")

	t := &c.TLS
	fs.StringVar(&t.Cert, "tls-cert", t.Cert, "TLS certificate chain, PEM `file` (default: a self-signed one, made once and kept in the state directory)")
	fs.StringVar(&t.Key, "tls-key", t.Key, "TLS private key, PEM `file`")
	a := &c.TLS.ACME
	fs.BoolVar(&a.Enabled, "acme", a.Enabled, "get the host name's certificate by ACME (Let's Encrypt by default), kept in STATE/acme; until it comes, the -tls-cert or self-signed one serves")
	fs.StringVar(&a.Directory, "acme-directory", a.Directory, "ACME directory `URL`")
	fs.StringVar(&a.Email, "acme-email", a.Email, "contact `address` for the ACME account (expiry warnings)")
	fs.StringVar(&a.TLSAddr, "acme-tls-addr", a.TLSAddr, "listen `address` answering TLS-ALPN-01 challenges (port 443 as the ACME server sees it; \"\" disables)")
	fs.StringVar(&a.HTTPAddr, "acme-http-addr", a.HTTPAddr, "listen `address` answering HTTP-01 challenges (port 80 as the ACME server sees it; \"\" disables)")
	fs.StringVar(&a.CAFile, "acme-ca-file", a.CAFile, "PEM `file` of the CA that signs the ACME server's HTTPS certificate (a private ACME server; default: the system's)")

	h := &c.HTTP
	fs.StringVar(&h.MetricsAddr, "metrics-addr", h.MetricsAddr, "serve Prometheus metrics at http://`ADDR`/metrics (\"\" disables; keep it on a private address)")
	fs.StringVar(&h.StatusAddr, "http-addr", h.StatusAddr, "serve the status page and database push (PUT /db) at https://`ADDR`/ to clients on private networks, with basic auth user gokrazy (\"\" disables)")
	fs.StringVar(&h.PasswordFile, "http-password-file", h.PasswordFile, "`file` holding the -http-addr password (default: gokrazy's, /perm/gokr-pw.txt or /etc/gokr-pw.txt)")
	fs.BoolVar(&h.TLS, "http-tls", h.TLS, "serve -http-addr over HTTPS with the server's certificate (false: plain HTTP, where PUT /db is refused)")
	fs.BoolVar(&h.PlainDBPush, "http-plain-db-push", h.PlainDBPush, "accept PUT /db over plain HTTP (-http-tls=false): the password and the users' secrets cross the network readable")

	tr := &c.TLSRPT
	fs.BoolVar(&tr.Enabled, "tlsrpt", tr.Enabled, "SMTP TLS reporting (RFC 8460): count the TLS results of outgoing connections, send daily reports to the domains whose _smtp._tls record asks, and read the reports sent to -tlsrpt-address")
	fs.StringVar(&tr.From, "tlsrpt-from", tr.From, "`address` our TLS reports come from, and their contact (default: postmaster@DOMAIN)")
	fs.StringVar(&tr.Address, "tlsrpt-address", tr.Address, "`address` that takes the TLS reports others send us, for our _smtp._tls record (default: tlsrpt@DOMAIN)")
	return fs
}

// ApplyFile sets the settings of the -config file c.File (if any) that
// the command line did not give: fs is c's FlagSet, after Parse. The file
// is a JSON object whose keys are flag names, plus "domains",
// "transports" and "routes". A flag's value may be a string, a number
// (integers are passed on digit for digit) or a boolean; anything else is
// refused with the key and what it should be, even for a flag the command
// line gives.
func (c *Config) ApplyFile(fs *flag.FlagSet) error {
	path := c.File
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Errorf("config: %w", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return Errorf("config %s: want a JSON object of settings: %w", path, err)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, k := range slices.Sorted(maps.Keys(m)) {
		raw := m[k]
		switch k {
		case "domains":
			if err := json.Unmarshal(raw, &c.Domains); err != nil {
				return Errorf("config %s: domains: want a list of domain names", path)
			}
			continue
		case "transports":
			if err := strictJSON(raw, &c.Delivery.Transports); err != nil {
				return Errorf("config %s: transports: %w", path, err)
			}
			continue
		case "routes":
			if err := strictJSON(raw, &c.Delivery.Routes); err != nil {
				return Errorf("config %s: routes: %w", path, err)
			}
			continue
		}
		f := fs.Lookup(k)
		if k == "config" || f == nil {
			return Errorf("config %s: unknown setting %q", path, k)
		}
		s, err := flagText(raw, f)
		if err != nil {
			return Errorf("config %s: %s: %w", path, k, err)
		}
		if given[k] {
			continue
		}
		if err := fs.Set(k, s); err != nil {
			return Errorf("config %s: %s: invalid value %q: %w", path, k, s, err)
		}
	}
	return nil
}

// flagText turns the JSON value of a flag's setting into the text the flag
// parses: a string as it is, a number as written (an integral one in
// another notation, 1e6 or 1000000.0, as its digits when it is exact in a
// float64), a boolean as true or false.
func flagText(raw json.RawMessage, f *flag.Flag) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", err
	}
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case json.Number:
		s := v.String()
		if _, err := strconv.ParseInt(s, 10, 64); err == nil {
			return s, nil
		}
		if x, err := strconv.ParseFloat(s, 64); err == nil && x == math.Trunc(x) && math.Abs(x) <= 1<<53 {
			return strconv.FormatFloat(x, 'f', 0, 64), nil
		}
		return s, nil
	}
	return "", fmt.Errorf("want %s, got %s", flagKind(f), jsonKind(v))
}

// flagKind says what a flag's value is, for errors.
func flagKind(f *flag.Flag) string {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return "a string"
	}
	switch g.Get().(type) {
	case bool:
		return "a boolean"
	case int, int64, uint, uint64, float64:
		return "a number"
	case time.Duration:
		return `a duration (a string such as "5m")`
	}
	return "a string"
}

// jsonKind names the type of a decoded JSON value, for errors.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	}
	return "a number"
}

// strictJSON decodes raw into v, refusing unknown fields.
func strictJSON(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
