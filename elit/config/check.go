package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"elit.local/elit/mailaddr"
)

// Error is an invalid configuration: elit serve exits 125 on it, gokrazy's
// "do not restart me", since restarting will not fix it.
type Error struct{ Err error }

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error: fmt.Errorf(format, args...) marked invalid.
func Errorf(format string, args ...any) error { return &Error{fmt.Errorf(format, args...)} }

// IsInvalid says whether err is or wraps an *Error.
func IsInvalid(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// Check validates the configuration and fills in the defaults that depend
// on the machine (the host name, the appliance's database partition) and
// the canonical form of the domain. It may be called more than once.
func (c *Config) Check() error {
	if c.Domain == "" {
		return Errorf("-domain is required")
	}
	d, err := mailaddr.ParseDomain(c.Domain)
	if err != nil || strings.HasPrefix(d, "[") {
		return Errorf("-domain %q: not a domain name", c.Domain)
	}
	c.Domain = d
	db := &c.Database
	if db.Image == "" && db.JSON == "" && onAppliance() {
		db.Image = "partname:oneffs" // the appliance: the partition image/ makes
	}
	if (db.Image == "") == (db.JSON == "") {
		return Errorf("give the user database with exactly one of -db IMG and -db-json FILE")
	}
	if c.Hostname == "" {
		c.Hostname = "mail." + c.Domain
		if h, err := os.Hostname(); err == nil && strings.Contains(h, ".") {
			c.Hostname = h
		}
	}
	if h, err := mailaddr.ParseDomain(c.Hostname); err != nil || strings.HasPrefix(h, "[") {
		return Errorf("-hostname %q: not a host name", c.Hostname)
	}
	if c.MailAuth.AuthServID == "" {
		c.MailAuth.AuthServID = c.Hostname
	}
	if id := c.MailAuth.AuthServID; strings.ContainsAny(id, " \t\r\n;()\"\\") || !isPrintableASCII(id) {
		return Errorf("-authserv-id %q: one word of printable ASCII (RFC 8601 §2.5)", id)
	}
	switch c.TLSPolicy.Publish {
	case "testing", "enforce", "none", "off":
	default:
		return Errorf("-mta-sts-publish %q: testing, enforce, none or off", c.TLSPolicy.Publish)
	}
	if a := c.TLSPolicy.PublishMaxAge; a < 0 || a > 31557600*time.Second {
		return Errorf("-mta-sts-max-age %v: from 0 to 31557600s (RFC 8461 §3.2)", a)
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return Errorf("-tls-cert and -tls-key go together")
	}
	if a := c.TLS.ACME; a.Enabled && a.TLSAddr == "" && a.HTTPAddr == "" {
		return Errorf("-acme needs -acme-tls-addr or -acme-http-addr to answer the challenge")
	}
	r := &c.Receive
	for _, a := range []struct{ name, addr string }{{"mx-addr", r.MXAddr}, {"submission-addr", r.SubmissionAddr}, {"submissions-addr", r.SubmissionsAddr}} {
		if a.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return Errorf("-%s %q: want host:port or :port", a.name, a.addr)
		}
	}
	if r.MXAddr == "" && r.SubmissionAddr == "" && r.SubmissionsAddr == "" {
		return Errorf("every listener is disabled")
	}
	o := &c.Delivery
	if o.Resolver != "" {
		if _, _, err := net.SplitHostPort(o.Resolver); err != nil {
			return Errorf("-resolver %q: want host:port", o.Resolver)
		}
	}
	if o.Smarthost != "" {
		if _, _, err := net.SplitHostPort(o.Smarthost); err != nil {
			return Errorf("-smarthost %q: want host:port", o.Smarthost)
		}
	}
	if o.RetryFirst <= 0 || o.RetryMax < o.RetryFirst || o.QueueLifetime <= 0 || o.MaxDeliveries <= 0 || o.MaxPerDestination <= 0 {
		return Errorf("-retry-first, -retry-max, -queue-lifetime, -max-deliveries and -max-per-destination must be positive, -retry-max at least -retry-first")
	}
	if r.Postmaster != "" {
		if _, err := mailaddr.Parse(r.Postmaster); err != nil {
			return Errorf("-postmaster %q: %v", r.Postmaster, err)
		}
	}
	for _, a := range []struct{ name, addr string }{{"tlsrpt-from", c.TLSRPT.From}, {"tlsrpt-address", c.TLSRPT.Address}} {
		if _, err := mailaddr.Parse(a.addr); a.addr != "" && err != nil {
			return Errorf("-%s %q: %v", a.name, a.addr, err)
		}
	}
	for _, n := range []struct {
		name string
		v    int64
	}{{"max-size", r.MaxSize}, {"max-recipients", int64(r.MaxRecipients)}, {"max-line-length", int64(r.MaxLineLength)},
		{"max-conns", int64(r.MaxConns)}, {"max-conns-per-ip", int64(r.MaxConnsPerIP)}, {"max-auth-failures", int64(r.MaxAuthFailures)},
		{"max-auth-failures-per-ip", int64(r.MaxAuthFailuresPerIP)}, {"max-hops", int64(r.MaxHops)},
		{"soft-error-limit", int64(r.SoftErrorLimit)}, {"hard-error-limit", int64(r.HardErrorLimit)}, {"max-errors-per-ip", int64(r.MaxErrorsPerIP)}} {
		if n.v <= 0 {
			return Errorf("-%s must be positive", n.name)
		}
	}
	if r.MaxLineLength < 1000 {
		return Errorf("-max-line-length must be at least 1000 (RFC 5321 §4.5.3.1.6)")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"read-timeout", r.ReadTimeout}, {"write-timeout", r.WriteTimeout}, {"max-session-time", r.MaxSessionTime}, {"auth-failure-window", r.AuthFailureWindow}, {"error-window", r.ErrorWindow}} {
		if d.v <= 0 {
			return Errorf("-%s must be positive", d.name)
		}
	}
	return nil
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return s != ""
}
