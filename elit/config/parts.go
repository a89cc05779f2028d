package config

import (
	"cmp"
	"crypto/tls"
	"log/slog"

	"elit.local/elit/auth"
	"elit.local/elit/certs"
	"elit.local/elit/decide"
	"elit.local/elit/deliver"
	"elit.local/elit/dns"
	"elit.local/elit/lists"
	"elit.local/elit/mailauth"
	"elit.local/elit/policy"
	"elit.local/elit/queue"
	"elit.local/elit/receive"
	"elit.local/elit/srs"
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
}

// resolver is p's Resolver or the one the configuration says.
func (c *Config) resolver(p Parts) dns.Resolver {
	if p.Resolver != nil {
		return p.Resolver
	}
	return &dns.Client{Server: c.Delivery.Resolver, ResolvConf: ResolvConf}
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
	return decide.Steps{
		&policy.Hops{Max: r.MaxHops, Log: p.Log},
		&policy.Sender{Users: p.Users, Log: p.Log},
		&policy.Route{Users: p.Users, Postmaster: cmp.Or(r.Postmaster, p.Postmaster), SRS: rewriter,
			ListSigner: p.ListSigner, ListBounce: p.ListBounce, Log: p.Log},
		c.MailAuthStep(p),
	}
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
	}
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
