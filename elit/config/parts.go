package config

import (
	"cmp"
	"crypto/tls"
	"log/slog"
	"slices"
	"strings"

	"elit.local/elit/auth"
	"elit.local/elit/certs"
	"elit.local/elit/decide"
	"elit.local/elit/deliver"
	"elit.local/elit/dns"
	"elit.local/elit/lists"
	"elit.local/elit/mailauth"
	"elit.local/elit/mtasts"
	"elit.local/elit/policy"
	"elit.local/elit/queue"
	"elit.local/elit/receive"
	"elit.local/elit/records"
	"elit.local/elit/srs"
	"elit.local/elit/tlspolicy"
	"elit.local/elit/tlsrpt"
	"elit.local/elit/userdb"
	"elit.local/oneffs"
)

// Parts are what the server makes at start and the configurations of
// receiving and delivery refer to.
type Parts struct {
	Queue *queue.Store
	Users func() *userdb.DB // the user database in use
	Log   *slog.Logger
	// TLS is the server's TLS configuration; CertDER the leaf in use.
	TLS     *tls.Config
	CertDER func() []byte
	// Key is the secret that signs SRS addresses; ListSigner signs the
	// bounce addresses of list members (made from the same key), and
	// ListBounce records a bounce of a list member.
	Key        []byte
	ListSigner *lists.Signer
	ListBounce func(list, member, reason string)
	// Postmaster is where postmaster@ goes when Receive.Postmaster does
	// not say.
	Postmaster string
	// Notify tells the deliverer of a message queued (when delivery is
	// on).
	Notify func(*queue.Message)
	// Resolver is the DNS of the checks and of delivery; nil: the one
	// -resolver says.
	Resolver dns.Resolver
	// Keys are the DKIM keys (nil: no signing, no sealing).
	Keys *mailauth.Keys
	// TLSReports counts the outbound TLS results and TLSReportInbox keeps
	// the reports received (TLS reporting; nil: none); Destinations
	// remembers what the destinations' servers offered.
	TLSReports     *tlsrpt.Store
	TLSReportInbox *tlsrpt.Inbox
	Destinations   *deliver.Destinations
	// MTASTS is the cache of the destinations' MTA-STS policies (nil:
	// none followed).
	MTASTS *mtasts.Cache
}

// resolver is p's Resolver or the one the configuration says.
func (c *Config) resolver(p Parts) dns.Resolver {
	if p.Resolver != nil {
		return p.Resolver
	}
	return c.DNS()
}

// DNS is the resolver the settings say: -resolver, else resolv.conf's
// first server, read at each lookup.
func (c *Config) DNS() *dns.Client {
	return &dns.Client{Server: c.Delivery.Resolver, ResolvConf: ResolvConf, TrustAD: c.TLSPolicy.ResolverTrustAD}
}

// OutboundTLS is the TLS policy of delivery: DANE, MTA-STS, then
// opportunistic TLS, as the settings say.
func (c *Config) OutboundTLS(p Parts) *tlspolicy.Chain {
	ch := &tlspolicy.Chain{}
	if c.TLSPolicy.DANE {
		ch.DANE = c.resolver(p)
	}
	if c.TLSPolicy.MTASTS && p.MTASTS != nil {
		ch.STS = p.MTASTS.Policy
	}
	return ch
}

// MailAuthStep is the mail authentication step: checks, seals and signatures.
func (c *Config) MailAuthStep(p Parts) *mailauth.Step {
	m := c.MailAuth
	return &mailauth.Step{
		Resolver:   c.resolver(p),
		Keys:       p.Keys,
		AuthServID: m.AuthServID,
		Domain:     c.Domain,
		Local: func(d string) bool {
			db := p.Users()
			return db != nil && db.IsLocalDomain(d)
		},
		Check:  m.Checks,
		Reject: m.DMARCReject,
		Seal:   m.ARC,
		Sign:   m.Sign,
		Log:    p.Log.With("job", "mailauth"),
	}
}

