// Package config is the configuration of elit serve: one typed struct,
// its defaults as one Go literal (Default), the flags and the JSON file
// (-config) that set it, with the command line winning over the file and
// the file over the defaults, one validation (Check), the effective
// configuration for the log with secrets masked (LogValue), and the
// configurations of the server's parts made from it (ReceiveConfig,
// DeliverConfig, CertsConfig, Loader, Listeners), so that no setting is
// lost on the way.
//
// An invalid configuration is an *Error: elit serve exits 125 on it,
// gokrazy's "do not restart me", since restarting will not fix it.
package config

import (
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/acme/autocert"

	"elit.local/elit/deliver"
)

// Config is everything elit serve is told. Each field names its flag,
// which is also its key in the -config file.
type Config struct {
	// File is the JSON file of settings read by ApplyFile (-config; ""
	// none).
	File string
	// Domain is the mail domain: names without @ in the user database are
	// at it (-domain, required).
	Domain string
	// Domains are more local domains (the file's "domains").
	Domains []string
	// Hostname is the host name in the greeting, EHLO, Received and the
	// self-signed certificate (-hostname; default: the system host name if
	// it has a dot, else mail.DOMAIN).
	Hostname string
	// LogLevel is the least level logged (-log-level).
	LogLevel slog.Level
	// Version is the program's version, for the log and the status page:
	// set by the program, not a setting.
	Version string

	State     State
	Database  Database
	Receive   Receive
	MailAuth  MailAuth
	Delivery  Delivery
	TLS       TLS
	HTTP      HTTP
	TLSRPT    TLSRPT
	TLSPolicy TLSPolicy
}

// State is the state directory and what elit keeps there.
type State struct {
	// Dir is the state directory: queue, keys, certificates, the cached
	// user database (-state; /perm/elit on the appliance, else
	// ./elit-state).
	Dir string
}

// Database is where the user database comes from.
type Database struct {
	// Image is a OneFFS image file or block device holding the JSON, or
	// partname:NAME / partuuid:UUID (-db; on the appliance, where /perm
	// exists, partname:oneffs when -db-json is not given either).
	Image string
	// JSON is a plain JSON file (-db-json; development).
	JSON string
	// SectorSize is the OneFFS sector size of Image (-db-sector-size; 0:
	// the device's, or 512 for a file).
	SectorSize int
	// CheckInterval is how often to look for a changed database
	// (-db-check-interval; 0 disables; SIGHUP reloads at once).
	CheckInterval time.Duration
}

// Receive is how mail comes in: the listeners and the limits of a
// connection and of a message (docs/architecture.md, Limits).
type Receive struct {
	MXAddr          string // MX listen address, port 25 (-mx-addr; "" disables)
	SubmissionAddr  string // submission with STARTTLS, port 587 (-submission-addr; "" disables)
	SubmissionsAddr string // submission over implicit TLS, port 465 (-submissions-addr; "" disables)
	// Postmaster is where mail to postmaster@ goes when the database has
	// no postmaster (-postmaster; default: the mailboxes of the first user
	// that can log in).
	Postmaster string
	// SRS rewrites the envelope sender of forwarded mail, with the key
	// STATE/srs.key (-srs).
	SRS bool
	// RequireTLS offers the REQUIRETLS extension (RFC 8689) inside TLS
	// and takes it (-requiretls).
	RequireTLS bool

	MaxSize              int64         // message size in bytes (-max-size)
	MaxRecipients        int           // recipients per message (-max-recipients)
	MaxLineLength        int           // bytes per line, commands and message (-max-line-length)
	MaxConns             int           // concurrent connections (-max-conns)
	MaxConnsPerIP        int           // concurrent connections from one client (-max-conns-per-ip)
	ReadTimeout          time.Duration // per command or piece of message (-read-timeout)
	WriteTimeout         time.Duration // per reply (-write-timeout)
	MaxSessionTime       time.Duration // length of a connection (-max-session-time)
	MaxAuthFailures      int           // failed logins per connection, then closed (-max-auth-failures)
	MaxAuthFailuresPerIP int           // failed logins per client in AuthFailureWindow, then AUTH refused (-max-auth-failures-per-ip)
	AuthFailureWindow    time.Duration // (-auth-failure-window)
	AuthFailureDelay     time.Duration // before a failed login's reply, times the failures so far (-auth-failure-delay; negative: none)
	MaxHops              int           // Received fields before a message is a loop (-max-hops)
	SoftErrorLimit       int           // error replies on a connection before each waits ErrorSleep (-soft-error-limit)
	HardErrorLimit       int           // error replies on a connection before 421 and close (-hard-error-limit)
	ErrorSleep           time.Duration // delay of each error reply past SoftErrorLimit (-error-sleep; negative: none)
	MaxErrorsPerIP       int           // error replies to one client in ErrorWindow, then refused (-max-errors-per-ip)
	ErrorWindow          time.Duration // (-error-window)
}

