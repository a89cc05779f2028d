package dane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"elit.local/elit/dns"
)

// Mode is what DANE asks of a connection to a host.
type Mode int

const (
	// ModeNone: DANE does not apply (DNSSEC does not cover the host, or
	// it has no TLSA records): other policies decide (RFC 7672 §2.2).
	ModeNone Mode = iota
	// ModeEncrypt: the host has TLSA records, none usable: TLS is
	// required, without authentication (RFC 7672 §2.2, §3.1.3).
	ModeEncrypt
	// ModeVerify: TLS is required and the server's chain must match
	// the records (RFC 7672 §2.2, §3.1), with no fallback.
	ModeVerify
)

func (m Mode) String() string {
	switch m {
	case ModeEncrypt:
		return "encrypt"
	case ModeVerify:
		return "verify"
	}
	return "none"
}

// Policy is what DANE says of one SMTP server.
type Policy struct {
	Mode Mode
	// Records are the usable TLSA records (ModeVerify); all the records
	// found for ModeEncrypt.
	Records []dns.TLSA
	// Base is the TLSA base domain: the name whose _25._tcp records
	// were found (RFC 7672 §2.2.3); the SNI to send (RFC 7672 §8.1).
	Base string
	// Names are the names a DANE-TA chain's certificate may be issued
	// to (RFC 7672 §3.2.2): the TLSA base domain, the MX host name, and
	// the CNAME-expanded one.
	Names []string
	// Reason says why, for logs and reports.
	Reason string
}

// VerifyConnection is the tls.Config.VerifyConnection hook of a
// ModeVerify policy (see the package's VerifyConnection).
func (p Policy) VerifyConnection(now func() time.Time) func(tls.ConnectionState) error {
	return VerifyConnection(p.Records, p.Names, now)
}

// Lookup finds the DANE policy of host, an SMTP server of domain, in
// the DNS as RFC 7672 §2.2 says, with r (which must tell secure answers,
// see elit/dns):
//
//   - domain's MX RRset, or its denial when host is domain itself (no
//     MX, RFC 7672 §2.2.2), must be secure (§2.2.1); domain "" is a
//     destination without MX lookup, such as a relay;
//   - host's address records must be secure (§2.2.2);
//   - the TLSA records are looked up at _25._tcp of the CNAME-expanded
//     host name when the expansion is secure, then of the host name
//     (§2.2.3); insecure ones do not apply.
//
// An error means DANE cannot tell whether it applies (a lookup failed,
// or an answer was bogus, dns.ErrBogus): the host must not be used, as
// RFC 7672 §2.1.1 says, for fear of a downgrade. Other policies (MTA-STS,
// opportunistic TLS) apply under ModeNone.
func Lookup(ctx context.Context, r dns.Resolver, domain, host string) (Policy, error) {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	if _, err := netip.ParseAddr(host); err == nil {
		return Policy{Reason: "an address literal has no TLSA records"}, nil
	}
	if domain != "" {
		_, secure, err := r.LookupMXSecure(ctx, domain)
		if errors.Is(err, dns.ErrNotFound) {
			return Policy{Reason: fmt.Sprintf("%s does not exist", domain)}, nil
		}
		if err != nil {
			return Policy{}, fmt.Errorf("dane: MX of %s: %w", domain, err)
		}
		if !secure {
			return Policy{Reason: fmt.Sprintf("the MX records of %s are not DNSSEC-signed", domain)}, nil
		}
	}
	addrs, err := r.LookupAddrsSecure(ctx, host)
	if err != nil {
		return Policy{}, fmt.Errorf("dane: addresses of %s: %w", host, err)
	}
	if !addrs.Secure {
		return Policy{Reason: fmt.Sprintf("the addresses of %s are not DNSSEC-signed", host)}, nil
	}
	bases := []string{host}
	if addrs.Name != "" && addrs.Name != host {
		bases = []string{addrs.Name, host}
	}
	for _, base := range bases {
		name := "_25._tcp." + base
		recs, secure, err := r.LookupTLSA(ctx, name)
		if err != nil {
			return Policy{}, fmt.Errorf("dane: TLSA of %s: %w", name, err)
		}
		if !secure {
			return Policy{Reason: fmt.Sprintf("the TLSA records of %s are not DNSSEC-signed", name)}, nil
		}
		if len(recs) == 0 {
			continue
		}
		names := []string{base}
		for _, n := range []string{host, addrs.Name} {
			if n != "" && !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		p := Policy{Mode: ModeVerify, Records: UsableRecords(recs), Base: base, Names: names,
			Reason: fmt.Sprintf("%d usable TLSA records at %s", len(UsableRecords(recs)), name)}
		if len(p.Records) == 0 {
			p.Mode, p.Records = ModeEncrypt, recs
			p.Reason = fmt.Sprintf("%d TLSA records at %s, none usable", len(recs), name)
		}
		return p, nil
	}
	return Policy{Reason: fmt.Sprintf("no TLSA records for %s", host)}, nil
}
