package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/renameio/v2"
	"golang.org/x/crypto/acme/autocert"

	"elit.local/elit/auth"
	"elit.local/elit/decide"
	"elit.local/elit/deliver"
	"elit.local/elit/dns"
	"elit.local/elit/lists"
	"elit.local/elit/mailaddr"
	"elit.local/elit/metrics"
	"elit.local/elit/policy"
	"elit.local/elit/queue"
	"elit.local/elit/receive"
	"elit.local/elit/srs"
	"elit.local/elit/userdb"
	"elit.local/oneffs"
)

// serveConfig is everything elit serve is told.
type serveConfig struct {
	domain, hostname, db, dbJSON, state       string
	mxAddr, submissionAddr, submissionsAddr   string
	tlsCert, tlsKey, resolver, postmaster     string
	logLevel, smarthost, deliveryPort         string
	metricsAddr, httpAddr, httpPasswordFile   string
	useACME                                   bool
	acme                                      acmeConfig
	deliver, useSRS                           bool
	retryFirst, retryMax, lifetime, delayWarn time.Duration
	maxDeliveries, maxPerDest                 int
	extraDomains                              []string
	transports                                map[string]*deliver.Transport
	routes                                    []deliver.Route
	dbInterval                                time.Duration
	sectorSize                                int
	maxSize                                   int64
	readTimeout, writeTimeout, sessionTime    time.Duration
	authDelay, authWindow                     time.Duration
	maxRcpt, maxLine, maxConns, maxConnsPerIP int
	maxAuthFail, maxAuthFailIP, maxHops       int
	softErrors, hardErrors, maxClientErrors   int
	errorSleep, errorWindow                   time.Duration
}

// errConfig is an invalid configuration: exit 125, gokrazy's "do not
// restart me", since restarting will not fix it.
type errConfig struct{ err error }

func (e errConfig) Error() string { return e.err.Error() }

func configErr(format string, args ...any) error { return errConfig{fmt.Errorf(format, args...)} }