// Steps are the decide steps, in order (elit/decide): the hop count, the
// sender binding of submission, then where each recipient goes.
func (c *Config) Steps(p Parts) decide.Steps {
	r := c.Receive
	var rewriter *srs.SRS
	if r.SRS {
		rewriter = &srs.SRS{Key: p.Key, Domain: c.Domain}
	}
	steps := decide.Steps{
		&policy.Hops{Max: r.MaxHops, Log: p.Log},
		&policy.Sender{Users: p.Users, Log: p.Log},
	}
	if s := c.TLSReportStep(p); s != nil {
		steps = append(steps, s) // before Route: it takes our reporting address
	}
	return append(steps,
		&policy.Route{Users: p.Users, Postmaster: cmp.Or(r.Postmaster, p.Postmaster), SRS: rewriter,
			ListSigner: p.ListSigner, ListBounce: p.ListBounce, Log: p.Log},
		c.MailAuthStep(p),
	)
}

// TLSReportStep is the decide step that reads the TLS reports sent to us
// (nil when TLS reporting is off).
func (c *Config) TLSReportStep(p Parts) *tlsrpt.Step {
	if !c.TLSRPT.Enabled {
		return nil
	}
	return &tlsrpt.Step{Inbox: p.TLSReportInbox, Address: c.TLSRPT.ReportAddress(c.Domain), Log: p.Log.With("job", "tlsrpt")}
}

// TLSReportSender sends our daily TLS reports (nil when TLS reporting is
// off): by mail through the queue, DKIM-signed as notices are.
func (c *Config) TLSReportSender(p Parts) *tlsrpt.Sender {
	if !c.TLSRPT.Enabled {
		return nil
	}
	return &tlsrpt.Sender{Store: p.TLSReports, Resolver: c.resolver(p), Domain: c.Domain, Hostname: c.Hostname,
		From: c.TLSRPT.FromAddress(c.Domain), Queue: p.Queue, Notify: p.Notify, Sign: c.MailAuthStep(p).SignNotice,
		Log: p.Log.With("job", "tlsrpt")}
}

// ReceiveConfig is the configuration of the SMTP server. It is the one place
// a receive.Config is made.
func (c *Config) ReceiveConfig(p Parts) receive.Config {
	r := c.Receive
	notify := p.Notify
	if !c.Delivery.Enabled || notify == nil {
		log := p.Log
		notify = func(m *queue.Message) { log.Debug("queued, delivery off", "id", m.ID) }
	}
	return receive.Config{
		Hostname:          c.Hostname,
		Steps:             c.Steps(p),
		Auth:              &auth.Server{Users: p.Users, Hostname: c.Hostname},
		Queue:             p.Queue,
		Deliver:           notify,
		Log:               p.Log,
		TLS:               p.TLS,
		CertDER:           p.CertDER,
		MaxSize:           r.MaxSize,
		MaxRecipients:     r.MaxRecipients,
		MaxLineLength:     r.MaxLineLength,
		ReadTimeout:       r.ReadTimeout,
		WriteTimeout:      r.WriteTimeout,
		MaxSessionTime:    r.MaxSessionTime,
		MaxConns:          r.MaxConns,
		MaxConnsPerIP:     r.MaxConnsPerIP,
		MaxAuthFailures:   r.MaxAuthFailures,
		MaxAuthFailIP:     r.MaxAuthFailuresPerIP,
		AuthFailWindow:    r.AuthFailureWindow,
		AuthFailureDelay:  r.AuthFailureDelay,
		SoftErrorLimit:    r.SoftErrorLimit,
		HardErrorLimit:    r.HardErrorLimit,
		ErrorSleep:        r.ErrorSleep,
		MaxClientErrors:   r.MaxErrorsPerIP,
		ClientErrorWindow: r.ErrorWindow,
		NoREQUIRETLS:      !r.RequireTLS,
	}
}

// DeliverConfig is the configuration of the deliverer.
func (c *Config) DeliverConfig(p Parts) deliver.Config {
	o := c.Delivery
	return deliver.Config{
		Queue:        p.Queue,
		Resolver:     c.resolver(p),
		Sign:         c.MailAuthStep(p).SignNotice,
		Users:        deliver.CurrentUsers(p.Users),
		Hostname:     c.Hostname,
		Log:          p.Log.With("job", "deliver"),
		Smarthost:    o.Smarthost,
		Transports:   o.Transports,
		ListBounce:   p.ListBounce,
		ListSigner:   p.ListSigner,
		Routes:       o.Routes,
		Port:         o.Port,
		FirstRetry:   o.RetryFirst,
		MaxRetry:     o.RetryMax,
		Lifetime:     o.QueueLifetime,
		DelayWarning: o.DelayWarning,
		MaxParallel:  o.MaxDeliveries,
		MaxPerDest:   o.MaxPerDestination,
		TLSReporter:  c.tlsReporter(p),
		TLSPolicy:    c.OutboundTLS(p),
		Destinations: p.Destinations,
	}
}