// MailAuth is the authentication of mail (elit/mailauth): the checks on
// the MX, DKIM signing, ARC sealing. The keys are in STATE/dkim.
type MailAuth struct {
	// Checks verifies SPF, DKIM, DMARC, ARC and iprev on the MX and writes
	// Authentication-Results (-mail-checks).
	Checks bool
	// DMARCReject refuses (550) the mail that the From domain's DMARC
	// policy rejects; false marks it as for p=quarantine (-dmarc-reject).
	DMARCReject bool
	// ARC seals (RFC 8617) the mail the MX forwards to mailboxes
	// elsewhere, with -domain's rsa key (-arc).
	ARC bool
	// Sign DKIM-signs submitted mail with the keys of its From domain (or
	// -domain's), and Elit's notices and the MX's forwards as -domain;
	// -domain gets an rsa key at the first start when it has none (-dkim).
	Sign bool
	// Ed25519 makes and signs with an ed25519 key too (RFC 8463;
	// -dkim-ed25519).
	Ed25519 bool
	// AuthServID names us in Authentication-Results (-authserv-id;
	// default: the host name).
	AuthServID string
}

// Delivery is how mail goes out.
type Delivery struct {
	// Enabled delivers queued mail; false only queues it (-deliver).
	Enabled bool
	// Resolver is the DNS server (host:port) for outgoing mail (-resolver;
	// default: the first nameserver of /etc/resolv.conf, read at each
	// lookup).
	Resolver string
	// Smarthost relays all outgoing mail not routed elsewhere through
	// this host:port, without MX lookups (-smarthost).
	Smarthost string
	// Port is the destination port of direct delivery (-delivery-port).
	Port              string
	RetryFirst        time.Duration // before the first retry, then doubling (-retry-first)
	RetryMax          time.Duration // longest delay between two attempts (-retry-max)
	QueueLifetime     time.Duration // how long to retry before bouncing (-queue-lifetime)
	DelayWarning      time.Duration // when the sender is told of a delay (-delay-warning; negative: never)
	MaxDeliveries     int           // messages in delivery at once (-max-deliveries)
	MaxPerDestination int           // connections to one destination at once (-max-per-destination)
	// Transports and Routes are the file's "transports" and "routes"
	// (deliver.Transport, deliver.Route).
	Transports map[string]*deliver.Transport
	Routes     []deliver.Route
}

// TLS is where the server's certificate comes from.
type TLS struct {
	// Cert and Key are the certificate chain and private key, PEM files
	// (-tls-cert, -tls-key; default: a self-signed certificate made once
	// in STATE/tls).
	Cert, Key string
	ACME      ACME
}

// ACME gets the host name's certificate by ACME (RFC 8555), kept in
// STATE/acme; until it comes, the -tls-cert or self-signed one serves.
type ACME struct {
	Enabled   bool   // (-acme)
	Directory string // directory URL (-acme-directory; Let's Encrypt)
	Email     string // account contact (-acme-email)
	// TLSAddr answers TLS-ALPN-01 challenges (-acme-tls-addr; port 443 as
	// the ACME server sees it; "" disables).
	TLSAddr string
	// HTTPAddr answers HTTP-01 challenges (-acme-http-addr; port 80 as the
	// ACME server sees it; "" disables).
	HTTPAddr string
	// CAFile is the CA of the ACME server's HTTPS certificate, for a
	// private ACME server (-acme-ca-file; default: the system's).
	CAFile string
}