func serveFlags(stderr io.Writer) (*flag.FlagSet, *serveConfig, *string) {
	c := &serveConfig{}
	fs := flag.NewFlagSet("elit serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "JSON `file` of settings: the flag names as keys (\"max-size\": 1000000), plus \"domains\": [...] for more local domains, \"transports\": {name: {type, host, tls, user, password, mechanism, ca-file, socks5}} and \"routes\": [{user, from-domains, to-domains, min-attempt, transport}]; flags given on the command line win")
	fs.StringVar(&c.domain, "domain", "", "the mail `domain`: names without @ in the user database are at it (required)")
	fs.StringVar(&c.hostname, "hostname", "", "host `name` in the greeting, EHLO, Received and the self-signed certificate (default: the system host name if it has a dot, else mail.DOMAIN)")
	fs.StringVar(&c.db, "db", "", "user database: a OneFFS image `file` or block device holding the JSON, or partname:NAME / partuuid:UUID to find the partition (default on the appliance, where /perm exists: partname:oneffs)")
	fs.StringVar(&c.dbJSON, "db-json", "", "user database as a plain JSON `file` (development)")
	fs.IntVar(&c.sectorSize, "db-sector-size", 0, "OneFFS sector size of -db (default: the device's, or 512 for a file)")
	fs.DurationVar(&c.dbInterval, "db-check-interval", 30*time.Second, "how often to look for a changed database (SIGHUP reloads at once); 0 disables")
	fs.StringVar(&c.state, "state", defaultState(), "state `directory`: queue, certificate, cached database")
	fs.StringVar(&c.mxAddr, "mx-addr", ":25", "MX listen `address` (\"\" disables)")
	fs.StringVar(&c.submissionAddr, "submission-addr", ":587", "submission (STARTTLS) listen `address` (\"\" disables)")
	fs.StringVar(&c.submissionsAddr, "submissions-addr", ":465", "submission over implicit TLS listen `address` (\"\" disables)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "TLS certificate chain, PEM `file` (default: a self-signed one, made once and kept in the state directory)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "TLS private key, PEM `file`")
	fs.BoolVar(&c.useACME, "acme", false, "get the host name's certificate by ACME (Let's Encrypt by default), kept in STATE/acme; until it comes, the -tls-cert or self-signed one serves")
	fs.StringVar(&c.acme.directory, "acme-directory", autocert.DefaultACMEDirectory, "ACME directory `URL`")
	fs.StringVar(&c.acme.email, "acme-email", "", "contact `address` for the ACME account (expiry warnings)")
	fs.StringVar(&c.acme.tlsAddr, "acme-tls-addr", ":443", "listen `address` answering TLS-ALPN-01 challenges (port 443 as the ACME server sees it; \"\" disables)")
	fs.StringVar(&c.acme.httpAddr, "acme-http-addr", "", "listen `address` answering HTTP-01 challenges (port 80 as the ACME server sees it; \"\" disables)")
	fs.StringVar(&c.acme.caFile, "acme-ca-file", "", "PEM `file` of the CA that signs the ACME server's HTTPS certificate (a private ACME server; default: the system's)")
	fs.StringVar(&c.resolver, "resolver", "", "DNS server `host:port` for outgoing mail (default: the first nameserver of /etc/resolv.conf, read at each lookup)")
	fs.StringVar(&c.postmaster, "postmaster", "", "`address` that mail to postmaster@ goes to when the database has no postmaster (default: the mailboxes of the first user that can log in)")
	fs.Int64Var(&c.maxSize, "max-size", 10_240_000, "maximum message size in `bytes`")
	fs.IntVar(&c.maxRcpt, "max-recipients", 100, "maximum recipients per message")
	fs.IntVar(&c.maxLine, "max-line-length", 4096, "maximum line length in bytes, commands and message")
	fs.IntVar(&c.maxConns, "max-conns", 500, "maximum concurrent connections")
	fs.IntVar(&c.maxConnsPerIP, "max-conns-per-ip", 50, "maximum concurrent connections from one client address")
	fs.DurationVar(&c.readTimeout, "read-timeout", 5*time.Minute, "time allowed for each command or piece of message")
	fs.DurationVar(&c.writeTimeout, "write-timeout", 5*time.Minute, "time allowed for each reply")
	fs.DurationVar(&c.sessionTime, "max-session-time", time.Hour, "maximum length of a connection")
	fs.IntVar(&c.maxAuthFail, "max-auth-failures", 3, "failed authentications per connection before it is closed")
	fs.IntVar(&c.maxAuthFailIP, "max-auth-failures-per-ip", 10, "failed authentications per client address within -auth-failure-window before AUTH is refused")
	fs.DurationVar(&c.authWindow, "auth-failure-window", 15*time.Minute, "window for -max-auth-failures-per-ip")
	fs.DurationVar(&c.authDelay, "auth-failure-delay", time.Second, "delay before answering a failed authentication, times the failures so far on the connection (negative: none)")
	fs.IntVar(&c.maxHops, "max-hops", 50, "Received header fields after which a message is refused as a loop")
	fs.IntVar(&c.softErrors, "soft-error-limit", 10, "error replies on a connection (unknown user, relay refused, bad command...) after which each error reply waits -error-sleep (Postfix's smtpd_soft_error_limit)")
	fs.IntVar(&c.hardErrors, "hard-error-limit", 20, "error replies on a connection after which it is closed with 421 (Postfix's smtpd_hard_error_limit); a message accepted resets the count")
	fs.DurationVar(&c.errorSleep, "error-sleep", time.Second, "delay of each error reply past -soft-error-limit (negative: none)")
	fs.IntVar(&c.maxClientErrors, "max-errors-per-ip", 100, "error replies to one client (an IPv4 address, an IPv6 /64) within -error-window after which its connections are closed and refused with 421")
	fs.DurationVar(&c.errorWindow, "error-window", time.Hour, "window for -max-errors-per-ip")
	fs.BoolVar(&c.useSRS, "srs", true, "rewrite the envelope sender of forwarded mail (SRS) so that SPF passes at the destination; the key is STATE/srs.key")
	fs.BoolVar(&c.deliver, "deliver", true, "deliver queued mail (false: only queue it)")
	fs.StringVar(&c.smarthost, "smarthost", "", "relay all outgoing mail through this `host:port` (no MX lookups)")
	fs.StringVar(&c.deliveryPort, "delivery-port", "25", "destination `port` of direct delivery (tests use another)")
	fs.DurationVar(&c.retryFirst, "retry-first", 5*time.Minute, "delay before the first retry of a temporary failure; it doubles each time")
	fs.DurationVar(&c.retryMax, "retry-max", 8*time.Hour, "longest delay between two attempts")
	fs.DurationVar(&c.lifetime, "queue-lifetime", 5*24*time.Hour, "how long to retry before bouncing")
	fs.IntVar(&c.maxDeliveries, "max-deliveries", 20, "messages in delivery at once")
	fs.IntVar(&c.maxPerDest, "max-per-destination", 10, "connections to one destination domain or relay at once")
	fs.DurationVar(&c.delayWarn, "delay-warning", 4*time.Hour, "tell the sender when a message is still undelivered after this long (negative: never)")
	fs.StringVar(&c.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://`ADDR`/metrics (\"\" disables; keep it on a private address)")
	fs.StringVar(&c.httpAddr, "http-addr", "", "serve the status page and database push (PUT /db) at http://`ADDR`/ to clients on private networks, with basic auth user gokrazy (\"\" disables)")
	fs.StringVar(&c.httpPasswordFile, "http-password-file", "", "`file` holding the -http-addr password (default: gokrazy's, /perm/gokr-pw.txt or /etc/gokr-pw.txt)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: elit serve -domain DOMAIN (-db IMG | -db-json FILE) [flags]")
		fmt.Fprintln(stderr, "\nOne process: MX on port 25, submission on 587 (STARTTLS) and 465 (TLS).")
		fmt.Fprintln(stderr, "SIGHUP reloads the user database; SIGTERM stops. Exit 125: invalid configuration.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	return fs, c, configFile
}

func defaultState() string {
	if fi, err := os.Stat("/perm"); err == nil && fi.IsDir() {
		return "/perm/elit"
	}
	return "elit-state"
}

// applyConfigFile sets the flags not given on the command line from a JSON
// object whose keys are flag names. A flag's value may be a string, a
// number (integers are passed on digit for digit) or a boolean; anything
// else is refused with the key and what it should be, even for a flag the
// command line gives.
func applyConfigFile(fs *flag.FlagSet, c *serveConfig, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return configErr("config: %w", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return configErr("config %s: want a JSON object of settings: %w", path, err)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, k := range slices.Sorted(maps.Keys(m)) {
		raw := m[k]
		switch k {
		case "domains":
			if err := json.Unmarshal(raw, &c.extraDomains); err != nil {
				return configErr("config %s: domains: want a list of domain names", path)
			}
			continue
		case "transports":
			if err := strictJSON(raw, &c.transports); err != nil {
				return configErr("config %s: transports: %w", path, err)
			}
			continue
		case "routes":
			if err := strictJSON(raw, &c.routes); err != nil {
				return configErr("config %s: routes: %w", path, err)
			}
			continue
		}
		f := fs.Lookup(k)
		if k == "config" || f == nil {
			return configErr("config %s: unknown setting %q", path, k)
		}
		s, err := flagText(raw, f)
		if err != nil {
			return configErr("config %s: %s: %w", path, k, err)
		}
		if given[k] {
			continue
		}
		if err := fs.Set(k, s); err != nil {
			return configErr("config %s: %s: invalid value %q: %w", path, k, s, err)
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

func strictJSON(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func cmdServe(args []string, stderr io.Writer) int {
	fs, c, configFile := serveFlags(stderr)
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
	if *configFile != "" {
		if err := applyConfigFile(fs, c, *configFile); err != nil {
			fmt.Fprintf(stderr, "elit serve: %v\n", err)
			return exitFailure
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, c, stderr); err != nil {
		fmt.Fprintf(stderr, "elit serve: %v\n", err)
		var ce errConfig
		if errors.As(err, &ce) {
			return exitFailure
		}
		return 1
	}
	return exitOK
}

func (c *serveConfig) check() error {
	if c.domain == "" {
		return configErr("-domain is required")
	}
	d, err := mailaddr.ParseDomain(c.domain)
	if err != nil || strings.HasPrefix(d, "[") {
		return configErr("-domain %q: not a domain name", c.domain)
	}
	c.domain = d
	if c.db == "" && c.dbJSON == "" {
		if fi, err := os.Stat("/perm"); err == nil && fi.IsDir() {
			c.db = "partname:oneffs" // the appliance: the partition image/ makes
		}
	}
	if (c.db == "") == (c.dbJSON == "") {
		return configErr("give the user database with exactly one of -db IMG and -db-json FILE")
	}
	if c.hostname == "" {
		c.hostname = "mail." + c.domain
		if h, err := os.Hostname(); err == nil && strings.Contains(h, ".") {
			c.hostname = h
		}
	}
	if h, err := mailaddr.ParseDomain(c.hostname); err != nil || strings.HasPrefix(h, "[") {
		return configErr("-hostname %q: not a host name", c.hostname)
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return configErr("-tls-cert and -tls-key go together")
	}
	for _, a := range []struct{ name, addr string }{{"mx-addr", c.mxAddr}, {"submission-addr", c.submissionAddr}, {"submissions-addr", c.submissionsAddr}} {
		if a.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return configErr("-%s %q: want host:port or :port", a.name, a.addr)
		}
	}
	if c.mxAddr == "" && c.submissionAddr == "" && c.submissionsAddr == "" {
		return configErr("every listener is disabled")
	}
	if c.resolver != "" {
		if _, _, err := net.SplitHostPort(c.resolver); err != nil {
			return configErr("-resolver %q: want host:port", c.resolver)
		}
	}
	if c.smarthost != "" {
		if _, _, err := net.SplitHostPort(c.smarthost); err != nil {
			return configErr("-smarthost %q: want host:port", c.smarthost)
		}
	}
	if c.retryFirst <= 0 || c.retryMax < c.retryFirst || c.lifetime <= 0 || c.maxDeliveries <= 0 || c.maxPerDest <= 0 {
		return configErr("-retry-first, -retry-max, -queue-lifetime and -max-deliveries must be positive, -retry-max at least -retry-first")
	}
	if c.postmaster != "" {
		if _, err := mailaddr.Parse(c.postmaster); err != nil {
			return configErr("-postmaster %q: %v", c.postmaster, err)
		}
	}
	for _, n := range []struct {
		name string
		v    int64
	}{{"max-size", c.maxSize}, {"max-recipients", int64(c.maxRcpt)}, {"max-line-length", int64(c.maxLine)},
		{"max-conns", int64(c.maxConns)}, {"max-conns-per-ip", int64(c.maxConnsPerIP)}, {"max-auth-failures", int64(c.maxAuthFail)},
		{"max-auth-failures-per-ip", int64(c.maxAuthFailIP)}, {"max-hops", int64(c.maxHops)},
		{"soft-error-limit", int64(c.softErrors)}, {"hard-error-limit", int64(c.hardErrors)}, {"max-errors-per-ip", int64(c.maxClientErrors)}} {
		if n.v <= 0 {
			return configErr("-%s must be positive", n.name)
		}
	}
	if c.maxLine < 1000 {
		return configErr("-max-line-length must be at least 1000 (RFC 5321 §4.5.3.1.6)")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"read-timeout", c.readTimeout}, {"write-timeout", c.writeTimeout}, {"max-session-time", c.sessionTime}, {"auth-failure-window", c.authWindow}, {"error-window", c.errorWindow}} {
		if d.v <= 0 {
			return configErr("-%s must be positive", d.name)
		}
	}
	return nil
}

func serve(ctx context.Context, c *serveConfig, stderr io.Writer) error {
	if err := c.check(); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return configErr("-log-level %q: %w", c.logLevel, err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	// Queue timestamps, retry times, certificate validity and Date headers
	// all need the time; a Raspberry Pi has no clock until NTP answers.
	if err := waitForClock(ctx, log, time.Now, time.Sleep); err != nil {
		return err
	}

	if err := os.MkdirAll(c.state, 0o700); err != nil {
		return configErr("state directory: %w", err)
	}
	// One server a state directory, and no offline elit queue edit while
	// it runs: held until serve returns (the kernel drops it if we die).
	lock, err := queue.LockDir(filepath.Join(c.state, "queue"), lockWait)
	if errors.Is(err, queue.ErrLocked) {
		return configErr("state directory %s is in use by another elit serve or elit queue (%w)", c.state, err)
	}
	if err != nil {
		return configErr("%w", err)
	}
	defer lock.Unlock()
	q, err := queue.Open(filepath.Join(c.state, "queue"), queue.WithLog(log.With("job", "queue")))
	if err != nil {
		return configErr("%w", err)
	}

	var opts []oneffs.Option
	if c.db != "" && c.sectorSize != 0 {
		opts = append(opts, oneffs.WithSectorSize(c.sectorSize))
	}
	loader := userdb.NewLoader(c.dbSource(), filepath.Join(c.state, "users.json"), log, c.domain, c.extraDomains, opts...)
	if err := loader.Load(); err != nil {
		return configErr("%w", err)
	}
	postmaster := c.postmaster
	if postmaster == "" {
		for _, u := range loader.DB().Users() {
			if u.CanLogin() {
				postmaster = u.Address
				break
			}
		}
		if postmaster != "" {
			log.Info("postmaster@ mail goes to the first user that can log in", "postmaster", postmaster)
		} else {
			log.Warn("no postmaster: set -postmaster or add a user named postmaster")
		}
	}

	cert, err := loadCertificate(c, log)
	if err != nil {
		return err
	}
	certs := newCertSource(c.hostname, cert, log.With("job", "certs"))
	if c.useACME {
		c.acme.cacheDir = acmeCacheDir(c.state)
		if err := certs.startACME(ctx, c.acme); err != nil {
			return err
		}
	}
	tlsConfig := &tls.Config{
		GetCertificate: certs.GetCertificate,
		MinVersion:     tls.VersionTLS12,
	}

	// One secret signs the addresses we hand out: SRS addresses and the
	// bounce addresses of list members.
	key, err := loadKey(filepath.Join(c.state, "srs.key"), log)
	if err != nil {
		return configErr("SRS key: %w", err)
	}
	var rewriter *srs.SRS
	if c.useSRS {
		rewriter = &srs.SRS{Key: key, Domain: c.domain}
	}
	signer := lists.NewSigner(key)

	bounces, err := lists.Open(filepath.Join(c.state, "list-bounces.json"))
	if err != nil {
		return configErr("list bounces: %w", err)
	}
	defer bounces.Close()
	listBounce := func(list, member, reason string) {
		if err := bounces.Record(list, member, reason, time.Now()); err != nil {
			log.Error("recording a list bounce", "list", list, "member", member, "err", err)
		}
	}

	notify := holdDeliverer(log)
	var deliverer *deliver.Deliverer
	{
		deliverer, err = deliver.New(deliver.Config{
			Queue:        q,
			Resolver:     &dns.Client{Server: c.resolver, ResolvConf: resolvConf},
			Users:        loader.DB,
			Hostname:     c.hostname,
			Log:          log.With("job", "deliver"),
			Smarthost:    c.smarthost,
			Transports:   c.transports,
			ListBounce:   listBounce,
			ListSigner:   signer,
			Routes:       c.routes,
			Port:         c.deliveryPort,
			FirstRetry:   c.retryFirst,
			MaxRetry:     c.retryMax,
			Lifetime:     c.lifetime,
			DelayWarning: c.delayWarn,
			MaxParallel:  c.maxDeliveries,
			MaxPerDest:   c.maxPerDest,
		})
		if err != nil {
			return configErr("%w", err)
		}
		if c.deliver {
			notify = deliverer.Notify
		}
	}

	steps := decide.Steps{
		&policy.Hops{Max: c.maxHops, Log: log},
		&policy.Sender{Users: loader.DB, Log: log},
		&policy.Route{Users: loader.DB, Postmaster: postmaster, SRS: rewriter, ListSigner: signer, ListBounce: listBounce, Log: log},
	}
	srv, err := receive.New(receive.Config{
		Hostname:          c.hostname,
		Steps:             steps,
		Auth:              &auth.Server{Users: loader.DB, Hostname: c.hostname},
		Queue:             q,
		Deliver:           notify,
		Log:               log,
		TLS:               tlsConfig,
		CertDER:           certs.CertDER,
		MaxSize:           c.maxSize,
		MaxRecipients:     c.maxRcpt,
		MaxLineLength:     c.maxLine,
		ReadTimeout:       c.readTimeout,
		WriteTimeout:      c.writeTimeout,
		MaxSessionTime:    c.sessionTime,
		MaxConns:          c.maxConns,
		MaxConnsPerIP:     c.maxConnsPerIP,
		MaxAuthFailures:   c.maxAuthFail,
		MaxAuthFailIP:     c.maxAuthFailIP,
		AuthFailWindow:    c.authWindow,
		AuthFailureDelay:  c.authDelay,
		SoftErrorLimit:    c.softErrors,
		HardErrorLimit:    c.hardErrors,
		ErrorSleep:        c.errorSleep,
		MaxClientErrors:   c.maxClientErrors,
		ClientErrorWindow: c.errorWindow,
	})
	if err != nil {
		return err
	}

	type listener struct {
		l    net.Listener
		mode receive.Mode
	}
	var ls []listener
	for _, a := range []struct {
		addr string
		mode receive.Mode
	}{{c.mxAddr, receive.MX}, {c.submissionAddr, receive.Submission}, {c.submissionsAddr, receive.Submissions}} {
		if a.addr == "" {
			continue
		}
		l, err := net.Listen("tcp", a.addr)
		if err != nil {
			for _, o := range ls {
				o.l.Close()
			}
			return fmt.Errorf("%v: %w", a.mode, err)
		}
		ls = append(ls, listener{l, a.mode})
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading the user database")
				loader.Load()
			}
		}
	}()
	if c.dbInterval > 0 {
		go loader.Watch(ctx, c.dbInterval)
	}

	resolver := c.resolver
	if resolver == "" {
		resolver = resolvConf
	}
	log.Info("elit serving", "version", version, "domain", c.domain, "hostname", c.hostname, "state", c.state, "resolver", resolver, "smarthost", c.smarthost, "deliver", c.deliver)
	boot := readBootInfo("/proc/cmdline")
	if c.metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics.Default)
		addr, err := listenHTTP(ctx, c.metricsAddr, &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second})
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		log.Info("metrics listening", "addr", addr.String())
	}
	if c.httpAddr != "" {
		files := defaultPasswordFiles
		if c.httpPasswordFile != "" {
			files = []string{c.httpPasswordFile}
		}
		pw, err := readPasswordFile(files)
		if err != nil {
			return configErr("-http-addr: %w", err)
		}
		st := &statusServer{c: c, q: q, loader: loader, certs: certs, boot: boot, password: pw, started: time.Now(), log: log.With("job", "http")}
		if err := st.serve(ctx, c.httpAddr); err != nil {
			return fmt.Errorf("status page: %w", err)
		}
	}
	if err := serveControl(ctx, c.state, deliverer, log); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	trialWatchdog(ctx, log, boot.Trial, "/dev/watchdog")
	var wg sync.WaitGroup
	if c.deliver {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deliverer.Run(ctx)
		}()
	}
	errc := make(chan error, len(ls))
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ctx, l.l, l.mode); err != nil {
				errc <- fmt.Errorf("%v: %w", l.mode, err)
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	log.Info("elit stopped")
	return nil
}

// resolvConf names the DNS server when -resolver does not; DHCP writes it,
// on the appliance after elit has started.
const resolvConf = "/etc/resolv.conf"

// listenHTTP serves hs on addr until ctx ends.
func listenHTTP(ctx context.Context, addr string, hs *http.Server) (net.Addr, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	go hs.Serve(l)
	go func() {
		<-ctx.Done()
		hs.Close()
	}()
	return l.Addr(), nil
}

// dbSource is where the user database comes from.
func (c *serveConfig) dbSource() string {
	if c.db != "" {
		return c.db
	}
	return c.dbJSON
}

// clockFloor is a time before which the clock is surely unset (a board
// without a real-time clock boots in 1970).
var clockFloor = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// waitForClock returns once the clock is past clockFloor, or when ctx ends.
func waitForClock(ctx context.Context, log *slog.Logger, now func() time.Time, sleep func(time.Duration)) error {
	for i := 0; now().Before(clockFloor); i++ {
		if i == 0 {
			log.Warn("waiting for the clock to be set (NTP)", "now", now())
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		sleep(time.Second)
	}
	return nil
}

// holdDeliverer is the Deliver of -deliver=false: messages stay queued,
// pending.
func holdDeliverer(log *slog.Logger) func(*queue.Message) {
	return func(m *queue.Message) {
		log.Debug("queued, delivery off", "id", m.ID)
	}
}

// minKeyLen is the shortest secret key loadKey accepts.
const minKeyLen = 16

// loadKey reads a secret key file, making it (32 random bytes) the first
// time. A key file that exists but is too short is refused rather than
// replaced: a new key would invalidate everything signed with the old one
// (every SRS address in flight).
func loadKey(path string, log *slog.Logger) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err == nil {
		if len(key) < minKeyLen {
			return nil, fmt.Errorf("%s: %d bytes, a key needs at least %d; restore the old key, or remove the file to make a new one (which invalidates the addresses made with the old)", path, len(key), minKeyLen)
		}
		return key, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("making %s: %w", path, err)
	}
	if err := renameio.WriteFile(path, key, 0o600); err != nil {
		return nil, err
	}
	log.Info("generated a key", "path", path)
	return key, nil
}

// loadCertificate loads -tls-cert/-tls-key, or the self-signed certificate
// of the state directory, making it the first time.
func loadCertificate(c *serveConfig, log *slog.Logger) (tls.Certificate, error) {
	if c.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			return cert, configErr("TLS certificate: %w", err)
		}
		return cert, nil
	}
	dir := filepath.Join(c.state, "tls")
	certPath, keyPath := filepath.Join(dir, "selfsigned.pem"), filepath.Join(dir, "selfsigned.key")
	if cert, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		leaf, _ := x509.ParseCertificate(cert.Certificate[0])
		if leaf != nil && leaf.VerifyHostname(c.hostname) == nil && time.Now().Before(leaf.NotAfter) {
			return cert, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: c.hostname},
		DNSNames:              []string{c.hostname},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, configErr("%w", err)
	}
	if err := renameio.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return tls.Certificate{}, configErr("%w", err)
	}
	if err := renameio.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return tls.Certificate{}, configErr("%w", err)
	}
	log.Warn("generated a self-signed TLS certificate; give -tls-cert and -tls-key for one clients can verify", "cert", certPath, "hostname", c.hostname)
	return tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
}