// tlsReporter is what the deliverer tells each TLS outcome: the TLS
// report results when TLS reporting is on.
func (c *Config) tlsReporter(p Parts) deliver.TLSReporter {
	if !c.TLSRPT.Enabled || p.TLSReports == nil {
		return nil
	}
	return p.TLSReports
}

// Listener is an SMTP listener to open.
type Listener struct {
	Addr string
	Mode receive.Mode
}

// Listeners are the SMTP listeners not disabled.
func (c *Config) Listeners() []Listener {
	var ls []Listener
	for _, l := range []Listener{{c.Receive.MXAddr, receive.MX}, {c.Receive.SubmissionAddr, receive.Submission}, {c.Receive.SubmissionsAddr, receive.Submissions}} {
		if l.Addr != "" {
			ls = append(ls, l)
		}
	}
	return ls
}

// CertsConfig is where the TLS certificate comes from.
func (c *Config) CertsConfig() certs.Config {
	a := c.TLS.ACME
	return certs.Config{
		Hostname:      c.Hostname,
		CertFile:      c.TLS.Cert,
		KeyFile:       c.TLS.Key,
		SelfSignedDir: c.State.SelfSigned(),
		ACME: certs.ACME{
			Enabled:   a.Enabled,
			Directory: a.Directory,
			Email:     a.Email,
			CAFile:    a.CAFile,
			CacheDir:  c.State.ACMECache(),
			AltNames:  c.STSHosts(),
		},
	}
}

// Loader is the user database's loader (Load it before use).
func (c *Config) Loader(log *slog.Logger) *userdb.Loader {
	var opts []oneffs.Option
	if c.Database.Image != "" && c.Database.SectorSize != 0 {
		opts = append(opts, oneffs.WithSectorSize(c.Database.SectorSize))
	}
	return userdb.NewLoader(c.Database.Source(), c.State.UsersCache(), log, c.Domain, c.Domains, opts...)
}

// PublishedSTS is the MTA-STS policy we publish for our domains, our
// host name its one mx; nil when -mta-sts-publish is off or without
// ACME: senders fetch the policy over HTTPS and trust only a certificate
// of a public CA for mta-sts.DOMAIN (RFC 8461 §3.3), which ACME gets.
func (c *Config) PublishedSTS() *mtasts.Policy {
	if c.TLSPolicy.Publish == "off" || !c.TLS.ACME.Enabled {
		return nil
	}
	p, err := mtasts.NewPolicy(mtasts.Mode(c.TLSPolicy.Publish), c.TLSPolicy.PublishMaxAge, c.Hostname)
	if err != nil {
		return nil // Check refused the settings that make none
	}
	return &p
}

// STSHosts are the names the MTA-STS policy is served at,
// mta-sts.DOMAIN for each of our domains (none when PublishedSTS is nil).
func (c *Config) STSHosts() []string {
	if c.PublishedSTS() == nil {
		return nil
	}
	var hosts []string
	for _, d := range append([]string{c.Domain}, c.Domains...) {
		if h := "mta-sts." + strings.ToLower(strings.TrimSuffix(d, ".")); !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// DNSRecords are every record -domain needs, with its DKIM keys and the
// TLSA record data of our MX ("" none): the list of the status page and
// elit dns-records.
func (c *Config) DNSRecords(keys []mailauth.Key, tlsa string) []records.Record {
	in := records.Input{Domain: c.Domain, Hostname: c.Hostname, Keys: keys, TLSA: tlsa, MTASTS: c.PublishedSTS()}
	if c.TLSRPT.Enabled {
		in.TLSReports = c.TLSRPT.ReportAddress(c.Domain)
	}
	return records.List(in)
}