// HTTP is the web side: metrics and the status page.
type HTTP struct {
	// MetricsAddr serves Prometheus metrics at /metrics (-metrics-addr;
	// "" disables).
	MetricsAddr string
	// StatusAddr serves the status page and PUT /db to clients on private
	// networks, user gokrazy (-http-addr; "" disables).
	StatusAddr string
	// PasswordFile holds the StatusAddr password (-http-password-file;
	// default: gokrazy's, see DefaultPasswordFiles).
	PasswordFile string
	// TLS serves StatusAddr over HTTPS with the server's certificate
	// (-http-tls); without it, plain HTTP, and PUT /db is refused unless
	// PlainDBPush (-http-plain-db-push) says otherwise.
	TLS, PlainDBPush bool
}

// TLSPolicy is the TLS policy of outbound mail (elit/tlspolicy): DANE,
// MTA-STS, then opportunistic TLS; and the MTA-STS policy we publish.
type TLSPolicy struct {
	// DANE follows the destinations' DNSSEC-signed TLSA records (RFC
	// 7672; -dane). It needs a resolver trusted to validate: one on
	// loopback, or ResolverTrustAD.
	DANE bool
	// ResolverTrustAD believes the AD bit of -resolver even off loopback
	// (-resolver-trust-ad): only for a validating resolver on a network
	// you trust (RFC 7672 §2.1.3).
	ResolverTrustAD bool
	// MTASTS follows the destinations' MTA-STS policies (RFC 8461;
	// -mta-sts), cached in STATE/mta-sts.
	MTASTS bool
	// Publish is the MTA-STS mode of the policy we serve at
	// https://mta-sts.DOMAIN/ for our domains (-mta-sts-publish:
	// testing, enforce, none, or off); it needs ACME (a certificate
	// others trust for mta-sts.DOMAIN).
	Publish string
	// PublishMaxAge is its max_age (-mta-sts-max-age).
	PublishMaxAge time.Duration
}

// TLSRPT is SMTP TLS Reporting (RFC 8460, elit/tlsrpt): the results of
// our outbound TLS counted and reported daily to the domains that ask,
// and the reports others send us read.
type TLSRPT struct {
	// Enabled records, reports and reads reports (-tlsrpt).
	Enabled bool
	// From sends our reports and is their contact (-tlsrpt-from;
	// default: postmaster@DOMAIN).
	From string
	// Address takes the reports others send us: our TLSRPT record's rua
	// (-tlsrpt-address; default: tlsrpt@DOMAIN).
	Address string
}

// FromAddress is the address our reports come from.
func (t TLSRPT) FromAddress(domain string) string {
	if t.From != "" {
		return t.From
	}
	return "postmaster@" + domain
}

// ReportAddress is the address that takes the reports others send us.
func (t TLSRPT) ReportAddress(domain string) string {
	if t.Address != "" {
		return t.Address
	}
	return "tlsrpt@" + domain
}

// DefaultPasswordFiles are where gokrazy keeps its web password: /perm
// first, then the one built into the root file system.
var DefaultPasswordFiles = []string{"/perm/gokr-pw.txt", "/etc/gokr-pw.txt"}

// ResolvConf names the DNS server when Delivery.Resolver does not; DHCP
// writes it, on the appliance after elit has started.
const ResolvConf = "/etc/resolv.conf"

// Default returns the defaults: every setting's default is here.
func Default() *Config {
	return &Config{
		LogLevel: slog.LevelInfo,
		State:    State{Dir: DefaultStateDir()},
		Database: Database{CheckInterval: 30 * time.Second},
		Receive: Receive{
			MXAddr:               ":25",
			SubmissionAddr:       ":587",
			SubmissionsAddr:      ":465",
			SRS:                  true,
			RequireTLS:           true,
			MaxSize:              10_240_000,
			MaxRecipients:        100,
			MaxLineLength:        4096,
			MaxConns:             500,
			MaxConnsPerIP:        50,
			ReadTimeout:          5 * time.Minute,
			WriteTimeout:         5 * time.Minute,
			MaxSessionTime:       time.Hour,
			MaxAuthFailures:      3,
			MaxAuthFailuresPerIP: 10,
			AuthFailureWindow:    15 * time.Minute,
			AuthFailureDelay:     time.Second,
			MaxHops:              50,
			SoftErrorLimit:       10,
			HardErrorLimit:       20,
			ErrorSleep:           time.Second,
			MaxErrorsPerIP:       100,
			ErrorWindow:          time.Hour,
		},
		MailAuth:  MailAuth{Checks: true, DMARCReject: true, ARC: true, Sign: true},
		TLSPolicy: TLSPolicy{DANE: true, MTASTS: true, Publish: "testing", PublishMaxAge: 7 * 24 * time.Hour},
		Delivery: Delivery{
			Enabled:           true,
			Port:              "25",
			RetryFirst:        5 * time.Minute,
			RetryMax:          8 * time.Hour,
			QueueLifetime:     5 * 24 * time.Hour,
			DelayWarning:      4 * time.Hour,
			MaxDeliveries:     20,
			MaxPerDestination: 10,
		},
		TLS:    TLS{ACME: ACME{Directory: autocert.DefaultACMEDirectory, TLSAddr: ":443"}},
		HTTP:   HTTP{TLS: true},
		TLSRPT: TLSRPT{Enabled: true},
	}
}

// onAppliance says whether this is the appliance: gokrazy's /perm exists.
func onAppliance() bool {
	fi, err := os.Stat("/perm")
	return err == nil && fi.IsDir()
}

// DefaultStateDir is the state directory when -state does not say:
// /perm/elit on the appliance, else elit-state in the working directory.
func DefaultStateDir() string {
	if onAppliance() {
		return "/perm/elit"
	}
	return "elit-state"
}

// Queue is the queue directory.
func (s State) Queue() string { return filepath.Join(s.Dir, "queue") }

// ControlSocket is where the running server takes operator commands.
func (s State) ControlSocket() string { return filepath.Join(s.Dir, "control.sock") }

// Key is the secret that signs the addresses the server hands out (SRS
// addresses, list members' bounce addresses).
func (s State) Key() string { return filepath.Join(s.Dir, "srs.key") }

// UsersCache is the last good copy of the user database.
func (s State) UsersCache() string { return filepath.Join(s.Dir, "users.json") }

// ListBounces is the bounce count of each list member.
func (s State) ListBounces() string { return filepath.Join(s.Dir, "list-bounces.json") }

// TLSReports is the directory of the TLS report results (a file a day)
// and of the reports received.
func (s State) TLSReports() string { return filepath.Join(s.Dir, "tlsrpt") }

// TLSReportInbox keeps the TLS reports others sent us.
func (s State) TLSReportInbox() string { return filepath.Join(s.Dir, "tlsrpt", "received.json") }

// Destinations is what each destination domain's servers offered
// (STARTTLS, REQUIRETLS).
func (s State) Destinations() string { return filepath.Join(s.Dir, "destinations.json") }

// MTASTS is the directory of the MTA-STS policies cached.
func (s State) MTASTS() string { return filepath.Join(s.Dir, "mta-sts") }

// DKIM is the directory of the DKIM keys: DOMAIN/SELECTOR.pem.
func (s State) DKIM() string { return filepath.Join(s.Dir, "dkim") }

// SelfSigned is the directory of the self-signed certificate.
func (s State) SelfSigned() string { return filepath.Join(s.Dir, "tls") }

// ACMECache is the directory of the ACME account key and certificates.
func (s State) ACMECache() string { return filepath.Join(s.Dir, "acme") }

// Source is where the user database is read from: Image or JSON.
func (d Database) Source() string {
	if d.Image != "" {
		return d.Image
	}
	return d.JSON
}

// PasswordFiles are the files to read the status page password from, in
// order.
func (h HTTP) PasswordFiles() []string {
	if h.PasswordFile != "" {
		return []string{h.PasswordFile}
	}
	return DefaultPasswordFiles
}
